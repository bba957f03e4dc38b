"""Workers started together on one study leave exactly study.n_trials finished trials and each entry of
the start-up portfolio once: the study's runner (sweeper.study.run) in real processes on real SQLite files
and PostgreSQL, each trial a quick objective (the race is in counting and creating trials, not in
training), many rounds."""
import os
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT, load

pytestmark = pytest.mark.slow  # real processes: about 20 s a round on a quiet 2-core machine
POSTGRES = os.environ.get("SWEEPER_TEST_POSTGRES")
WORKERS, N_TRIALS = 4, 5

# One worker: the CLI's config and study runner; each trial suggests, sleeps a moment, reports once
# (without sweeper.study.objective, whose torch import would take most of each round).
WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, "tests")
from conftest import compose_config
from sweeper.study.storage import open_storage
from sweeper.search import probes
from sweeper.study.run import load_study, run_trials
from sweeper.search.space import compile_space, suggest

url, name, ready, go, n_trials = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
cfg = compose_config("model=tiny", f"study.storage={url}", f"study.name={name}", f"study.n_trials={n_trials}",
                     "study.heartbeat_interval=1", "study.grace_period=5", f"out_dir={ready.parent}", *sys.argv[6:])

class Quick:
    trial = None
    def __call__(self, trial):
        self.trial = trial
        lr = suggest(trial, compile_space(cfg.search), cfg)["optimizer.lr"]
        time.sleep(0.3)
        trial.report(lr * 1e4, 0)
        probes.stop(trial.user_attrs.get(probes.PROBE), trial, 0, lr * 1e4, None)  # a probe stops at its first report
        return lr * 1e4
    def release(self):
        self.trial = None

ready.touch()
while not go.exists():
    time.sleep(0.001)
study = load_study(open_storage(cfg.study), cfg)
run_trials(study, Quick(), cfg, ready.parent / "checkpoints")
"""


def run_together(url: str, name: str, signals, n_trials: int = N_TRIALS, *overrides: str) -> list[tuple[int, str]]:
    signals.mkdir()
    go, ready = signals / "go", [signals / f"ready-{i}" for i in range(WORKERS)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, name, str(r), str(go), str(n_trials), *overrides],
                              cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.time() + 120
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    return [(p.returncode, e[-2000:]) for p, e in zip(procs, errors, strict=True)]


def check_exact(storage: str, name: str) -> None:
    trials = load(storage, name).trials
    states = [t.state for t in trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == N_TRIALS, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    from conftest import compose_config
    from sweeper.study.run import portfolio

    for entry in portfolio(compose_config("model=tiny")):  # the start-up portfolio, each once
        assert sum(t.params == entry for t in trials) == 1, [t.params for t in trials]
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.parametrize("round_", range(3))
def test_workers_started_together_on_sqlite_run_exactly_n_trials(tmp_path, round_):
    storage = f"sqlite:///{tmp_path}/c.db"  # a new file: workers also race to create its tables
    results = run_together(storage, "race", tmp_path / "signals")
    assert [code for code, _ in results] == [0] * WORKERS, results
    check_exact(storage, "race")


@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL server: set SWEEPER_TEST_POSTGRES (make test starts one)")
@pytest.mark.parametrize("round_", range(3))
def test_workers_started_together_on_postgresql_run_exactly_n_trials(tmp_path, round_):
    name = f"race-{uuid.uuid4().hex[:8]}"
    try:
        results = run_together(POSTGRES, name, tmp_path / "signals")
        assert [code for code, _ in results] == [0] * WORKERS, results
        check_exact(POSTGRES, name)
    finally:
        optuna.delete_study(study_name=name, storage=POSTGRES)


def test_workers_started_together_run_the_probe_bracket_once(tmp_path):
    # 4 probes, then the best 2 again in full, once each, whichever worker sees the last probe stop.
    storage = f"sqlite:///{tmp_path}/c.db"
    results = run_together(storage, "probes", tmp_path / "signals", 7, "search.probe.trials=4", "search.probe.keep=2")
    assert [code for code, _ in results] == [0] * WORKERS, results
    from sweeper.search.probes import CONTINUES, PROBE, ranked

    study = load(storage, "probes")
    trials = study.trials
    assert [t.state for t in trials].count(TrialState.COMPLETE) + [t.state for t in trials].count(
        TrialState.PRUNED) == 7 and len(trials) == 7, [t.state for t in trials]
    probes = [t for t in trials if PROBE in t.user_attrs]
    assert len(probes) == 4 and all(t.state == TrialState.PRUNED for t in probes)
    continued = [t for t in trials if CONTINUES in t.user_attrs]
    assert [t.user_attrs[CONTINUES] for t in continued] == [t.number for t in ranked(probes, study.direction)[:2]]
    assert all(t.state == TrialState.COMPLETE and t.number > max(p.number for p in probes) for t in continued)
