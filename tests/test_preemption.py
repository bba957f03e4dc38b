"""Preemption loses minutes, not epochs: the real CLI told to stop mid-epoch (SIGTERM, SIGUSR1) checkpoints within
the epoch, queues its trial as the machine's fault, and the rerun resumes at the next batch with the result of a
run never interrupted; checkpoints on the clock leave results alone."""
import signal

import pytest
from optuna.trial import TrialState
from test_faults import SLOW, wait_for

from conftest import cli, cli_popen, load

pytestmark = pytest.mark.slow


def command(tmp_path, glue_dir, db: str, *extra: str) -> list[str]:
    return [*SLOW, "study.n_trials=1", f"study.storage=sqlite:///{tmp_path}/{db}.db", f"out_dir={tmp_path}/{db}",
            f"data_dir={glue_dir}", *extra]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_trial_told_to_stop_mid_epoch_resumes_at_its_next_batch_with_the_same_result(tmp_path, glue_dir, sig):
    # The run never stopped, with a checkpoint on the clock every ~0.5 s (many within each epoch) on the way.
    straight = cli(*command(tmp_path, glue_dir, "straight", "train.checkpoint_minutes=0.008"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "checkpoint within epoch 0 after batch" in straight.stdout
    reference = load(f"sqlite:///{tmp_path}/straight.db", "mrpc-tiny").trials[0]

    cmd = command(tmp_path, glue_dir, "stopped")
    storage = f"sqlite:///{tmp_path}/stopped.db"
    proc = cli_popen(*cmd)
    wait_for(lambda: 0 in load(storage, "mrpc-tiny").trials[0].intermediate_values)  # in epoch 1 now
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out[-3000:]
    name = signal.Signals(sig).name
    assert f"{name}: the trial stops after its current step, with a checkpoint" in out
    assert f"{name} received; stopped after batch " in out and "; resume with: python -m sweeper " in out, out[-2000:]
    saved = list((tmp_path / "stopped" / "mrpc-tiny" / "checkpoints" / "trial-0").glob("epoch-1-step-*"))
    assert len(saved) == 1, out[-2000:]
    step = int(saved[0].name.rpartition("-")[2])
    trials = load(storage, "mrpc-tiny").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs["fail_cause"] == "machine"

    again = cli(*cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"after epoch 0, batch {step} of epoch 1" in again.stdout, again.stdout[-3000:]
    retry = load(storage, "mrpc-tiny").trials[1]
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["retry_history"] == [0]
    assert (retry.user_attrs["resumed_at_epoch"], retry.user_attrs["resumed_at_batch"]) == (1, step)
    assert retry.intermediate_values == reference.intermediate_values  # every epoch's report, to the last bit
    assert retry.value == reference.value and retry.user_attrs["loss"] == reference.user_attrs["loss"]
