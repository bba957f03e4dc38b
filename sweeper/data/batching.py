"""Tokenized splits -> dataloaders: shuffled (optionally length-grouped) training batches,
length-sorted evaluation batches."""
from __future__ import annotations

import math

import numpy as np
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

# Examples sorted together: large enough that batches hold similar lengths, small enough that
# the order stays random at the scale of an epoch (Hugging Face's LengthGroupedSampler uses 50).
GROUP_BATCHES = 50


class ShuffledBatches(Sampler[list[int]]):
    """Every example once per epoch in seeded random batches; with `group_by_length`, each batch
    is cut from a length-sorted window of GROUP_BATCHES batches, so it holds little padding."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, group_by_length: bool):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        if self.group_by_length:
            window = self.batch_size * GROUP_BATCHES
            order = np.concatenate([
                w[np.argsort(-self.lengths[w], kind="stable")]
                for w in np.split(order, range(window, len(order), window))
            ])
        batches = np.split(order, range(self.batch_size, len(order), self.batch_size))
        for b in rng.permutation(len(batches)):
            yield batches[b].tolist()


def get_dataloaders(data, batch_size: int, eval_batch_size: int, seed: int,
                    group_by_length: bool, pad_to_multiple_of: int | None):
    """Training and evaluation dataloaders over a study's TaskData; padding is per batch."""
    collate = DataCollatorWithPadding(data.tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    train = DataLoader(data.train, collate_fn=collate,
                       batch_sampler=ShuffledBatches(data.train_lengths, batch_size, seed, group_by_length))
    return train, eval_dataloader(data.eval, data.eval_lengths, collate, eval_batch_size, group_by_length)


def get_extra_eval_dataloaders(data, eval_batch_size: int, group_by_length: bool,
                               pad_to_multiple_of: int | None) -> dict[str, DataLoader]:
    """One evaluation dataloader per extra evaluation split (MNLI's mismatched validation)."""
    collate = DataCollatorWithPadding(data.tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    return {split: eval_dataloader(d, lengths, collate, eval_batch_size, group_by_length)
            for split, (d, lengths) in data.extra_evals.items()}


def eval_dataloader(split, lengths, collate, eval_batch_size: int, group_by_length: bool) -> DataLoader:
    # Evaluation order does not change the metrics, so sort by length to pad as little as possible.
    order = np.argsort(-lengths, kind="stable") if group_by_length else np.arange(len(split))
    return DataLoader(split, collate_fn=collate, batch_size=eval_batch_size, sampler=order.tolist())



def eval_subset(n: int, size: int | None, seed: int) -> np.ndarray | None:
    """Indices of the fixed seeded subset of `size` of `n` evaluation examples that evaluations within an epoch
    score on; None when the split is no larger."""
    if size is None or size >= n:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def get_subset_eval_dataloader(data, chosen: np.ndarray | None, eval_batch_size: int, group_by_length: bool,
                               pad_to_multiple_of: int | None) -> DataLoader | None:
    """The evaluations within an epoch: on the evaluation examples `chosen` (eval_subset), the same for every trial
    of a study; None without a subset (then they use the whole split)."""
    if chosen is None:
        return None
    collate = DataCollatorWithPadding(data.tokenizer, pad_to_multiple_of=pad_to_multiple_of)
    return eval_dataloader(data.eval.select(chosen), data.eval_lengths[chosen], collate, eval_batch_size,
                           group_by_length)
