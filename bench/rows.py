"""Benchmark results as CSV rows appended one at a time, so a long benchmark can stop and go on: its rerun reads
the rows there and skips what they cover."""
from __future__ import annotations

import contextlib
import csv
import fcntl
from pathlib import Path


def read(out: Path) -> list[dict]:
    if not out.exists():
        return []
    with out.open() as f:
        return list(csv.DictReader(f))


@contextlib.contextmanager
def locked(out: Path):
    """Two lanes appending to one file, or one rewriting it, take turns (a lock file beside it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(f".{out.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def append(out: Path, fields: list[str], row: dict) -> None:
    """Append `row` to `out` (the header first, for a new file; a file of fewer columns gets the new ones, empty in
    its rows); flushed when this returns."""
    with locked(out):
        rows = read(out)
        if out.exists() and (not rows or list(rows[0]) != fields):
            _write(out, fields, rows)
        new = not out.exists()
        with out.open("a", newline="") as f:
            writer = csv.DictWriter(f, fields)
            if new:
                writer.writeheader()
            writer.writerow(row)


def update(out: Path, fields: list[str], change) -> None:
    """Rewrite `out` with change(rows) applied to the rows there now (others may have appended since they were
    read), in `fields`' columns, replaced in one rename."""
    with locked(out):
        _write(out, fields, change(read(out)))


def _write(out: Path, fields: list[str], rows: list[dict]) -> None:
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows([{k: r.get(k, "") for k in fields} for r in rows])
    tmp.replace(out)
