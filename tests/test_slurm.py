"""Preemption on a real scheduler: a one-node SLURM cluster (Debian's slurm-wlm and munge on loopback; .ci/run and
`make test` start it with ../shared/tools/slurm_local.sh), a sweep launched through Hydra's submitit SLURM launcher
(conf/hydra/launcher/slurm.yaml), its worker requeued mid-epoch as a preemption does (`scontrol requeue`: SIGTERM,
then the job back in the queue). The study ends with exactly n_trials finished, the preempted trial resumed within
its epoch."""
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState
from test_faults import SLOW, wait_for

from conftest import ROOT

URL = os.environ.get("SWEEPER_TEST_POSTGRES")


def partition() -> str | None:
    """The partition of a SLURM cluster that answers here (SWEEPER_TEST_SLURM, else sinfo's default)."""
    if os.environ.get("SWEEPER_TEST_SLURM"):
        return os.environ["SWEEPER_TEST_SLURM"]
    if shutil.which("sinfo") is None:
        return None
    out = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True, timeout=30)
    up = [p.rstrip("*") for p, state in (line.split() for line in out.stdout.splitlines()) if state == "up"]
    return up[0] if out.returncode == 0 and up else None


PARTITION = partition()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not URL, reason="no PostgreSQL server (a SLURM job's storage): set "
                                 "SWEEPER_TEST_POSTGRES (make test starts one with .ci/postgres)"),
              pytest.mark.skipif(PARTITION is None, reason="no SLURM cluster answers sinfo: make test starts a "
                                 "one-node one with ../shared/tools/slurm_local.sh (Debian's slurm-wlm and munge, as "
                                 "root); it could not here, see /tmp/sweeper-slurm.log")]


def squeue(name: str) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    return [tuple(line.split()) for line in out.stdout.splitlines()]


def preempt(job: str, how: str) -> None:
    """`requeue`: what a preemption with PreemptMode=REQUEUE does, SIGTERM to the job's steps, then the job back in
    the queue. `usr2`: the signal SLURM's --signal sends ahead of a time limit (submitit asks for SIGUSR2), after
    which submitit requeues the job itself. SLURM holds a requeued job ~2 minutes (BeginTime); the test lets it
    start again at once."""
    command = ["scontrol", "requeue", job] if how == "requeue" else ["scancel", "--signal=USR2", job]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    deadline = time.time() + 120
    while time.time() < deadline:
        if any(state == "PENDING" for _, state in squeue_job(job)):
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True, timeout=30)
            return
        time.sleep(0.5)
    pytest.fail(f"job {job} was not requeued after {how}: {squeue_job(job)}")


def squeue_job(job: str) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    return [tuple(line.split()) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("how, signal_name", [("requeue", "SIGTERM"), ("usr2", "SIGUSR2")])
def test_a_worker_preempted_mid_epoch_is_requeued_and_its_trial_resumes_within_the_epoch(tmp_path, glue_dir, how,
                                                                                          signal_name):
    name = f"slurm-{uuid.uuid4().hex[:8]}"
    args = ["-m", *SLOW, "study.n_trials=2", f"study.name={name}", f"study.storage={URL}", f"out_dir={tmp_path}",
            f"data_dir={glue_dir}", "hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}",
            "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4",
            "hydra.launcher.timeout_min=30", f"hydra.launcher.name={name}"]
    log = tmp_path / "cli.log"
    # One engine for all the polling: optuna.load_study(storage=URL) makes a new one (and a pooled connection) a
    # call, and polling the shared server every 0.2 s through a queue wait used up its connection slots.
    storage = optuna.storages.RDBStorage(URL)
    with open(log, "w") as out:
        cli = subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        # The worker trains trial 0's second epoch: its first is reported.
        wait_for(lambda: 0 in optuna.load_study(study_name=name, storage=storage).trials[0].intermediate_values,
                 timeout=600)
        time.sleep(1)
        [(job, state)] = squeue(name)
        assert state == "RUNNING"
        preempt(job, how)
        assert cli.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
        for job, _ in squeue(name):
            subprocess.run(["scancel", job], timeout=30)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    try:
        states = [t.state for t in trials]
        assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 2, states
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
        assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_cause"] == "machine"
        retry = next(t for t in trials if t.system_attrs.get("retry_history") == [0])
        assert retry.state != TrialState.FAIL and retry.params == trials[0].params
        assert retry.user_attrs["resumed_at_epoch"] == 1 and retry.user_attrs["resumed_at_batch"] > 0  # mid-epoch
        assert retry.system_attrs["machine_retries"] == 1
        jobs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.out"))
        assert f"{signal_name}: the trial stops after its current step, with a checkpoint" in jobs, jobs[-3000:]
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        storage.engine.dispose()
