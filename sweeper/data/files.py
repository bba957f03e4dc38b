"""A split's own files (parquet, CSV, TSV, JSON Lines) -> one datasets.Dataset, read as the files are now,
with the rows a tokenizer or a label map cannot take named by file and line."""
from __future__ import annotations

import glob
import logging
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from sweeper.errors import ConfigError

# File suffix -> the reader. .json is JSON Lines too (or one JSON array): datasets' json builder reads both.
READERS = {"parquet": "parquet", "csv": "csv", "tsv": "tsv", "jsonl": "json", "json": "json"}
SUFFIXES = ", ".join(f".{s}" for s in READERS)
# Only an empty cell is missing: pandas would also read "NA", "None" or "null" (a label, a word) as missing.
# A row with more fields than the header would make pandas take the first column as the index (index_col
# unset) or drop the extra fields (index_col=False, with a ParserWarning that read_file makes an error).
CSV_OPTIONS = {"index_col": False, "keep_default_na": False, "na_values": [""]}
OPTIONS = {"csv": {**CSV_OPTIONS}, "tsv": {**CSV_OPTIONS, "delimiter": "\t"}, "json": {}}


def in_directory(d: Path, split: str) -> list[Path]:
    """<split>.<suffix> and <split>-*.<suffix> (shards) in d, for every suffix read."""
    return [p for s in READERS for p in sorted(d.glob(f"{split}.{s}")) + sorted(d.glob(f"{split}-*.{s}"))]


def split_names(d: Path) -> list[str]:
    """The splits a directory holds files of, for errors."""
    return sorted({p.name.split(".")[0].split("-")[0] for s in READERS for p in d.glob(f"*.{s}")})


def given(data_files: dict, split: str, where: str) -> list[Path]:
    """A split's files from task.data_files: a path or a glob, relative to where the command runs."""
    if split not in data_files:
        raise ConfigError(f"{where} has no {split}; given: {', '.join(data_files) or 'none'}; allowed: a file "
                          f"for every split the task reads, e.g. task.data_files.{split}=./{split}.csv")
    pattern = str(Path(data_files[split]).expanduser())
    found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not found:
        raise ConfigError(f"{where}.{split}={data_files[split]}: no such file; allowed: a file (or a glob) "
                          f"relative to {Path.cwd()}")
    return found


def reader(files: list[Path], where: str, split: str) -> str:
    """The one reader of a split's files; a ConfigError for an unknown suffix or a mix of formats."""
    unknown = [f.name for f in files if f.suffix[1:].lower() not in READERS]
    if unknown:
        raise ConfigError(f"{where}: split {split} has {unknown[0]}, of no format read; allowed: {SUFFIXES} files")
    kinds = {READERS[f.suffix[1:].lower()] for f in files}
    if len(kinds) > 1:
        raise ConfigError(f"{where}: split {split} mixes formats ({', '.join(f.name for f in files)}); "
                          "allowed: one format per split")
    return kinds.pop()


def read_split(files: list[Path], task, where: str, split: str, labelled: bool = True):
    """A split's files as one Dataset: no row may leave a text empty, nor, in a labelled split, its label."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = reader(files, where, split)
    if kind == "parquet":
        # `load_dataset(dir)` keeps serving its cache of a local directory after the files change, and reading
        # a few MB of parquet costs less than checking that cache. The Hub's parquet schema carries the
        # features (ClassLabel names included); Dataset reads them from it.
        return datasets.Dataset(pa.concat_tables([pq.read_table(f) for f in files]))
    parts = [read_file(f, kind, task, where, labelled) for f in files]
    try:
        out = datasets.concatenate_datasets(parts)
    except ValueError as e:
        raise ConfigError(f"{where}: the {split} files {', '.join(f.name for f in files)} differ in columns or "
                          f"types ({str(e).splitlines()[0]}); allowed: shards of one table") from None
    # pandas reads a text column of numbers (codes, years) as numbers: the tokenizer takes text.
    for c in task.text_columns:
        if c in out.column_names and getattr(out.features[c], "dtype", None) not in ("string", "large_string"):
            out = out.cast_column(c, datasets.Value("string"))
    return out


def read_file(path: Path, kind: str, task, where: str, labelled: bool):
    """One CSV, TSV or JSON Lines file through datasets' builder, fresh: into a throwaway cache (datasets
    keeps serving its cache of a local file after the file changes), kept in memory."""
    import datasets
    import pandas as pd

    name = {"csv": "CSV", "tsv": "TSV", "json": "JSON Lines"}[kind]
    try:
        with quiet(), tempfile.TemporaryDirectory(prefix="sweeper-data-") as cache, warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            d = datasets.load_dataset("json" if kind == "json" else "csv", data_files=[str(path)], split="train",
                                      cache_dir=cache, keep_in_memory=True, **OPTIONS[kind])
    except Exception as e:  # a parser's error, a decoding error, an empty file: all the file's fault
        cause = e.__cause__ or e.__context__ or e
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else "empty"
        allowed = "one JSON object per line" if kind == "json" else f"{name} with a header row naming the columns"
        raise ConfigError(f"{where}: {path} is not readable {name} ({type(cause).__name__}: {text}); "
                          f"allowed: {allowed}") from None
    header = 2 if kind in ("csv", "tsv") else 1  # line of the first row
    for column in [*task.text_columns, *([task.label_column] if labelled else [])]:
        if column in d.column_names:
            empty = d.data.column(column).is_null().to_numpy(zero_copy_only=False).nonzero()[0]
            if len(empty):
                raise ConfigError(f"{where}: {path} line {empty[0] + header} has no {column} ({len(empty)} rows "
                                  f"without); allowed: a value in every row of task.text_columns and "
                                  f"task.label_column={task.label_column}")
    if labelled and task.label_column in d.column_names and not isinstance(
            d.features[task.label_column], datasets.Value):
        raise ConfigError(f"task.label_column={task.label_column}: {where} {path} holds labels of mixed types; "
                          "allowed: all integers, all names (text) or, for a regression, all numbers")
    return d


@contextmanager
def quiet():
    """No progress bar per file, and no log of a parser's error: read_file turns it into one line of its own."""
    import datasets

    logger, bars = logging.getLogger("datasets"), datasets.is_progress_bar_enabled()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            datasets.enable_progress_bars()
