"""Shared fixtures: the real configs shrunk for CPU, the local GLUE copy, real SQLite files in tmp_path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLUE_DIR = Path(os.environ.get("GLUE_DIR", ROOT.parent / "shared" / "data" / "glue")).resolve()
# Everything is local: never wait ~25 s on Hub retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One intra-op thread per process (this one and every CLI it starts): tiny models gain nothing from more, and
# pytest -n 2 with workers of their own would otherwise put several spinning thread pools on each core.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A tiny but complete sweep: the CLI's own configs, with the model, data and trial count shrunk.
TINY = ["model=tiny", "task.max_train_samples=64", "task.max_eval_samples=32", "train.progress=false",
        "study.budget_epochs=null",  # trial counts as the tests set them (test_budget.py: the budget)
        "search.portfolio=[{optimizer.lr:5e-5,train.epochs:3,train.batch_size:8}]"]  # one queued start, the course
#   settings (as trial 0)


@pytest.fixture(scope="session")
def glue_dir() -> str:
    if not (GLUE_DIR / "mrpc").is_dir():
        pytest.fail(f"GLUE copy not found at {GLUE_DIR}; set GLUE_DIR")
    return str(GLUE_DIR)


def compose_config(*overrides: str):
    """The CLI's own config, composed with overrides."""
    from hydra import compose, initialize_config_dir

    from sweeper.cli import quote_space
    from sweeper.config import CONF_DIR, register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=quote_space(list(overrides)))  # search.space entries as the CLI takes them


@pytest.fixture
def compose_cfg(glue_dir, tmp_path):
    """Compose the real config with overrides, writing to tmp_path (storage, outputs)."""
    def _compose(*overrides: str):
        return compose_config(f"data_dir={glue_dir}", f"out_dir={tmp_path}",
                              f"study.storage=sqlite:///{tmp_path}/s.db", *overrides)

    return _compose


def cli(*args: str, env: dict | None = None, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """Run `python -m sweeper` as a real subprocess from the repository root."""
    return subprocess.run([sys.executable, "-m", "sweeper", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, **popen)


def cli_popen(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def load(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


# One worker's open_storage, started on a signal so that all of them reach the storage together.
OPEN_STORAGE = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from sweeper.errors import ConfigError
from sweeper.study.storage import open_storage

url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.001)
try:
    open_storage(SimpleNamespace(storage=url, max_retries=3, heartbeat_interval=10, grace_period=30,
                                 storage_patience=300))
except ConfigError as e:
    sys.exit(f"error: {e}")
"""


def open_storage_together(url: str, signals: Path, workers: int = 4) -> list[tuple[int, str]]:
    """Open `url` from several processes at the same instant, as workers starting together on a new
    study do; returns each one's exit code and stderr."""
    import time

    signals.mkdir()
    go, ready = signals / "go", [signals / f"ready-{i}" for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORAGE, url, str(r), str(go)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.time() + 60
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    return [(p.returncode, e) for p, e in zip(procs, errors, strict=True)]
