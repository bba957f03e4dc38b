"""Task config -> tokenized train and evaluation splits, built once per study."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sweeper.config import ConfigError

if TYPE_CHECKING:  # imported lazily: the CLI checks its input before loading these
    import datasets
    import transformers

log = logging.getLogger(__name__)
GLUE_HUB = "nyu-mll/glue"
MODEL_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "labels")


@dataclass
class TaskData:
    train: datasets.Dataset  # model columns only
    eval: datasets.Dataset
    train_lengths: np.ndarray  # tokens per example, for length-grouped batches
    eval_lengths: np.ndarray
    tokenizer: transformers.PreTrainedTokenizerBase


def check_local_copy(data_dir: str, task) -> None:
    """Fail early, naming what is missing, when a local GLUE copy lacks the task's files."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ConfigError(f"data_dir={data_dir} is not a directory; allowed: a local GLUE copy in the "
                          f"{GLUE_HUB} layout (set GLUE_DIR or data_dir=), or data_dir=null for the Hub")
    for split in (task.train_split, task.eval_split):
        if not any((root / task.name).glob(f"{split}-*.parquet")):
            present = sorted(p.name for p in root.iterdir() if any(p.glob("*.parquet"))) or ["none"]
            raise ConfigError(f"data_dir={data_dir} has no {task.name}/{split}-*.parquet; "
                              f"tasks there: {', '.join(present)}")


def load_splits(task, data_dir: str | None, seed: int):
    """The task's train and evaluation splits, deterministically subsampled."""
    import datasets

    datasets.disable_progress_bars()
    if data_dir is not None:
        check_local_copy(data_dir, task)
    if data_dir is not None:
        train, evaluation = (read_local(Path(data_dir), task.name, s) for s in (task.train_split, task.eval_split))
    else:
        raw = datasets.load_dataset(GLUE_HUB, task.name)  # the Hub's files are versioned: its cache is sound
        train, evaluation = raw[task.train_split], raw[task.eval_split]
    return (subsample(train, task.max_train_samples, seed),
            subsample(evaluation, task.max_eval_samples, seed))


def read_local(root: Path, name: str, split: str) -> datasets.Dataset:
    """One split of a local copy, read from its parquet files as they are now. `load_dataset(dir)` keeps
    serving its cache of a local directory after the files change (a fixed copy stays broken), and
    reading a few MB of parquet costs less than checking that cache."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((root / name).glob(f"{split}-*.parquet"))
    # The Hub's parquet schema carries the features (ClassLabel names included); Dataset reads them from it.
    return datasets.Dataset(pa.concat_tables([pq.read_table(f) for f in files]))


def load_test_split(task, data_dir: str | None):
    """The task's unlabelled test split (labels -1), whole and in order, with its `idx` column."""
    import datasets

    datasets.disable_progress_bars()
    source = str(Path(data_dir).resolve()) if data_dir else GLUE_HUB
    return datasets.load_dataset(source, task.name, split=task.test_split)


def subsample(split, n: int | None, seed: int):
    """The first n of a seeded shuffle, so every trial and every run sees the same examples."""
    if n is None or n >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(n)).flatten_indices()


def tokenize(split, tokenizer, columns, max_length: int | None):
    def encode(batch):
        return tokenizer(*(batch[c] for c in columns), truncation=True, max_length=max_length)

    out = split.map(encode, batched=True, keep_in_memory=True,
                    remove_columns=[c for c in split.column_names if c != "label"])
    out = out.rename_column("label", "labels")
    return out.select_columns([c for c in MODEL_COLUMNS if c in out.column_names])


def load_task(task, tokenizer_path: str, data_dir: str | None, seed: int) -> TaskData:
    """Load, subsample and tokenize a task's splits: the one tokenization of a study."""
    from transformers import AutoTokenizer

    train, evaluation = load_splits(task, data_dir, seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    train, evaluation = (tokenize(s, tokenizer, task.text_columns, task.max_length)
                         for s in (train, evaluation))
    log.info("%s: %d train / %d eval examples tokenized", task.name, len(train), len(evaluation))
    return TaskData(train, evaluation, token_lengths(train), token_lengths(evaluation), tokenizer)


def token_lengths(split) -> np.ndarray:
    return np.fromiter((len(ids) for ids in split["input_ids"]), dtype=np.int64, count=len(split))
