"""train.report_to: one tracker run per trial, read back with the trackers' own readers (TensorBoard's event
reader, MLflow's client on a local SQLite store), from real studies of the tiny model."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import ROOT, TINY, cli, load

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
# 64 training pairs in batches of 16 with a loss read-back every 2 steps: read-backs at 32 and 64 samples
# seen per epoch; evaluations at the end of each epoch (64, 128).
SMALL = [*TINY, "search.space.train.epochs=2", "search.space.train.batch_size=16", "train.log_every=2",
         "search.enqueue_portfolio=false", "study.accept=[pruner]", "train.evals_per_epoch=1"]
PRUNE_ALL = ["pruner=none", "pruner._target_=optuna.pruners.ThresholdPruner", "+pruner.lower=2.0"]  # f1 < 2: always


def complete_then_pruned(compose_cfg, report_to: str):
    """Trial 0 runs its 2 epochs; trial 1, under a pruner that prunes every trial, stops after its first."""
    from sweeper.job import run_study

    run_study(compose_cfg(*SMALL, f"train.report_to={report_to}", "study.n_trials=1", "pruner=none"))
    cfg = compose_cfg(*SMALL, f"train.report_to={report_to}", "study.n_trials=2", *PRUNE_ALL)
    run_study(cfg)
    trials = load(cfg.study.storage, cfg.study.name).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    return cfg, trials


def events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams(acc) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    return {tag: plugin_data_pb2.HParamsPluginData.FromString(content)
            for tag, content in acc.PluginTagToContent("hparams").items()}


def test_tensorboard_holds_a_run_per_trial(compose_cfg):
    from sweeper.study.definition import verify
    from sweeper.study.storage import open_storage

    cfg, trials = complete_then_pruned(compose_cfg, "[tensorboard]")
    runs = Path(cfg.out_dir) / cfg.study.name / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["mrpc-tiny-trial-0", "mrpc-tiny-trial-1"]
    for trial, evaluations, state in zip(trials, ([64, 128], [64]), ("complete", "pruned"), strict=True):
        acc = events(runs / f"mrpc-tiny-trial-{trial.number}")
        loss_steps = [32, 64, 96, 128][:2 * len(evaluations)]
        assert [e.step for e in acc.Scalars("train/loss")] == loss_steps
        assert [e.step for e in acc.Scalars("f1")] == evaluations  # every evaluation, at samples seen
        assert [e.value for e in acc.Scalars("f1")] == pytest.approx(
            [trial.intermediate_values[epoch] for epoch in range(len(evaluations))])
        assert acc.Scalars("accuracy")[-1].value == pytest.approx(trial.user_attrs["accuracy"])
        info = hparams(acc)
        start = info["_hparams_/session_start_info"].session_start_info
        assert start.group_name == cfg.study.name
        assert {k: v.number_value for k, v in start.hparams.items()} == pytest.approx(trial.user_attrs["config"])
        assert info["_hparams_/session_end_info"].session_end_info.status == 1  # STATUS_SUCCESS
        assert [t.tensor_proto.string_val for t in acc.Tensors("state/text_summary")] == [[state.encode()]]
    # Where trials are logged is not part of what they measure: a resume may log elsewhere.
    verify(open_storage(cfg.study), compose_cfg(*SMALL, "train.report_to=[mlflow]", *PRUNE_ALL))


def test_mlflow_holds_a_run_per_trial(compose_cfg):
    from mlflow.tracking import MlflowClient

    cfg, trials = complete_then_pruned(compose_cfg, "[mlflow]")
    client = MlflowClient(tracking_uri=f"sqlite:///{cfg.out_dir}/mlflow.db")  # the default store, under out_dir
    experiment = client.get_experiment_by_name(cfg.study.name)
    assert experiment.artifact_location == (Path(cfg.out_dir) / "mlartifacts").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["mrpc-tiny-trial-0", "mrpc-tiny-trial-1"]
    for trial, evaluations, (status, state) in zip(trials, ([64, 128], [64]), (("FINISHED", "complete"),
                                                                                 ("KILLED", "pruned")), strict=True):
        run = runs[f"mrpc-tiny-trial-{trial.number}"]
        assert (run.info.status, run.data.tags["state"]) == (status, state)
        assert (run.data.tags["study"], run.data.tags["trial"]) == (cfg.study.name, str(trial.number))
        assert {k: float(v) for k, v in run.data.params.items()} == pytest.approx(trial.user_attrs["config"])
        f1 = client.get_metric_history(run.info.run_id, "f1")
        assert sorted(m.step for m in f1) == evaluations
        assert [m.value for m in sorted(f1, key=lambda m: m.step)] == pytest.approx(
            [trial.intermediate_values[epoch] for epoch in range(len(evaluations))])
        loss = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in loss) == [32, 64, 96, 128][:2 * len(evaluations)]
    assert not (ROOT / "mlruns").exists() and not (ROOT / "mlflow.db").exists()  # nothing in the working directory


def test_a_failed_trial_ends_its_runs_failed(tmp_path):
    from mlflow.tracking import MlflowClient

    from sweeper.train.tracking import trial_run

    class Pruned(Exception):
        pass

    with pytest.raises(RuntimeError), trial_run(["tensorboard", "mlflow"], tmp_path, "s", 7, {"lr": 0.1},
                                                pruned=Pruned) as on_log:
        on_log({"train/loss": 0.5}, 8)
        raise RuntimeError("out of memory")
    acc = events(tmp_path / "s" / "runs" / "s-trial-7")
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(8, 0.5)]
    assert hparams(acc)["_hparams_/session_end_info"].session_end_info.status == 2  # STATUS_FAILURE
    assert [t.tensor_proto.string_val for t in acc.Tensors("state/text_summary")] == [[b"failed"]]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert (run.info.run_name, run.info.status, run.data.tags["state"]) == ("s-trial-7", "FAILED", "failed")


def test_a_run_left_active_does_not_keep_the_next_trial_from_mlflow(tmp_path, monkeypatch):
    import mlflow

    from sweeper.train.tracking import TrialRun

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # set_tracking_uri exported it
    left = mlflow.start_run(run_name="left")  # as a tracker that failed mid-trial leaves it
    run = TrialRun(["mlflow"], tmp_path, "s", 1, {"lr": 0.1})
    assert [t.name for t in run.trackers] == ["mlflow"]
    run.finish("complete")
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(left.info.run_id).info.status == "FAILED"


def test_no_tracker_no_run(tmp_path):
    from sweeper.train.tracking import trial_run

    with trial_run([], tmp_path, "s", 0, {}, pruned=Exception) as on_log:
        assert on_log is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value,message", [
    ("[foo]", "error: train.report_to=[foo]: unknown tracker foo; allowed: aim, tensorboard, wandb, trackio, "),
    ("[tensorboard,mlfow]", "error: train.report_to=[tensorboard, mlfow]: unknown tracker mlfow; allowed: "),
])
def test_an_unknown_tracker_is_refused_before_training(tmp_path, glue_dir, value, message):
    result = cli(*TINY, f"train.report_to={value}", f"out_dir={tmp_path}", f"data_dir={glue_dir}",
                 f"study.storage=sqlite:///{tmp_path}/s.db")
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no storage, no run


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_not_installed_names_its_package(compose_cfg):
    from sweeper.errors import ConfigError
    from sweeper.train.tracking import check_trackers

    with pytest.raises(ConfigError, match=r"^train.report_to=\[tensorboard, wandb\]: wandb not installed; "
                                          r"allowed: pip install wandb, or the installed: .*tensorboard"):
        check_trackers(list(compose_cfg("train.report_to=[tensorboard,wandb]").train.report_to))


@pytest.mark.slow
def test_the_cli_logs_to_tensorboard_and_mlflow(tmp_path, glue_dir):
    from mlflow.tracking import MlflowClient

    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"  # MLFLOW_TRACKING_URI, where set, wins over out_dir
    result = cli(*SMALL, "search.space.train.epochs=1", "study.n_trials=2",
                 "train.report_to=[tensorboard,mlflow]", f"out_dir={tmp_path}", f"data_dir={glue_dir}",
                 f"study.storage=sqlite:///{tmp_path}/s.db", env={"MLFLOW_TRACKING_URI": elsewhere})
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load(f"sqlite:///{tmp_path}/s.db", "mrpc-tiny").trials
    names = [f"mrpc-tiny-trial-{t.number}" for t in trials]
    assert sorted(p.name for p in (tmp_path / "mrpc-tiny" / "runs").iterdir()) == names
    for name, trial in zip(names, trials, strict=True):
        assert events(tmp_path / "mrpc-tiny" / "runs" / name).Scalars("f1")[-1].value == pytest.approx(trial.value)
    client = MlflowClient(tracking_uri=elsewhere)
    runs = client.search_runs([client.get_experiment_by_name("mrpc-tiny").experiment_id])
    assert sorted((r.info.run_name, r.info.status, r.data.metrics["f1"]) for r in runs) == [
        (n, "FINISHED", pytest.approx(t.value)) for n, t in zip(names, trials, strict=True)]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_only_rank_0_of_a_data_parallel_trial_logs(tmp_path, glue_dir):
    """Both ranks train the trial; one run, written once."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "sweeper", *SMALL, "search.space.train.epochs=1", "study.n_trials=1",
                             "train.report_to=[tensorboard]", f"out_dir={tmp_path}", f"data_dir={glue_dir}",
                             f"study.storage=sqlite:///{tmp_path}/s.db"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "mrpc-tiny" / "runs").iterdir()
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    acc = events(run)
    assert [e.step for e in acc.Scalars("f1")] == [64]  # the training set once, not once per rank
    assert [e.step for e in acc.Scalars("train/loss")] == [32, 64]  # 2 ranks x 8 samples x 2 steps per read-back


# One worker's first trial run, started on a signal so that all of them create the MLflow store together.
START_RUN = """
import sys, time
from pathlib import Path
from sweeper.train.tracking import TrialRun

out, trial, ready, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
ready.touch()
while not go.exists():
    time.sleep(0.001)
run = TrialRun(["mlflow"], out, "s", trial, {"lr": 0.1})
run.log({"f1": 0.5}, 64)
run.finish("complete")
"""


@pytest.mark.slow
def test_workers_starting_together_on_a_new_out_dir_all_log_to_mlflow(tmp_path):
    import time

    from mlflow.tracking import MlflowClient

    go, ready = tmp_path / "go", [tmp_path / f"ready-{i}" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", START_RUN, str(tmp_path / "out"), str(i), str(r), str(go)],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True) for i, r in enumerate(ready)]
    deadline = time.time() + 120
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert not [e for e in errors if "failed" in e], errors  # a tracker that fails is dropped with a warning
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/out/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    assert sorted((r.info.run_name, r.info.status, r.data.metrics["f1"]) for r in runs) == [
        (f"s-trial-{i}", "FINISHED", 0.5) for i in range(3)]
