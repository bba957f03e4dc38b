# make sweep   set up, then run the main job: MRPC and SST-2 studies on MiniLM, local GLUE
# make test    set up, lint, build the docs, then run every test (fast, then slow)
# make docs    the documentation site, docs/_build/html (Sphinx; warnings and broken links are errors)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 takes the CPU build on this machine's disk; an unpinned torch pulls a multi-GB
# CUDA build. On a GPU machine: make setup TORCH=torch (or install your torch first).
TORCH ?= torch==2.13.0
GLUE_DIR ?= $(abspath ../shared/data/glue)
export GLUE_DIR
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1

.PHONY: setup sweep test test-fast lint docs screenshots bench bench-search clean

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,docs,postgres,launchers,trackers]"
	touch $@

sweep: setup
	$(PY) -m sweeper -m task=mrpc,sst2

# The PostgreSQL tests need a server: .ci/postgres installs (Debian's package) and starts one on
# loopback unless SWEEPER_TEST_POSTGRES already names one; where it cannot, they skip and say why. The
# dashboard tests need a browser: .ci/chromium installs Debian's Chromium where it is missing.
# Two tests at a time (pytest-xdist), each process on one thread (tests/conftest.py): the tests' models are
# tiny, so one test alone keeps barely one core busy.
# The SLURM test needs a cluster: ../shared/tools/slurm_local.sh starts a one-node one (Debian's slurm-wlm, as root)
# unless SWEEPER_TEST_SLURM already names a partition.
test: setup lint docs
	$(PY) -m pytest -m "not slow" -n 2
	bash .ci/chromium >/tmp/sweeper-chromium.log 2>&1 || true
	SWEEPER_TEST_POSTGRES="$${SWEEPER_TEST_POSTGRES:-$$(bash .ci/postgres 2>/tmp/sweeper-postgres.log || true)}" \
	SWEEPER_TEST_SLURM="$${SWEEPER_TEST_SLURM:-$$(bash ../shared/tools/slurm_local.sh 2>/tmp/sweeper-slurm.log || true)}" \
	  $(PY) -m pytest -m slow -n 2 --durations=15

test-fast: setup
	$(PY) -m pytest -m "not slow" -n 2

lint: setup
	$(VENV)/bin/ruff check sweeper tests bench docs

# -W: a warning (a broken link or anchor, a missing include, a page in no toctree) fails the build; -n: nitpicky.
SPHINXOPTS := -W --keep-going -n -q
docs: setup
	$(PY) -m sphinx $(SPHINXOPTS) -b html docs docs/_build/html

# docs/img/*.png from a real study in a real headless Chromium (a few minutes here)
screenshots: setup
	$(PY) docs/screenshots.py

bench: setup
	$(PY) bench/throughput.py

bench-search: setup
	$(PY) bench/compute.py

clean:
	rm -rf outputs/hydra outputs/*.db* outputs/*-*/ outputs/summary.csv
