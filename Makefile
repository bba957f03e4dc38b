# make sweep   set up, then run the main job: MRPC and SST-2 studies on MiniLM, local GLUE
# make test    set up, lint, then run every test (fast, then slow)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 takes the CPU build on this machine's disk; an unpinned torch pulls a multi-GB
# CUDA build. On a GPU machine: make setup TORCH=torch (or install your torch first).
TORCH ?= torch==2.13.0
GLUE_DIR ?= $(abspath ../shared/data/glue)
export GLUE_DIR
export HF_HUB_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1

.PHONY: setup sweep test test-fast lint bench bench-search clean

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,postgres,launchers,trackers]"
	touch $@

sweep: setup
	$(PY) -m sweeper -m task=mrpc,sst2

# The PostgreSQL tests need a server: .ci/postgres installs (Debian's package) and starts one on
# loopback unless SWEEPER_TEST_POSTGRES already names one; where it cannot, they skip and say why.
# Two tests at a time (pytest-xdist), each process on one thread (tests/conftest.py): the tests' models are
# tiny, so one test alone keeps barely one core busy.
# The SLURM test needs a cluster: ../shared/tools/slurm_local.sh starts a one-node one (Debian's slurm-wlm, as root)
# unless SWEEPER_TEST_SLURM already names a partition.
test: setup lint
	$(PY) -m pytest -m "not slow" -n 2
	SWEEPER_TEST_POSTGRES="$${SWEEPER_TEST_POSTGRES:-$$(bash .ci/postgres 2>/tmp/sweeper-postgres.log || true)}" \
	SWEEPER_TEST_SLURM="$${SWEEPER_TEST_SLURM:-$$(bash ../shared/tools/slurm_local.sh 2>/tmp/sweeper-slurm.log || true)}" \
	  $(PY) -m pytest -m slow -n 2 --durations=15

test-fast: setup
	$(PY) -m pytest -m "not slow" -n 2

lint: setup
	$(VENV)/bin/ruff check sweeper tests bench

bench: setup
	$(PY) bench/throughput.py

bench-search: setup
	$(PY) bench/compute.py

clean:
	rm -rf outputs/hydra outputs/*.db* outputs/*-*/ outputs/summary.csv
