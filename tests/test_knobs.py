"""The knobs fine-tuning recipes change, each checked for its effect on a tiny random BERT: layer-wise learning rates,
the schedule's shape, re-initialised top layers, dropout, the mean-pooled head, gradient clipping, the best epoch
kept (its value and its weights, across a resume)."""
import math

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from sweeper.data import dataset
from sweeper.data.batching import get_dataloaders
from sweeper.train import checkpoints
from sweeper.train.loop import Hparams, evaluate, get_accelerator, kept, resolve_precision, train
from sweeper.train.model import fresh_model, load_template
from sweeper.train.optim import make_optimizer, make_scheduler, parameter_groups


@pytest.fixture(scope="module")
def sst2(glue_dir):
    cfg = compose_config("task=sst2", "model=tiny", "task.max_train_samples=64", "task.max_eval_samples=64",
                         "model.overrides.num_hidden_layers=3")
    task = dataset.load_task(cfg.task, cfg.model.path, glue_dir, seed=0)
    return cfg, task, load_template(cfg.model, 2, seed=0)


def knobs(*overrides: str):
    return compose_config("model=tiny", *overrides).model


def run(cfg, task, model, hp, **kw):
    train_dl, eval_dl = get_dataloaders(task, hp.batch_size, 32, seed=0, group_by_length=True, pad_to_multiple_of=8)
    return train(model, train_dl, eval_dl, hp, optimizer_fn=instantiate(cfg.optimizer.optimizer),
                 precision=kw.pop("precision", resolve_precision("auto")), metric_names=["accuracy"], seed=0,
                 progress=False, **kw)


def test_layer_decay_gives_each_layer_its_rate(sst2):
    _, _, template = sst2
    model = fresh_model(template)
    groups = {g["depth"]: g for g in parameter_groups(model, 1e-3, 0.5)}
    assert sorted(groups) == [0, 1, 2, 3, 4]  # embeddings, 3 layers, the head
    assert [groups[d]["lr"] for d in range(5)] == pytest.approx([1e-3 * 0.5 ** (4 - d) for d in range(5)])
    named = {id(p): n for n, p in model.named_parameters()}
    assert all("embeddings" in named[id(p)] for p in groups[0]["params"])
    assert all("encoder.layer.1." in named[id(p)] for p in groups[2]["params"])
    assert {named[id(p)] for p in groups[4]["params"]} == {"bert.pooler.dense.weight", "bert.pooler.dense.bias",
                                                           "classifier.weight", "classifier.bias"}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))
    [one] = parameter_groups(model, 1e-3, 1.0)
    assert one["lr"] == 1e-3 and len(one["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("schedule,at_half,at_end", [("linear", 0.5, 0.0), ("cosine", 0.5, 0.0),
                                                      ("constant", 1.0, 1.0)])
def test_the_schedule_rises_over_warmup_then_takes_its_shape(sst2, schedule, at_half, at_end):
    cfg, _, template = sst2
    optimizer = make_optimizer(instantiate(cfg.optimizer.optimizer), fresh_model(template), 1.0, 1.0,
                               torch.device("cpu"))
    scheduler = make_scheduler(optimizer, schedule, 0.2, 110)  # 22 warmup steps, then 88
    lrs = []
    for _ in range(110):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0 and lrs[11] == pytest.approx(0.5) and lrs[22] == pytest.approx(1.0)
    assert lrs[22 + 44] == pytest.approx(at_half, abs=1e-9)
    assert scheduler.get_last_lr()[0] == pytest.approx(at_end, abs=1e-9)
    if schedule == "cosine":  # above the line on the way down
        assert lrs[22 + 22] == pytest.approx((1 + math.cos(math.pi * 0.25)) / 2)


def test_reinit_draws_the_top_layers_and_pooler_afresh_and_keeps_the_rest(sst2):
    _, _, template = sst2
    before = template.state_dict()
    model = fresh_model(template, knobs("model.reinit_layers=1"), seed=3)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    expected = {k for k in before if k.startswith(("bert.encoder.layer.2.", "bert.pooler."))
                and not k.endswith(("LayerNorm.weight", "LayerNorm.bias", ".bias"))}
    assert expected and expected <= changed  # every weight matrix of the top layer and the pooler is new
    assert all(k.startswith(("bert.encoder.layer.2.", "bert.pooler.")) for k in changed)  # nothing else is
    again = fresh_model(template, knobs("model.reinit_layers=1"), seed=3).state_dict()
    assert all(torch.equal(again[k], after[k]) for k in after)  # the seed decides the draw
    other = fresh_model(template, knobs("model.reinit_layers=1"), seed=4).state_dict()
    assert not torch.equal(other["bert.encoder.layer.2.output.dense.weight"],
                           after["bert.encoder.layer.2.output.dense.weight"])
    std = after["bert.encoder.layer.2.output.dense.weight"].std().item()
    assert std == pytest.approx(template.config.initializer_range, rel=0.2)  # the model's own initialisation


def test_dropout_sets_every_module_it_names_and_the_config(sst2):
    _, _, template = sst2
    model = fresh_model(template, knobs("model.dropout.hidden=0.0", "model.dropout.attention=0.3",
                                        "model.dropout.classifier=0.2"))
    ps = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert ps["dropout"] == 0.2 and ps["bert.embeddings.dropout"] == 0.0
    assert all(p == 0.3 for n, p in ps.items() if n.endswith("attention.self.dropout"))
    assert all(p == 0.0 for n, p in ps.items() if n.endswith(("output.dropout",)))
    c = model.config
    assert (c.hidden_dropout_prob, c.attention_probs_dropout_prob, c.classifier_dropout) == (0.0, 0.3, 0.2)
    assert template.config.attention_probs_dropout_prob != 0.3  # the template is untouched


def test_a_mean_pooled_head_reads_the_mean_of_every_real_token(sst2):
    _, _, template = sst2
    model = fresh_model(template, knobs("model.pooling=mean")).eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        states = model.bert(input_ids=ids).last_hidden_state
        by_hand = model.classifier(states.mean(dim=1))
        padded = torch.cat([ids, torch.zeros((1, 3), dtype=ids.dtype)], dim=1)
        mask = torch.cat([torch.ones_like(ids), torch.zeros((1, 3), dtype=ids.dtype)], dim=1)
        with_padding = model(input_ids=padded, attention_mask=mask).logits
        cls = fresh_model(template).eval()(input_ids=ids).logits
    assert torch.allclose(logits, by_hand, atol=1e-6)
    assert torch.allclose(logits, with_padding, atol=1e-5)  # padding is left out of the mean
    assert not torch.allclose(logits, cls)
    assert model.bert.pooler is None and "pooler" not in " ".join(model.state_dict())


def test_clipping_bounds_every_step(sst2):
    cfg, task, template = sst2
    start = fresh_model(template).state_dict()

    def moved(max_grad_norm):
        model = fresh_model(template)
        run(cfg, task, model, Hparams(lr=1e-3, epochs=1, batch_size=8, max_grad_norm=max_grad_norm),
            on_epoch_end=lambda e, m: None)
        w = "bert.encoder.layer.0.attention.self.query.weight"
        return (model.state_dict()[w] - start[w]).abs().max().item()

    # AdamW's step is m / (sqrt(v) + eps): gradients clipped to 1e-12 leave eps in charge, and the weights still.
    assert moved(1e-12) < 1e-3 * moved(None)
    assert moved(1e3) == pytest.approx(moved(None), rel=1e-5)  # a bound never reached changes nothing


def test_keep_best_ends_with_the_kept_epochs_weights_and_metrics_also_after_a_resume(sst2, tmp_path):
    cfg, task, template = sst2
    # Keeping the *worst* epoch (maximize=False) makes the kept one differ from the last, whatever the data.
    hp = Hparams(lr=5e-3, epochs=4, batch_size=8, keep_best="accuracy", maximize=False)
    ended = {}
    history = run(cfg, task, fresh_model(template), hp, on_epoch_end=lambda e, m: None,
                  on_train_end=lambda model: ended.update(model=model))
    worst = kept(history, hp)
    assert worst["accuracy"] == min(h["accuracy"] for h in history)
    if worst is history[-1]:
        pytest.skip("the last epoch is the worst on this slice: nothing to tell apart")
    _, eval_dl = get_dataloaders(task, 8, 32, seed=0, group_by_length=True, pad_to_multiple_of=8)
    accelerator = get_accelerator(resolve_precision("auto"))
    assert evaluate(accelerator, ended["model"], eval_dl, ["accuracy"])["accuracy"] == worst["accuracy"]

    class Killed(Exception):
        pass

    def die_after(epoch, metrics):
        if epoch == 2:
            raise Killed

    ckpt = tmp_path / "trial-0"
    with pytest.raises(Killed):
        run(cfg, task, fresh_model(template), hp, on_epoch_end=die_after, checkpoint=ckpt)
    assert (ckpt / checkpoints.BEST).exists() and len(list(ckpt.glob("epoch-*"))) == 1
    ended.clear()
    resumed = run(cfg, task, fresh_model(template), hp, resume=checkpoints.latest(ckpt),
                  on_epoch_end=lambda e, m: None, on_train_end=lambda model: ended.update(model=model))
    assert kept(resumed, hp)["epoch"] == worst["epoch"]
    assert evaluate(accelerator, ended["model"], eval_dl, ["accuracy"])["accuracy"] == worst["accuracy"]
