"""Sphinx, with MyST Markdown and the furo theme: the tools optuna, ray and syne-tune build their docs with, chosen over
mkdocs-material because its warnings (a broken cross-reference, a missing anchor, a page in no toctree) are errors
under `-W`, its extension API is plain Python (docs/_ext/sweeper_docs.py generates the configuration reference and
the benchmark tables and figures at every build), and mkdocs itself has had no release since 2024. Offline: no
intersphinx, no remote images. `make docs` builds it with warnings as errors; `make test` runs `make docs`."""
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "sweeper"
# pyproject.toml's version (tomllib is Python 3.11+; sweeper supports 3.10)
release = version = re.search(r'^version = "(.+)"', (HERE.parent / "pyproject.toml").read_text(), re.M)[1]
extensions = ["myst_parser", "sweeper_docs"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated", "README.md"]
myst_heading_anchors = 3  # [text](search.md#the-budget) links to a heading; a missing one is a warning
myst_enable_extensions = ["colon_fence", "deflist"]  # deflist: the configuration reference
nitpicky = True
html_theme = "furo"
html_title = f"sweeper {version}"
html_static_path = []
