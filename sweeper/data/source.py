"""Task config -> where its splits come from (a local GLUE copy, a directory of one's own parquet, CSV, TSV or
JSON Lines files, task.data_files, or a Hub dataset), read and checked: columns present, labels that fit
task.num_labels (names mapped to ids: labels.py). Cheap enough (for parquet: schema and one column) to run for
every job of a command line before any trains."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweeper.data import files, labels
from sweeper.errors import ConfigError

GLUE_HUB = "nyu-mll/glue"


@dataclass
class Source:
    where: str  # the setting that chose it, for errors: "data_dir=...", "task.dataset=..."
    local: Path | None = None  # a directory of <split>.<suffix> or <split>-*.<suffix> files (files.READERS)
    hub: str | None = None  # a Hub dataset id, read with datasets.load_dataset(hub, subset)
    subset: str | None = None
    files: dict[str, str] | None = None  # task.data_files: split -> a file or glob


def resolve(task, data_dir: str | None) -> Source:
    """GLUE (task.dataset null) is `<data_dir>/<task.name>/` or nyu-mll/glue's config task.name; another
    dataset is a path (starting /, ./, ../ or ~: `<path>/[<subset>/]`) or a Hub id; task.data_files names
    each split's files."""
    if task.data_files:
        if task.dataset is not None:
            raise ConfigError(f"task.data_files={dict(task.data_files)}: task.dataset={task.dataset} is set too; "
                              "allowed: one of them (task.dataset=null with task.data_files)")
        return Source("task.data_files", files=dict(task.data_files))
    if task.dataset is None:
        if data_dir:
            return Source(f"data_dir={data_dir}", local=Path(data_dir) / task.name, subset=task.name)
        return Source(f"{GLUE_HUB} (data_dir=null)", hub=GLUE_HUB, subset=task.name)
    if task.dataset.startswith(("/", "./", "../", "~")) or task.dataset in (".", ".."):
        root = Path(task.dataset).expanduser()
        return Source(f"task.dataset={task.dataset}", local=root / task.subset if task.subset else root,
                      subset=task.subset)
    return Source(f"task.dataset={task.dataset}", hub=task.dataset, subset=task.subset)


def splits(task) -> list[str]:
    return [task.train_split, task.eval_split, *task.extra_eval_splits]


def split_files(source: Source, task, split: str) -> list[Path]:
    """A split's files; a ConfigError naming what is there when there are none."""
    if source.files is not None:
        return files.given(source.files, split, source.where)
    d = source.local
    found = files.in_directory(d, split) if d.is_dir() else []
    if found:
        return found
    if task.dataset is None:
        root = d.parent
        if not root.is_dir():
            raise ConfigError(f"{source.where} is not a directory; allowed: a local GLUE copy in the {GLUE_HUB} "
                              f"layout (set GLUE_DIR or data_dir=), or data_dir=null for the Hub")
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet"))) or ["none"]
        raise ConfigError(f"{source.where} has no {task.name}/{split}-*.parquet; tasks there: {', '.join(present)}; "
                          f"allowed: a copy that holds {task.name}, or data_dir=null ({GLUE_HUB} from the Hub)")
    if not d.is_dir():
        raise ConfigError(f"{source.where}{f' task.subset={task.subset}' if task.subset else ''}: {d} is not a "
                          f"directory; allowed: a directory of <split>.<suffix> or <split>-*.<suffix> files "
                          f"({files.SUFFIXES})")
    there = files.split_names(d) or ["none"]
    raise ConfigError(f"{source.where}: {d} has no {split}.parquet or {split}-*.parquet; splits there: "
                      f"{', '.join(there)}; allowed: {split}.<suffix> or {split}-*.<suffix> files ({files.SUFFIXES})")


def check(task, data_dir: str | None) -> None:
    """Check a local source's files, columns and labels (a Hub source is checked when it is loaded)."""
    check_names(task)
    source = resolve(task, data_dir)
    if source.hub is not None:
        return
    found = {split: columns_and_labels(source, task, split) for split in splits(task)}
    ids, _ = labels.as_ids(task, {split: values for split, (_, values) in found.items()})
    for split, (columns, _) in found.items():
        check_split(task, f"{source.where} split {split}", split, columns, ids[split])


def check_names(task) -> None:
    """task.label_names name every class: id2label of the exported model, and the ids of labels given as names."""
    if task.label_names and task.num_labels > 1 and len(task.label_names) != task.num_labels:
        raise ConfigError(f"task.label_names=[{', '.join(task.label_names)}]: {len(task.label_names)} names for "
                          f"task.num_labels={task.num_labels}; allowed: {task.num_labels} names, or "
                          "task.label_names=[] (the names in the label column, or LABEL_0, ...)")


def columns_and_labels(source: Source, task, split: str) -> tuple[list[str], np.ndarray | None]:
    """A split's column names and label column: parquet's from its schema and that one column, other
    formats' from the whole split, read (and their rows checked) as for training."""
    import pyarrow.parquet as pq

    paths = split_files(source, task, split)
    if files.reader(paths, source.where, split) != "parquet":
        d = files.read_split(paths, task, source.where, split)
        return d.column_names, labels.column(d, task.label_column)
    try:
        columns = pq.read_schema(paths[0]).names
        values = None
        if task.label_column in columns:
            values = np.concatenate([pq.read_table(f, columns=[task.label_column]).column(0).to_numpy()
                                     for f in paths])
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"{source.where}: {paths[0].parent} holds a {split} file that is not readable "
                          f"parquet ({str(e).splitlines()[0]}); allowed: parquet files") from None
    return columns, values


def check_split(task, where: str, split: str, columns: list[str], labels: np.ndarray | None) -> None:
    """Text and label columns exist; labels are floats for a regression, else integers 0..num_labels-1,
    all of them present in the training split."""
    missing = [c for c in task.text_columns if c not in columns]
    if missing:
        raise ConfigError(f"task.text_columns={list(task.text_columns)}: {where} has no {', '.join(missing)}; "
                          f"columns there: {', '.join(columns)}")
    if task.label_column not in columns:
        raise ConfigError(f"task.label_column={task.label_column}: {where} has no such column; "
                          f"columns there: {', '.join(columns)}")
    if task.num_labels == 1:
        if not np.issubdtype(labels.dtype, np.number):
            raise ConfigError(f"task.num_labels=1 (regression): {where} column {task.label_column} holds "
                              f"{kind(labels)}; allowed: numbers")
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"task.label_column={task.label_column}: {where} holds {kind(labels)} labels; allowed: "
                          f"integers 0..num_labels-1, names (text) in every split, or task.num_labels=1 for a "
                          "regression")
    seen = np.unique(labels)
    if len(seen) and (seen[0] < 0 or seen[-1] >= task.num_labels):
        raise ConfigError(f"task.num_labels={task.num_labels}: {where} has labels {seen[0]}..{seen[-1]}; "
                          f"allowed: 0..{task.num_labels - 1} (is num_labels right? unlabeled test splits hold -1)")
    if split == task.train_split and len(seen) != task.num_labels:
        raise ConfigError(f"task.num_labels={task.num_labels}: {where} has {len(seen)} distinct labels "
                          f"({', '.join(map(str, seen))}); allowed: task.num_labels={len(seen)}")


def kind(values: np.ndarray) -> str:
    return "text" if labels.is_text(values) else str(values.dtype)


def read(task, data_dir: str | None) -> dict:
    """Every split the task names, as datasets.Dataset, labels as ids, checked."""
    import datasets

    check_names(task)
    source = resolve(task, data_dir)
    if source.hub is None:
        out = {s: read_split(source, task, s) for s in splits(task)}
    else:
        raw = datasets.load_dataset(source.hub, source.subset)  # the Hub's files are versioned: its cache is sound
        missing = [s for s in splits(task) if s not in raw]
        if missing:
            raise ConfigError(f"{source.where} has no split {', '.join(missing)}; splits there: {', '.join(raw)}")
        out = {s: raw[s] for s in splits(task)}
    ids, classes = labels.as_ids(task, {s: labels.column(d, task.label_column) for s, d in out.items()})
    for s, d in out.items():
        check_split(task, f"{source.where} split {s}", s, d.column_names, ids[s])
    return labels.with_ids(task, out, ids, classes)


def read_split(source: Source, task, split: str, labelled: bool = True):
    """One split of a local source, read from its files as they are now (files.py)."""
    return files.read_split(split_files(source, task, split), task, source.where, split, labelled)
