"""Task config -> where its splits come from (a local parquet directory or a Hub dataset), read and checked:
columns present, labels that fit task.num_labels. Cheap enough (schema and one column) to run for every job
of a command line before any trains."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweeper.config import ConfigError

GLUE_HUB = "nyu-mll/glue"


@dataclass
class Source:
    where: str  # the setting that chose it, for errors: "data_dir=...", "task.dataset=..."
    local: Path | None = None  # a directory of <split>-*.parquet (or <split>.parquet) files
    hub: str | None = None  # a Hub dataset id, read with datasets.load_dataset(hub, subset)
    subset: str | None = None


def resolve(task, data_dir: str | None) -> Source:
    """GLUE (task.dataset null) is `<data_dir>/<task.name>/` or nyu-mll/glue's config task.name; another
    dataset is a path (starting /, ./, ../ or ~: `<path>/[<subset>/]`) or a Hub id."""
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
    """A split's parquet files; a ConfigError naming what is there when there are none."""
    d = source.local
    found = sorted(d.glob(f"{split}.parquet")) + sorted(d.glob(f"{split}-*.parquet")) if d.is_dir() else []
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
                          "directory; allowed: a directory of <split>-*.parquet or <split>.parquet files")
    there = sorted({p.name.split(".")[0].split("-")[0] for p in d.glob("*.parquet")}) or ["none"]
    raise ConfigError(f"{source.where}: {d} has no {split}.parquet or {split}-*.parquet; splits there: "
                      f"{', '.join(there)}")


def check(task, data_dir: str | None) -> None:
    """Check a local source's files, columns and labels (a Hub source is checked when it is loaded)."""
    import pyarrow.parquet as pq

    source = resolve(task, data_dir)
    if source.local is None:
        return
    for split in splits(task):
        files = split_files(source, task, split)
        try:
            columns = pq.read_schema(files[0]).names
            labels = None
            if task.label_column in columns:
                labels = np.concatenate([pq.read_table(f, columns=[task.label_column]).column(0).to_numpy()
                                         for f in files])
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError(f"{source.where}: {files[0].parent} holds a {split} file that is not readable "
                              f"parquet ({str(e).splitlines()[0]}); allowed: parquet files") from None
        check_split(task, f"{source.where} split {split}", split, columns, labels)


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
                              f"{labels.dtype}; allowed: numbers")
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"task.label_column={task.label_column}: {where} holds {labels.dtype} labels; allowed: "
                          f"integers 0..num_labels-1 (or task.num_labels=1 for a regression)")
    seen = np.unique(labels)
    if len(seen) and (seen[0] < 0 or seen[-1] >= task.num_labels):
        raise ConfigError(f"task.num_labels={task.num_labels}: {where} has labels {seen[0]}..{seen[-1]}; "
                          f"allowed: 0..{task.num_labels - 1} (is num_labels right? unlabeled test splits hold -1)")
    if split == task.train_split and len(seen) != task.num_labels:
        raise ConfigError(f"task.num_labels={task.num_labels}: {where} has {len(seen)} distinct labels "
                          f"({', '.join(map(str, seen))}); allowed: task.num_labels={len(seen)}")


def read(task, data_dir: str | None) -> dict:
    """Every split the task names, as datasets.Dataset, checked."""
    import datasets

    source = resolve(task, data_dir)
    if source.local is not None:
        out = {s: read_local(split_files(source, task, s)) for s in splits(task)}
    else:
        raw = datasets.load_dataset(source.hub, source.subset)  # the Hub's files are versioned: its cache is sound
        missing = [s for s in splits(task) if s not in raw]
        if missing:
            raise ConfigError(f"{source.where} has no split {', '.join(missing)}; splits there: {', '.join(raw)}")
        out = {s: raw[s] for s in splits(task)}
    for s, d in out.items():
        labels = np.asarray(d[task.label_column]) if task.label_column in d.column_names else None
        check_split(task, f"{source.where} split {s}", s, d.column_names, labels)
    return out


def read_local(files: list[Path]):
    """One split of a local copy, read from its parquet files as they are now. `load_dataset(dir)` keeps
    serving its cache of a local directory after the files change (a fixed copy stays broken), and
    reading a few MB of parquet costs less than checking that cache."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The Hub's parquet schema carries the features (ClassLabel names included); Dataset reads them from it.
    return datasets.Dataset(pa.concat_tables([pq.read_table(f) for f in files]))
