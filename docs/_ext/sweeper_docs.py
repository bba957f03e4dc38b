"""Sphinx extension: before reading the pages, write what they include from the code and the benchmarks' files into
docs/_generated/ (git-ignored): the configuration reference (config_reference.py) and the benchmark tables and
figures (bench_pages.py). Pages include them with MyST's {include} and images."""
from __future__ import annotations

from pathlib import Path

import bench_pages
import config_reference


def generate(app) -> None:
    out = Path(app.srcdir) / "_generated"
    bench_pages.write(out)
    bench_pages.replace(out / "config-reference.md", config_reference.reference() + "\n")


def setup(app):
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "version": "1"}
