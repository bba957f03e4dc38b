"""Task config -> tokenized train and evaluation splits, built once per study."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from sweeper.data import labels, source

if TYPE_CHECKING:  # imported lazily: the CLI checks its input before loading these
    import datasets
    import transformers

log = logging.getLogger(__name__)
MODEL_COLUMNS = ("input_ids", "token_type_ids", "attention_mask", "labels")


@dataclass
class TaskData:
    train: datasets.Dataset  # model columns only
    eval: datasets.Dataset
    train_lengths: np.ndarray  # tokens per example, for length-grouped batches
    eval_lengths: np.ndarray
    tokenizer: transformers.PreTrainedTokenizerBase
    extra_evals: dict = field(default_factory=dict)  # split -> (tokenized split, lengths): task.extra_eval_splits
    label_names: list[str] = field(default_factory=list)  # the exported model's id2label (labels.exported)
    # With task.selection_size: eval is the part of the training split held out for the search to select on,
    # and unseen the task's eval_split (with its lengths), which only the verdict scores on.
    unseen: tuple | None = None


UNSEEN = "unseen"  # the name a re-validation run's unseen split has among its extra evaluations


def scored_on_unseen(data: TaskData, keep_best: bool) -> tuple[TaskData, str]:
    """The study's data for a run scored on the unseen split (the verdict's, the benchmark's re-validation), and
    the prefix its metrics then carry: the unseen split as the evaluation split; with train.keep_best, as an extra
    evaluation beside the selection split instead, so that the selection split picks the kept epoch and the
    unseen split only scores it (picking the epoch on the split that scores it would flatter the run)."""
    unseen, lengths = data.unseen
    if keep_best:
        return replace(data, extra_evals={**data.extra_evals, UNSEEN: (unseen, lengths)}), f"{UNSEEN}_"
    return replace(data, eval=unseen, eval_lengths=lengths), ""


def load_subsampled(task, data_dir: str | None, seed: int) -> dict:
    """Every split the task names (train, evaluation, extra evaluation), read fresh from its source and
    deterministically subsampled: training by task.max_train_samples, the others by max_eval_samples."""
    return {split: subsample(d, task.max_train_samples if split == task.train_split else task.max_eval_samples, seed)
            for split, d in source.read(task, data_dir).items()}


def load_test_split(task, data_dir: str | None):
    """The task's unlabelled test split (labels -1), whole and in order, with its `idx` column."""
    where = source.resolve(task, data_dir)
    if where.hub is None:
        return unlabelled(source.read_split(where, task, task.test_split, labelled=False), task)
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset(where.hub, where.subset, split=task.test_split)


def unlabelled(split, task):
    """A test split of one's own files as GLUE's: labels -1 where it has none (or names, or empty cells), an
    `idx` of row numbers where it has none."""
    column, wanted = task.label_column, np.number if task.num_labels == 1 else np.integer
    if column not in split.column_names or not np.issubdtype(labels.column(split, column).dtype, wanted):
        split = split.remove_columns([c for c in [column] if c in split.column_names])
        split = split.add_column(column, [-1.0 if task.num_labels == 1 else -1] * len(split))
    return split if "idx" in split.column_names else split.add_column("idx", list(range(len(split))))


def hold_out(split, size: float, seed: int) -> tuple:
    """(rest, held out): a seeded share (size < 1) or count of the split's examples held out, disjoint from
    the rest; the same for every trial, run and worker of a study."""
    n = round(size * len(split)) if size < 1 else int(size)
    if not 1 <= n < len(split):
        from sweeper.errors import ConfigError

        raise ConfigError(f"task.selection_size={size:g}: {n} of {len(split)} training examples; allowed: at least "
                          "one held out and one left to train on")
    order = np.random.default_rng([seed, 1]).permutation(len(split))  # a stream of its own, not the subsample's
    return split.select(np.sort(order[n:])), split.select(np.sort(order[:n]))


def subsample(split, n: int | None, seed: int):
    """The first n of a seeded shuffle, so every trial and every run sees the same examples."""
    if n is None or n >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(n)).flatten_indices()


def tokenize(split, tokenizer, columns, max_length: int | None, label_column: str = "label",
             regression: bool = False):
    def encode(batch):
        return tokenizer(*(batch[c] for c in columns), truncation=True, max_length=max_length)

    out = split.map(encode, batched=True, keep_in_memory=True,
                    remove_columns=[c for c in split.column_names if c != label_column])
    out = out.rename_column(label_column, "labels")
    if regression:  # float labels make transformers pick the MSE loss for a one-output head
        from datasets import Value

        out = out.cast_column("labels", Value("float32"))
    return out.select_columns([c for c in MODEL_COLUMNS if c in out.column_names])


def load_task(task, tokenizer_path: str, data_dir: str | None, seed: int) -> TaskData:
    """Load, subsample and tokenize a task's splits: the one tokenization of a study."""
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    raw = load_subsampled(task, data_dir, seed)
    label_names = labels.exported(task, raw[task.train_split])  # of the whole training split, as without a selection
    selection = task.get("selection_size")
    if selection is not None:
        raw["unseen"] = raw[task.eval_split]
        raw[task.train_split], raw[task.eval_split] = hold_out(raw[task.train_split], selection, seed)
    tokenized = {split: tokenize(d, tokenizer, task.text_columns, task.max_length, task.label_column,
                                 task.num_labels == 1)
                 for split, d in raw.items()}
    train, evaluation = tokenized[task.train_split], tokenized[task.eval_split]
    extras = {s: tokenized[s] for s in task.extra_eval_splits}
    unseen = tokenized.get("unseen")
    log.info("%s: %d train / %d %s examples tokenized%s%s", task.name, len(train), len(evaluation),
             "held-out training (selection)" if unseen is not None else "eval",
             "".join(f", {len(d)} {s}" for s, d in extras.items()),
             f", {len(unseen)} {task.eval_split} kept for the verdict" if unseen is not None else "")
    return TaskData(train, evaluation, token_lengths(train), token_lengths(evaluation), tokenizer,
                    {s: (d, token_lengths(d)) for s, d in extras.items()}, label_names,
                    None if unseen is None else (unseen, token_lengths(unseen)))


def token_lengths(split) -> np.ndarray:
    return np.fromiter((len(ids) for ids in split["input_ids"]), dtype=np.int64, count=len(split))
