"""Many workers per study from one command: Hydra launchers start one job per (study, worker), real
processes on a shared PostgreSQL storage, two studies x two workers, the tiny model."""
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT, TINY

URL = os.environ.get("SWEEPER_TEST_POSTGRES")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not URL, reason="no PostgreSQL server: set SWEEPER_TEST_POSTGRES (make test starts one)")]


def run_multirun(args: list[str], log: Path, timeout: float) -> int:
    """The CLI in a session of its own, its output in a file: a launcher's workers (loky's, submitit's)
    inherit the output, so a pipe would stay open, and the test waiting on it, after the CLI exits; on
    timeout the whole session is killed, leaving no worker behind to hold the study lock."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher's pool outlives the CLI by design
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=4"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_two_studies_two_workers_each_from_one_command(tmp_path, glue_dir, launcher):
    tag = uuid.uuid4().hex[:8]
    log = tmp_path / "cli.log"
    code = run_multirun(["-m", *TINY, "task=mrpc,sst2", "+worker=range(2)", *launcher, "search.space.train.epochs=1",
                         "study.n_trials=3", "study.heartbeat_interval=2", f"study.name=${{task.name}}-{tag}",
                         f"study.storage={URL}", f"out_dir={tmp_path}", f"data_dir={glue_dir}"], log, timeout=900)
    try:
        assert code == 0, log.read_text()[-5000:]
        for task in ("mrpc", "sst2"):
            trials = optuna.load_study(study_name=f"{task}-{tag}", storage=URL).trials
            states = [t.state for t in trials]
            assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 3, states
            assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
            # not the reference
            sampled = [tuple(t.params.items()) for t in trials if t.params.get("optimizer.lr") != 5e-5]
            assert len(set(sampled)) == len(sampled), sampled  # the two workers proposed apart
        # Four jobs, each a worker that ran: its own Hydra log with trials run, waited for, or found done.
        logs = sorted(Path(tmp_path, "hydra").glob("*/*/sweeper.log"))
        assert len(logs) == 4, logs
        overrides = sorted(Path(p.parent, ".hydra", "overrides.yaml").read_text() for p in logs)
        assert sorted(o.count("+worker=0") for o in overrides) == [0, 0, 1, 1], overrides
    finally:
        for task in ("mrpc", "sst2"):
            try:
                optuna.delete_study(study_name=f"{task}-{tag}", storage=URL)
            except KeyError:
                pass
