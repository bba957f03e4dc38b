"""Labels given as names (text) -> class ids in a stable order: task.label_names when set, else the training
split's distinct names sorted, so the same files always give the same ids; the exported model keeps them."""
from __future__ import annotations

import numpy as np

from sweeper.errors import ConfigError


def is_text(values: np.ndarray) -> bool:
    return values.dtype.kind in "US" or (values.dtype.kind == "O" and len(values) > 0 and
                                         all(isinstance(v, str) for v in values))


def names(task, train: np.ndarray) -> list[str]:
    """The class names, id order: task.label_names, else the training split's names sorted."""
    return list(task.label_names) or sorted(set(train.tolist()))


def to_ids(task, split: str, values: np.ndarray, classes: list[str]) -> np.ndarray:
    """A split's names as ids (position in `classes`); a ConfigError for a name that has none."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = [v for v in dict.fromkeys(values.tolist()) if v not in index]
    if unknown:
        origin = ("task.label_names" if task.label_names else f"split {task.train_split}'s labels")
        raise ConfigError(f"task.label_column={task.label_column}: label '{unknown[0]}' in split {split} is not in "
                          f"{origin}=[{', '.join(classes)}]; allowed: those"
                          + ("" if task.label_names else ", or task.label_names listing every label"))
    return np.fromiter((index[v] for v in values.tolist()), dtype=np.int64, count=len(values))


def as_ids(task, labels: dict) -> tuple[dict, list[str] | None]:
    """Each split's label array (None: no such column) with names turned into ids, and the class names, if
    the training split's labels are names; else all as they are (check_split judges ids and numbers)."""
    train = labels.get(task.train_split)
    if task.num_labels == 1 or train is None or not is_text(train):
        return labels, None
    classes = names(task, train)
    if len(classes) != task.num_labels:  # task.label_names has num_labels names (source.check_names)
        raise ConfigError(f"task.num_labels={task.num_labels}: split {task.train_split} has {len(classes)} label "
                          f"names ({', '.join(classes)}); allowed: task.num_labels={len(classes)}")
    return {s: v if v is None else to_ids(task, s, v, classes)
            for s, v in labels.items()}, classes


def with_ids(task, splits: dict, ids: dict, classes: list[str] | None) -> dict:
    """Splits whose labels were names with `as_ids`' ids instead: a ClassLabel column carrying the names."""
    from datasets import ClassLabel

    if classes is None:
        return splits
    column = task.label_column
    return {s: d if ids[s] is None else d.remove_columns(column).add_column(column, ids[s],
                                                                          feature=ClassLabel(names=classes))
            for s, d in splits.items()}


def column(d, name: str) -> np.ndarray | None:
    """A Dataset's column as numpy through arrow (np.asarray(d[name]) goes row by row: 16 s for 400,000 ids)."""
    return d.with_format("arrow")[name].to_numpy() if name in d.column_names else None


def exported(task, train) -> list[str]:
    """The names the exported model's id2label keeps: task.label_names, else those the training split's label
    feature carries (names mapped by `encode`, or a Hub dataset's ClassLabel), else none (LABEL_0, ...)."""
    if task.label_names:
        return list(task.label_names)
    feature = train.features.get(task.label_column)
    found = list(getattr(feature, "names", None) or [])
    return found if len(found) == task.num_labels > 1 else []
