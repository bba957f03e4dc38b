"""study.max_retries counts the retries a trial's own deaths caused, not the machine's stops: real SQLite studies
through the storage the CLI opens, trials failed as a stop signal, a full disk, a killed worker and a worker that
gave up on its storage leave them."""
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.study import faults
from sweeper.study.storage import open_storage
from sweeper.train import checkpoints

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")

def study_with(tmp_path, max_retries: int):
    storage = open_storage(SimpleNamespace(storage=f"sqlite:///{tmp_path}/s.db", max_retries=max_retries,
                                           heartbeat_interval=10, grace_period=30, storage_patience=300))
    study = optuna.create_study(storage=storage, study_name="r", direction="maximize")
    study.enqueue_trial({"lr": 0.1})
    return study


def fail(study, attrs: dict) -> None:
    """Start the next trial (the queued retry first) and fail it with `attrs`, then run the retry callback, as
    run.settle_interrupted (a stop) and optuna.storages.fail_stale_trials (a dead worker) do."""
    trial = study.ask()
    trial.suggest_float("lr", 0.01, 1.0)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, state=TrialState.FAIL)
    study._storage.get_heartbeat_stale_trial_callback()(study, study.trials[trial.number])


def waiting(study) -> list:
    return [t for t in study.trials if t.state == TrialState.WAITING]


def test_the_machines_stops_use_up_no_retries_and_a_trial_that_kills_its_worker_stops_being_retried(tmp_path):
    study = study_with(tmp_path, max_retries=1)
    stop = {faults.CAUSE: faults.MACHINE, faults.STOPPED: True}  # a signal, a full disk (settle_interrupted)
    for _ in range(4):  # preempted four times: retried every time
        fail(study, stop)
        assert len(waiting(study)) == 1
    fail(study, {})  # then its worker dies unexplained (killed): the first retry that counts
    assert len(waiting(study)) == 1
    fail(study, {faults.CAUSE: faults.MACHINE})  # a lost rank: may be the trial's doing, so it counts too
    assert waiting(study) == []  # two counted deaths > max_retries=1: not queued again
    history = study.trials[-1].system_attrs["retry_history"]
    assert history == [0, 1, 2, 3, 4] and study.trials[-1].system_attrs["machine_retries"] == 4
    assert {t.params["lr"] for t in study.trials} == {0.1}


def test_a_worker_that_gave_up_on_its_storage_leaves_a_note_that_spares_the_retry(tmp_path):
    study = study_with(tmp_path, max_retries=0)
    root = tmp_path / "checkpoints"
    study._storage.get_heartbeat_stale_trial_callback().stopped = (
        lambda n: checkpoints.stopped(checkpoints.trial_dir(root, n)))
    checkpoints.note_stopped(checkpoints.trial_dir(root, 0), "study.storage=...: unreachable for 300 s")
    fail(study, {})  # failed by its stale heartbeat, as the rerun finds it
    assert len(waiting(study)) == 1
    fail(study, {})  # the retry itself killed: no note now, and max_retries=0
    assert waiting(study) == []
