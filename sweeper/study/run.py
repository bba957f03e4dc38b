"""One Optuna study per job: create or load it, then run trials until it holds study.n_trials
finished (complete + pruned) ones or its budget is spent. Knows trials and storage, nothing of tensors."""
from __future__ import annotations

import datetime
import logging
import re
import shlex
import signal
import sys
import time
import warnings
import zlib
from pathlib import Path

import optuna
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweeper.errors import ConfigError
from sweeper.redact import mask
from sweeper.scale import preemption
from sweeper.search import budget, probes, space
from sweeper.study import faults
from sweeper.study.definition import defined_study
from sweeper.study.lock import study_lock
from sweeper.study.patience import unreachable
from sweeper.study.progress import Watch, record_worker
from sweeper.study.storage import open_storage
from sweeper.train import checkpoints, disk
from sweeper.train.metrics import direction, objectives

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class SweepStopped(RuntimeError):
    """Too many trials failed: something is wrong beyond one bad trial."""


class AllTrialsTaken(Exception):
    """The study's remaining trials are running in other workers: nothing to start here now."""


def load_study(storage, cfg) -> optuna.Study:
    """Create the study or load it, refused if cfg defines another one (sweeper/study/definition.py);
    sampler and pruner are rebuilt from the config either way. Each objective's direction follows its
    metric (mse, loss, seconds: minimize)."""
    names = objectives(cfg.task, cfg.study)
    directions = [direction(n) for n in names]
    pruner = instantiate(cfg.pruner)
    if len(names) > 1 and not isinstance(pruner, optuna.pruners.NopPruner):
        log.warning("pruner %s is off: Optuna does not prune multi-objective studies (study.objectives=%s); "
                    "every trial runs all its epochs", type(pruner).__name__, names)
    study = defined_study(storage, cfg, pruner)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise ConfigError(f"study.objectives={names} ({', '.join(directions)}): study {cfg.study.name} was created "
                          f"to {', '.join(stored)}; allowed: the same objectives, or a new study.name")
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)  # optuna-dashboard then says "f1", not "Objective 0"
    with study_lock(storage, cfg.study.name):  # workers starting together on a new study: one portfolio
        n = len(study.get_trials(deepcopy=False))
        if n == 0 and cfg.search.enqueue_portfolio:
            for params in portfolio(cfg)[:cfg.study.n_trials]:  # no queued trial beyond the target
                # (a new study: its parameters are named by config keys)
                study.enqueue_trial(params, skip_if_exists=True)
    study.sampler = instantiate(cfg.sampler, seed=sampler_seed(cfg.seed, cfg.study.name, n, cfg.get("worker", 0)))
    return study


def portfolio(cfg, names: dict | None = None) -> list[dict]:
    """The search's start-up configurations inside its space, in order, once each, as trial parameters (their
    config keys, or `names`' for a study made before): an entry's searched keys must lie in their distributions and
    its other keys equal the space's fixed values or the config's; keys it leaves out are drawn by the sampler."""
    compiled, names, out = space.compile_space(cfg.search), names or {}, []
    for entry in cfg.search.portfolio:
        values = space.flatten(OmegaConf.to_container(entry, resolve=True))
        if not space.contains(compiled, values, cfg):
            log.info("portfolio entry %s is outside the search space: not enqueued", values)
            continue
        params = {names.get(k, k): v for k, v in values.items() if k in space.searched(compiled)}
        if params not in out:
            out.append(params)
    return out


def sampler_seed(seed: int, study_name: str, n_trials: int, worker: int = 0) -> int:
    """Different per study, so the studies of one multirun do not all draw the same start-up proposals,
    per trial count, so a resumed sweep does not replay the proposals of the run it continues, and per
    worker, since workers launched together all load the study at 0 trials and would propose alike."""
    return zlib.crc32(f"{seed}/{study_name}/{n_trials}{f'/w{worker}' if worker else ''}".encode())


def count(trials, states) -> int:
    return sum(t.state in states for t in trials)


def search(cfg) -> tuple[optuna.Study, Path]:
    """Run what the study is missing (its trials, until its target or its budget); returns the study and its
    directory, for the verdict and the summary that end the job (sweeper/job.py)."""
    storage = open_storage(cfg.study)
    study = load_study(storage, cfg)
    study_dir = Path(cfg.out_dir) / cfg.study.name
    finished = count(study.get_trials(deepcopy=False), FINISHED)
    spent = budget_spent(study, cfg)
    if finished >= cfg.study.n_trials:
        log.info("study %s is complete: %d finished trials (study.n_trials=%d); nothing to run",
                 cfg.study.name, finished, cfg.study.n_trials)
    elif spent:
        log.info("study %s: %s; nothing to run (a larger budget resumes it)", cfg.study.name, spent)
    else:
        run_missing(study, cfg, study_dir)
    return study, study_dir


def budget_spent(study: optuna.Study, cfg) -> str | None:
    """Why the study's budget stops it (a line for the log); None while some is left, and while no trial has
    completed: a budget smaller than the bracket of probes (search.probe) would leave a study of stopped probes and
    no result, so trials start until one completes (the best probe continued, or any trial of another search)."""
    if not count(study.get_trials(deepcopy=False), [TrialState.COMPLETE]):
        return None
    return budget.reached(study, cfg.study, study.user_attrs.get("train_size"), verdict_share(cfg))  # describe()


def verdict_share(cfg) -> float:
    """The share of study.budget_* kept for the verdict's runs (none without a verdict)."""
    return cfg.verdict.share if cfg.verdict.top else 0.0


def run_missing(study: optuna.Study, cfg, study_dir: Path) -> None:
    """Train the trials the study lacks. The objective (data, template model) lives in this frame only,
    so nothing that keeps a later frame alive (a logged traceback in the summary) keeps the model."""
    from sweeper.study.objective import Objective  # torch and transformers load only when there is work

    objective = Objective(cfg, study_dir)
    describe(study, cfg, len(objective.data.train), len(objective.data.eval))
    run_trials(study, objective, cfg, study_dir / "checkpoints")


def describe(study: optuna.Study, cfg, train_size: int, eval_size: int) -> None:
    """What the dashboard shows beside the trials: which task, model and data, and how it was run."""
    from hydra.core.hydra_config import HydraConfig

    # The job's own overrides (one job of a multirun); in-process callers (tests) get their own argv.
    command = ("python -m sweeper " + " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized()
               else shlex.join(sys.argv))
    # Every dashboard user reads it: a password, or an interpolation of one, as ***. A multirun's job has its
    # overrides escaped (postgresql\://...): shown as typed.
    command = mask(re.sub(r"\\([\\()\[\]{}:=, $])", r"\1", command))
    # The task and model themselves are in the study's definition (sweeper/study/definition.py).
    attrs = {"train_size": train_size, "eval_size": eval_size,
             "search_space": {k: space.describe(v) for k, v in space.compile_space(cfg.search).items()},
             "command": command, "n_trials": cfg.study.n_trials,  # the target, for mode=status
             "budget_epochs": cfg.study.budget_epochs, "budget_minutes": cfg.study.budget_minutes,
             "best_model": str((Path(cfg.out_dir) / cfg.study.name / "best-model").resolve())}
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)


def run_trials(study: optuna.Study, objective, cfg, checkpoint_root: Path) -> None:
    target = cfg.study.n_trials

    def keep_checkpoints(study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        # A multi-objective study has no one best trial: keep the checkpoints of its Pareto front.
        best = set()
        if count(trials, [TrialState.COMPLETE]):
            multi = len(study.directions) > 1  # best_trials of one objective would be every tie
            best = {t.number for t in study.best_trials} if multi else {study.best_trial.number}
        checkpoints.prune(checkpoint_root, trials, best, cfg.study.keep_checkpoints.value)

    started = datetime.datetime.now()  # the failure limit counts the failures of this run only
    # A trial failed by its stale heartbeat whose worker left a note (it gave up on the storage) was stopped by the
    # machine: its retry uses up none of study.max_retries (sweeper/study/storage.py RetryTrial).
    study._storage.get_heartbeat_stale_trial_callback().stopped = (
        lambda number: checkpoints.stopped(checkpoints.trial_dir(checkpoint_root, number)))
    claim_under_lock(study, target, cfg.search.probe)
    with Watch(study, target, cfg.study.progress.value, cfg.study.progress_every) as watch:
        run_until_done(study, objective, cfg, checkpoint_root, [keep_checkpoints, watch], started)


def run_until_done(study: optuna.Study, objective, cfg, checkpoint_root: Path, callbacks,
                   started: datetime.datetime) -> None:
    """Start trials until the study holds its target; the failure limit counts trials started since `started`."""
    target, waited = cfg.study.n_trials, False
    while True:
        if preemption.requested():  # told to stop while no trial trained (or as one ended): start none
            raise KeyboardInterrupt
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, queued for retry
        if count(study.get_trials(deepcopy=False), FINISHED) >= target:
            return
        spent = budget_spent(study, cfg)
        if spent:  # checked before each trial starts: one that started under budget runs to its end
            log.info("study %s: %s; no more trials start", cfg.study.name, spent)
            return
        # Room for one more checkpoint beside the study's, before a trial starts: a disk still full
        # stops here, without failing (and using up a retry of) a trial.
        disk.require(checkpoint_root, checkpoints.largest(checkpoint_root), "a checkpoint")
        try:
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
        except AllTrialsTaken:
            # Other workers hold the last trials: wait until they finish or their heartbeat goes stale.
            if not waited:
                log.info("waiting for the trials running elsewhere")
            waited = True
            time.sleep(cfg.study.heartbeat_interval)
            continue
        except KeyboardInterrupt:
            settle_interrupted(study, objective.trial)
            raise
        except faults.MachineFault as fault:
            settle_interrupted(study, objective.trial, fault.error)
            raise disk.as_disk_full(fault.error, checkpoint_root)  # noqa: B904 (the error itself, with its cause)
        except BaseException as e:
            if objective.trial is not None and (outage := unreachable(e)) is not None:  # the trial stays RUNNING
                checkpoints.note_stopped(checkpoints.trial_dir(checkpoint_root, objective.trial.number), str(outage))
            raise
        objective.release()
        check_failures(study.get_trials(deepcopy=False), cfg.study, since=started)


def claim_under_lock(study: optuna.Study, target: int, probe=None) -> None:
    """Make study.optimize's `study.ask()` count the study's trials and start one atomically: under
    the study's lock, it starts a trial (a queued one first) only while finished + running trials are
    fewer than `target`, else raises AllTrialsTaken; with search.probe on, it also takes the bracket's
    steps (sweeper/search/probes.py). Everything else optimize does (heartbeat thread, FAIL with the
    exception, PRUNED, callbacks) stays Optuna's."""
    # The unwrapped ask, also when run_trials runs again on the same study object (bench/search.py):
    # a wrapper around the wrapper would take the lock twice and wait on itself.
    ask = study.__dict__.setdefault("_unlocked_ask", study.ask)
    backend = getattr(study._storage, "_backend", study._storage)

    def ask_if_missing(*args, **kwargs):
        with study_lock(backend, study.study_name):
            # From the database itself, not Optuna's per-process cache of finished trials.
            trials = backend.get_all_trials(study._study_id, deepcopy=False)
            if count(trials, (*FINISHED, TrialState.RUNNING)) >= target:
                raise AllTrialsTaken
            own = faults.own_failures(trials) if probe is not None else set()
            if probe is not None:
                try:
                    probes.before_ask(study, trials, probe, own)
                except probes.ProbesRunning:  # the bracket's next step waits for the last probes
                    raise AllTrialsTaken from None
            trial = ask(*args, **kwargs)
            if probe is not None:
                probes.after_ask(trial, trials, probe, own)
        record_worker(trial)
        return trial

    study.ask = ask_if_missing


def settle_interrupted(study: optuna.Study, trial, error: BaseException | None = None) -> None:
    """Leave no RUNNING trial behind: fail the trial interrupted (by a signal, or by `error`, a machine
    fault) as the machine's fault and queue a retry with the same parameters, which resumes from its
    last checkpoint."""
    if trial is None:
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, *preemption.SIGNALS)}
    try:
        storage = study._storage
        frozen = storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.RUNNING:
            if error is not None:
                storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"{type(error).__name__}: {error}")
                storage.set_trial_user_attr(trial._trial_id, faults.STOPPED, True)  # a full disk, a storage error
            storage.set_trial_user_attr(trial._trial_id, faults.CAUSE, faults.MACHINE)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            frozen = storage.get_trial(trial._trial_id)
        if frozen.state == TrialState.FAIL:
            storage.get_heartbeat_stale_trial_callback()(study, frozen)
            log.warning("trial %d %s: marked failed and queued to rerun from its last checkpoint",
                        frozen.number, f"stopped by the machine ({error})" if error else "interrupted")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def check_failures(trials, study_cfg, since: datetime.datetime | None = None) -> None:
    """Stop the sweep once the trials' own failures (not the machine's: interrupted, killed, disk full)
    among the trials started since `since` (this run) exceed study.max_failed_fraction of study.n_trials.
    A study stopped here goes on when the same command runs again, once the cause is fixed."""
    failed = faults.counted(trials, since)
    if len(failed) > study_cfg.max_failed_fraction * study_cfg.n_trials:
        reason = failed[-1].user_attrs.get("fail_reason", "see the log")
        raise SweepStopped(
            f"study {study_cfg.name}: {len(failed)} trials failed, more than "
            f"study.max_failed_fraction={study_cfg.max_failed_fraction} of study.n_trials={study_cfg.n_trials}; "
            f"last failure: {reason}; once its cause is fixed, the same command goes on (only its own "
            "failures count)")
