"""Benchmark results as CSV rows appended one at a time, so a long benchmark can stop and go on: its rerun reads
the rows there and skips what they cover."""
from __future__ import annotations

import csv
from pathlib import Path


def read(out: Path) -> list[dict]:
    if not out.exists():
        return []
    with out.open() as f:
        return list(csv.DictReader(f))


def append(out: Path, fields: list[str], row: dict) -> None:
    """Append `row` to `out` (the header first, for a new file; a file of fewer columns gets the new ones, empty in
    its rows); flushed when this returns."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and list(read(out)[:1] and read(out)[0]) != fields:
        rewrite(out, fields, read(out))
    new = not out.exists()
    with out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new:
            writer.writeheader()
        writer.writerow(row)


def rewrite(out: Path, fields: list[str], rows: list[dict]) -> None:
    """`rows` as the whole of `out`, in `fields`' columns, replaced in one rename."""
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows([{k: r.get(k, "") for k in fields} for r in rows])
    tmp.replace(out)
