"""Experiment trackers (train.report_to): one run per trial in TensorBoard, MLflow, W&B, Trackio or another
tracker Accelerate knows, holding the trial's parameters, training loss, every evaluation and its final state."""
from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from sweeper.errors import ConfigError

log = logging.getLogger(__name__)
# pip's name for a tracker where it differs from Accelerate's.
PIP = {"comet_ml": "comet-ml"}
# MLflow's run status for a trial's final state. Optuna's states are the truth; a tracker shows them.
MLFLOW_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def known_trackers() -> list[str]:
    from accelerate.utils import LoggerType

    return [t.value for t in LoggerType if t is not LoggerType.ALL]


def check_trackers(names) -> None:
    """Every name is a tracker Accelerate knows and whose package is installed here."""
    if not names:
        return
    from accelerate.tracking import get_available_trackers

    known, shown = known_trackers(), "[" + ", ".join(names) + "]"
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"train.report_to={shown}: unknown tracker {', '.join(unknown)}; allowed: {', '.join(known)}")
    available = [str(t.value) for t in get_available_trackers()]
    missing = [n for n in names if n not in available]
    if missing:
        pip = " ".join(PIP.get(n, n) for n in missing)
        raise ConfigError(f"train.report_to={shown}: {', '.join(missing)} not installed; allowed: pip install {pip}, "
                          f"or the installed: {', '.join(available) or 'none'}")


def mlflow_store(out_dir) -> Path | None:
    """Point MLflow at MLFLOW_TRACKING_URI where set (returns None), else at a SQLite store under out_dir
    (returns its directory). MLflow 3's own default is ./mlflow.db; its file store is deprecated."""
    import mlflow

    if mlflow.active_run() is not None:  # a run this process could not finish (its tracker failed mid-trial)
        mlflow.end_run(status="FAILED")
    if os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        return None
    store = Path(out_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it: the next study's out_dir would not count
    return store


@contextmanager
def store_lock(directory: Path | None):
    """Workers starting together on a new out_dir: one creates the MLflow database (its tables) and the
    study's experiment, the others then find them (without the lock, all but one of them failed)."""
    if directory is None:
        yield
        return
    with open(directory / "mlflow.db.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or when its holder dies
        yield


class TrialRun:
    """One trial's run in each tracker of `names`. Built by the process that talks to the study (rank 0):
    the others never log. A tracker that fails is dropped with a warning, never the trial."""

    def __init__(self, names, out_dir, study: str, trial: int, params: dict):
        self.study, self.trial, self.name = study, trial, f"{study}-trial-{trial}"
        self.out_dir, self.step, self.trackers = Path(out_dir), 0, []
        for name in dict.fromkeys(names):  # once each, in order
            tracker = self.attempt(name, lambda n=name: self.start(n, params))
            if tracker is not None:
                self.trackers.append(tracker)
        if self.trackers:
            log.info("trial %d: run %s in %s", trial, self.name, ", ".join(t.name for t in self.trackers))

    def start(self, name: str, params: dict):
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        cls, study, run = LOGGER_TYPE_TO_CLASS[name], self.study, self.name
        study_dir, store = self.out_dir / study, None
        if name == "tensorboard":
            tracker = cls(run, str(study_dir / "runs"))  # writes <out_dir>/<study>/runs/<run>
        elif name == "mlflow":
            # Experiment = study; its artifacts beside our store, not in the working directory (MLflow's default).
            store = mlflow_store(self.out_dir)
            tracker = cls(experiment_name=study, logging_dir=store and (store / "mlartifacts").as_uri(),
                          tags={"study": study}, run_name=run)
        elif name == "wandb":
            tracker = cls(study, name=run, group=study, tags=[study])
        elif name in ("trackio", "swanlab"):
            tracker = cls(study, **({"name": run, "group": study} if name == "trackio" else
                                    {"experiment_name": run, "group": study}))
        elif name == "aim":
            tracker = cls(run, str(study_dir / "aim"), experiment=study)
        elif name == "clearml":
            tracker = cls(run, project_name=study, task_name=run, reuse_last_task_id=False)
        elif name == "dvclive":
            tracker = cls(run, dir=str(study_dir / "dvclive" / run))
        else:  # comet_ml: the project is the study
            tracker = cls(study)
        with store_lock(store):
            tracker.start()
        if name == "tensorboard":
            # Accelerate's store_init_configuration puts hparams in a timestamped sub-run; the run itself
            # should be the HParams session, grouped by study, so a study's trials compare in one table.
            tracker.writer.file_writer.add_summary(hparams_summary(params, group=study))
        else:
            tracker.store_init_configuration(params)
        if name == "mlflow":
            import mlflow

            mlflow.set_tag("trial", str(self.trial))
        return tracker

    def attempt(self, what: str, call):
        try:
            return call()
        except Exception as e:
            log.warning("trial %d: tracker %s failed (%s: %s); the trial goes on without it",
                        self.trial, what, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return None

    def log(self, values: dict, step: int) -> None:
        """Log `values` at `step` (training samples seen) in every tracker."""
        self.step = step
        for tracker in list(self.trackers):
            if self.attempt(tracker.name, lambda t=tracker: t.log(values, step=step) or True) is None:
                self.trackers.remove(tracker)

    def finish(self, state: str) -> None:
        """End the run with the trial's final state: complete, pruned or failed."""
        for tracker in self.trackers:
            self.attempt(tracker.name, lambda t=tracker: self.end(t, state))
        self.trackers = []

    def end(self, tracker, state: str) -> None:
        if tracker.name == "mlflow":
            import mlflow

            mlflow.set_tag("state", state)
            mlflow.end_run(status=MLFLOW_STATUS[state])
            return
        if tracker.name == "tensorboard":
            tracker.log({"state": state}, step=self.step)  # a text summary: TensorBoard has no run state
            tracker.writer.file_writer.add_summary(hparams_summary(state=state))
        elif tracker.name == "wandb":
            tracker.run.summary["state"] = state
            tracker.run.finish(exit_code=int(state == "failed"))
            return
        tracker.finish()


def hparams_summary(params: dict | None = None, group: str = "", state: str | None = None):
    """TensorBoard's HParams session start (the trial's parameters, its study as the group) or, with
    `state`, its end: TensorBoard has no "pruned" status, so a pruned trial ends as a success (the run's
    `state` text says which)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    if state is None:
        info = plugin_data_pb2.SessionStartInfo(group_name=group)
        for key, value in (params or {}).items():
            if isinstance(value, str):
                info.hparams[key].string_value = value
            elif isinstance(value, bool):
                info.hparams[key].bool_value = value
            else:
                info.hparams[key].number_value = value
        tag, data = metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info)
    else:
        status = api_pb2.STATUS_FAILURE if state == "failed" else api_pb2.STATUS_SUCCESS
        tag = metadata.SESSION_END_INFO_TAG
        data = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(status=status))
    data.version = metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


@contextmanager
def trial_run(names, out_dir, study: str, trial: int, params: dict, pruned: type[BaseException]):
    """A TrialRun whose final state follows how the block ends: complete, pruned (it raised `pruned`,
    the study's own exception) or failed; yields its `log`, or None when `names` is empty."""
    if not names:
        yield None
        return
    run = TrialRun(names, out_dir, study, trial, params)
    try:
        yield run.log
    except pruned:
        run.finish("pruned")
        raise
    except BaseException:
        run.finish("failed")
        raise
    run.finish("complete")
