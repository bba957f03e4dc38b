"""Data: real GLUE files -> tokenized splits -> batches."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import compose_config
from sweeper.data import dataset, source
from sweeper.data.batching import ShuffledBatches, get_dataloaders
from sweeper.errors import ConfigError


@pytest.fixture(scope="module")
def mrpc(glue_dir):
    cfg = compose_config("task=mrpc", "model=tiny", "task.max_train_samples=200", "task.max_eval_samples=50")
    return cfg, dataset.load_task(cfg.task, cfg.model.path, glue_dir, seed=0)


def test_batches_hold_model_inputs_padded_per_batch(mrpc):
    _, task = mrpc
    train, evaluation = get_dataloaders(task, batch_size=8, eval_batch_size=16, seed=0,
                                        group_by_length=True, pad_to_multiple_of=8)
    batch = next(iter(train))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] % 8 == 0
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    assert batch["labels"].shape == (8,) and set(batch["labels"].tolist()) <= {0, 1}
    assert batch["input_ids"].shape[1] - batch["attention_mask"].sum(1).max() < 8  # padded to this batch only
    assert sum(b["labels"].shape[0] for b in evaluation) == 50
    # Evaluation is sorted by length: the longest batch comes first.
    widths = [b["input_ids"].shape[1] for b in evaluation]
    assert widths == sorted(widths, reverse=True)


def test_sentence_pairs_are_encoded_as_pairs(mrpc):
    _, task = mrpc
    ids = task.train[0]["token_type_ids"]
    assert 0 in ids and 1 in ids  # sentence1 and sentence2 segments


def test_subsampling_is_deterministic(glue_dir, mrpc):
    cfg, _ = mrpc
    a, b, c = (dataset.load_subsampled(cfg.task, glue_dir, seed)[cfg.task.train_split] for seed in (0, 0, 1))
    assert len(a) == 200 and a["idx"] == b["idx"]
    assert a["idx"] != c["idx"]


@pytest.mark.parametrize("group", [True, False])
def test_every_example_once_per_epoch_deterministic_under_seed(group):
    lengths = np.random.default_rng(0).integers(5, 120, size=1003)
    sampler = ShuffledBatches(lengths, batch_size=32, seed=7, group_by_length=group)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 32
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        epochs.append(flat)
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    sampler.set_epoch(1)
    assert [i for b in sampler for i in b] == epochs[1]  # the same epoch replays exactly
    other = ShuffledBatches(lengths, batch_size=32, seed=8, group_by_length=group)
    assert [i for b in other for i in b] != epochs[0]


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(0).integers(5, 120, size=4000)

    def padded(group):
        batches = list(ShuffledBatches(lengths, 16, seed=0, group_by_length=group))
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches) / (
            sum(len(b) * lengths[b].max() for b in batches))

    assert padded(True) < 0.1 < padded(False)


def test_missing_task_files_fail_with_the_path(tmp_path, mrpc):
    cfg, _ = mrpc
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train-00000-of-00001.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"has no mrpc/train-\*.parquet; tasks there: sst2"):
        source.check(cfg.task, str(tmp_path))


def test_a_changed_local_file_is_read_as_it_is_now(tmp_path, glue_dir, mrpc):
    """datasets' cache of a local directory kept serving old rows after the files changed (the SST-2
    copy that was replaced stayed Vietnamese): a local copy is read as the files are now."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg, _ = mrpc
    copy = tmp_path / "glue"
    shutil.copytree(Path(glue_dir) / "mrpc", copy / "mrpc")
    shutil.copy(Path(glue_dir) / "README.md", copy / "README.md")
    before = dataset.load_subsampled(cfg.task, str(copy), seed=0)[cfg.task.eval_split]
    path = copy / "mrpc" / "validation-00000-of-00001.parquet"
    table = pq.read_table(path)
    changed = table.set_column(table.schema.get_field_index("sentence1"), "sentence1",
                               pa.array([f"changed {i}" for i in range(len(table))]))
    pq.write_table(changed.slice(0, 40), path)
    after = dataset.load_subsampled(cfg.task, str(copy), seed=0)[cfg.task.eval_split]
    assert before[0]["sentence1"] != "changed" and len(before) == 50
    assert len(after) == 40 and all(s.startswith("changed ") for s in after["sentence1"])
    assert after.features["label"].names == ["not_equivalent", "equivalent"]  # features kept from the schema
