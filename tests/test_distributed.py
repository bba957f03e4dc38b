"""Data-parallel trials: `torchrun --nproc_per_node 2 -m sweeper ...` on CPU (gloo), the tiny model.
Rank 0 talks to the study; both ranks train each trial on half of every global batch."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import ROOT, TINY, cli, load

pytestmark = pytest.mark.slow
SWEEP = [*TINY, "search.space.train.epochs=2", "search.space.train.batch_size=choice(8,16)", "pruner=none",
         "study.n_trials=2"]


def torchrun(*args: str, log: Path) -> subprocess.Popen:
    """torchrun and its ranks in a session of their own (so that `output` can kill all of them), writing
    to a file (a pipe nobody reads while the test waits for a checkpoint would fill and stall the ranks)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                 "2", "-m", "sweeper", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def output(run: subprocess.Popen, log: Path, timeout: float) -> str:
    """The run's output once it exits; past `timeout`, its ranks are killed and the test fails."""
    try:
        run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"torchrun still running after {timeout} s: {log.read_text()[-3000:]}")
    return log.read_text()


def rank_pid(launcher: int, rank: int) -> int:
    """The process torchrun started as `rank`."""
    children = subprocess.run(["pgrep", "-P", str(launcher)], capture_output=True, text=True).stdout.split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no rank {rank} among {children}")


def test_a_two_process_sweep_matches_a_one_process_sweep(tmp_path, glue_dir):
    common = [*SWEEP, f"out_dir={tmp_path}", f"data_dir={glue_dir}"]
    one = cli(*common, f"study.storage=sqlite:///{tmp_path}/one.db")
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(*common, f"study.storage=sqlite:///{tmp_path}/two.db", log=tmp_path / "two.log")
    log = output(two, tmp_path / "two.log", timeout=900)
    assert two.returncode == 0, log[-4000:]
    trials = {n: load(f"sqlite:///{tmp_path}/{n}.db", "mrpc-tiny").trials for n in ("one", "two")}
    for n, ts in trials.items():
        assert [t.state for t in ts] == [TrialState.COMPLETE] * 2, n
        assert [len(t.intermediate_values) for t in ts] == [6, 6], n  # three reports per epoch, from rank 0 only
        assert [t.user_attrs["eval_samples"] for t in ts] == [32, 32], n  # the validation set once, not twice
    assert [t.params for t in trials["one"]] == [t.params for t in trials["two"]]  # same seed, same proposals
    assert log.count("] - trial 0: optimizer.lr=") == 1  # rank 1 follows silently: rank 0 alone asks the study


def test_a_killed_two_process_trial_resumes_from_its_checkpoint(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    command = [*SWEEP, "study.n_trials=1", "search.space.train.batch_size=8", "task.max_train_samples=1500",
               "search.space.train.epochs=3", "study.heartbeat_interval=1", "study.grace_period=2",
               "train.evals_per_epoch=1",  # its checks read epoch steps
               f"study.storage={storage}", f"out_dir={tmp_path}", f"data_dir={glue_dir}"]
    run = torchrun(*command, log=tmp_path / "killed.log")
    checkpoint = tmp_path / "mrpc-tiny" / "checkpoints" / "trial-0"
    deadline = time.time() + 600
    while not list(checkpoint.glob("epoch-*/progress.json")) and time.time() < deadline:
        time.sleep(0.5)
    if not list(checkpoint.glob("epoch-*/progress.json")):
        os.killpg(run.pid, signal.SIGKILL)
        pytest.fail(f"no checkpoint before the deadline: {(tmp_path / 'killed.log').read_text()[-3000:]}")
    os.kill(rank_pid(run.pid, 1), signal.SIGKILL)
    output(run, tmp_path / "killed.log", timeout=180)
    assert run.returncode != 0
    states = [t.state for t in load(storage, "mrpc-tiny").trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING in states, states

    again = torchrun(*command, log=tmp_path / "again.log")
    log = output(again, tmp_path / "again.log", timeout=900)
    assert again.returncode == 0, log[-4000:]
    trials = load(storage, "mrpc-tiny").trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 1 and done[0].user_attrs["resumed_at_epoch"] >= 1, [t.user_attrs for t in trials]
    assert len(done[0].intermediate_values) == 3


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_and_the_trial_resumes_there(tmp_path, glue_dir):
    """SIGTERM to rank 1 alone: the ranks agree after each step, so both save the same batch's state (each its RNG)
    and stop; rank 0 queues the trial, and the rerun resumes both ranks at the next batch."""
    storage = f"sqlite:///{tmp_path}/s.db"
    command = [*SWEEP, "study.n_trials=1", "search.space.train.batch_size=8", "task.max_train_samples=1500",
               "search.space.train.epochs=2", "train.evals_per_epoch=1",
               f"study.storage={storage}", f"out_dir={tmp_path}", f"data_dir={glue_dir}"]
    run = torchrun(*command, log=tmp_path / "stopped.log")
    checkpoint = tmp_path / "mrpc-tiny" / "checkpoints" / "trial-0"
    deadline = time.time() + 600
    while not list(checkpoint.glob("epoch-1/progress.json")) and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    os.kill(rank_pid(run.pid, 1), signal.SIGTERM)
    log = output(run, tmp_path / "stopped.log", timeout=180)
    saved = list(checkpoint.glob("epoch-1-step-*"))
    assert len(saved) == 1, log[-3000:]
    assert sorted(p.name for p in saved[0].glob("random_states_*")) == ["random_states_0.pkl", "random_states_1.pkl"]
    step = int(saved[0].name.rpartition("-")[2])
    # Both ranks stopped there: each says so (rank 1 got the signal, rank 0 the agreement).
    assert log.count(f"stopped after batch {step} of epoch 1, its state saved; resume with") == 2, log[-3000:]
    assert [t.state for t in load(storage, "mrpc-tiny").trials] == [TrialState.FAIL, TrialState.WAITING]

    again = torchrun(*command, log=tmp_path / "again.log")
    log = output(again, tmp_path / "again.log", timeout=900)
    assert again.returncode == 0, log[-4000:]
    retry = load(storage, "mrpc-tiny").trials[1]
    assert retry.state == TrialState.COMPLETE
    assert (retry.user_attrs["resumed_at_epoch"], retry.user_attrs["resumed_at_batch"]) == (1, step)
    assert log.count(f"batch {step} of epoch 1") == 2, log[-3000:]  # both ranks resumed there
