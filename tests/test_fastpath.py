"""The CPU fast path changes cost, not math: same outputs, same gradients, same dropout law."""
import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from sweeper.config import _minilm_path
from sweeper.train import fastpath


@pytest.fixture(scope="module")
def tiny():
    path = _minilm_path()
    config = AutoConfig.from_pretrained(path, num_labels=2, num_hidden_layers=2, hidden_size=32,
                                        num_attention_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["a short one", "a much longer sentence with many more tokens than the first"],
                      padding=True, return_tensors="pt")
    return model, batch


def test_keep_mask_follows_bernoulli():
    torch.manual_seed(0)
    keep = fastpath.keep_mask(torch.Size([1000, 1000]), 0.1, torch.device("cpu"))
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    assert keep.float().mean().item() == pytest.approx(0.9, abs=0.002)
    torch.manual_seed(0)
    assert torch.equal(keep, fastpath.keep_mask(torch.Size([1000, 1000]), 0.1, torch.device("cpu")))
    x = torch.ones(1000, 1000)
    assert fastpath.cheap_dropout(x, 0.1, True).mean().item() == pytest.approx(1.0, abs=0.005)
    assert fastpath.cheap_dropout(x, 0.1, False) is x


def test_same_outputs_with_padding(tiny):
    model, batch = tiny
    fast = fastpath.apply(copy.deepcopy(model).eval())
    assert type(fast.bert.encoder.layer[0].output.dropout) is fastpath.Dropout
    assert torch.allclose(fast(**batch).logits, model.eval()(**batch).logits, atol=1e-5)


def test_same_gradients_over_steps(tiny):
    model, batch = tiny
    ref = copy.deepcopy(model).eval()  # eval: no dropout, so both models compute the same function
    fast = fastpath.apply(copy.deepcopy(model).eval())
    assert fast.bert.embeddings.word_embeddings.sparse
    halves = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(2)]
    for step in halves:  # the second step must not see the first step's rows
        for m in (ref, fast):
            m.zero_grad(set_to_none=True)
            m(**step, labels=torch.tensor([1])).loss.backward()
        for (name, a), b in zip(ref.named_parameters(), fast.parameters(), strict=True):
            assert not b.grad.is_sparse
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
