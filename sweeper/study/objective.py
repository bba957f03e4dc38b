"""One Optuna trial: suggest -> dataloaders -> fresh model -> Accelerate loop -> report each epoch."""
from __future__ import annotations

import contextlib
import gc
import logging
import traceback
from pathlib import Path

import numpy as np
import optuna
import torch
from hydra.utils import instantiate
from optuna.trial import TrialState

from sweeper.data.batching import eval_subset, get_dataloaders, get_extra_eval_dataloaders, get_subset_eval_dataloader
from sweeper.data.dataset import load_task
from sweeper.scale import distributed, preemption
from sweeper.search import budget, probes, space, steps
from sweeper.search.pruning import EPOCHS, TRIVIAL, TRIVIAL_WITHIN
from sweeper.study import faults
from sweeper.study.artifacts import attach_best_model
from sweeper.train import checkpoints
from sweeper.train.export import export_if_better
from sweeper.train.loop import Hparams, kept, pad_multiple, resolve_precision, train
from sweeper.train.metrics import direction, improves, objectives, trivial_value
from sweeper.train.model import fresh_model, load_template
from sweeper.train.tracking import trial_run

log = logging.getLogger(__name__)


def hparams(cfg) -> Hparams:
    """A run's configuration (a trial's: the study's config with its values set) as the loop takes it."""
    o, name = cfg.optimizer, objectives(cfg.task, cfg.study)[0]
    return Hparams(lr=float(o.lr), epochs=int(cfg.train.epochs), batch_size=int(cfg.train.batch_size),
                   schedule=str(getattr(o.schedule, "value", o.schedule)), warmup_ratio=float(o.warmup_ratio),
                   layer_decay=float(o.layer_decay), max_grad_norm=o.max_grad_norm,
                   keep_best=name if cfg.train.keep_best else None, maximize=direction(name) == "maximize")


def shown(values: dict) -> str:
    """A trial's values for a log line."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def report_epoch(trial: optuna.Trial, objective: str, epoch: int, metrics: dict, prune: bool = True) -> None:
    """Store the epoch's metrics on the trial, report the objective, and prune if the pruner says so
    (single-objective studies only: Optuna neither takes reports nor prunes in multi-objective ones; never a
    probe, which the bracket judges: `prune` False)."""
    for name, value in metrics.items():
        trial.set_user_attr(name, value)
    if len(trial.study.directions) > 1:
        return
    trial.report(metrics[objective], epoch)
    if prune and trial.should_prune():
        raise optuna.TrialPruned(f"{objective}={metrics[objective]:.4f} at epoch {metrics.get('epoch', epoch)}")


class Objective:
    """The study's objective: data tokenized and weights read once, a fresh model for every trial."""

    def __init__(self, cfg, study_dir: Path):
        self.cfg = cfg
        self.checkpoint_root = study_dir / "checkpoints"
        self.best_model = study_dir / "best-model"
        self.precision = resolve_precision(cfg.train.precision.value)
        self.data = load_task(cfg.task, cfg.model.path, cfg.data_dir, cfg.seed)
        self.template = load_template(cfg.model, cfg.task.num_labels, cfg.seed)
        self.objectives = objectives(cfg.task, cfg.study)
        # For the pruner; a regression has no constant prediction to compare with.
        labels = np.asarray(self.data.eval["labels"])
        self.trivial = None if cfg.task.num_labels == 1 else trivial_value(labels, self.objectives[0])
        # The examples evaluations within an epoch score on (train.eval_subset), and their constant prediction's value.
        self.subset = (eval_subset(len(labels), cfg.train.eval_subset, cfg.seed) if cfg.train.evals_per_epoch > 1
                       else None)
        self.trivial_within = None if self.trivial is None or self.subset is None else trivial_value(
            labels[self.subset], self.objectives[0])
        self.space, self.custom = space.compile_space(cfg.search), space.custom(cfg.search)
        self.trial: optuna.Trial | None = None  # the running trial, for the interrupt handler
        distributed.announce()  # the other ranks may now read the tokenized data and weights from the cache

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        self.trial = trial
        try:
            return self.run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(faults.CAUSE, faults.MACHINE)  # stopped, not wrong: never counted as a failure
            trial.set_user_attr(faults.STOPPED, True)  # nor as one of its retries
            raise
        except Exception as e:
            if distributed.lost_peer(e):
                trial.set_user_attr(faults.CAUSE, faults.MACHINE)  # the rank may have died of the trial: a retry counts
                raise KeyboardInterrupt(f"a rank of this trial died: {e}") from e  # retried like a killed worker
            if faults.cause(e) == faults.MACHINE:
                raise faults.MachineFault(e) from e  # run_trials fails the trial, queues it again, stops
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}")
            trial.set_user_attr(faults.CAUSE, faults.TRIAL)
            # The traceback outlives the trial (Optuna logs it; log handlers may keep it): clear its
            # frames' locals so the model, optimizer and activations are freed now (a GPU OOM).
            traceback.clear_frames(e.__traceback__)
            raise

    def release(self) -> None:
        """After a trial, free what it held. Its model sits in reference cycles (Accelerate's
        prepare() binds a wrapped forward onto the model) that only the garbage collector breaks:
        collect now, not some trials later, then hand the cached device memory back."""
        self.trial = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def run(self, trial: optuna.Trial) -> float | list[float]:
        cfg = self.cfg
        names = space.param_names(trial.study.get_trials(deepcopy=False))  # a study made before: lr, epochs, ...
        values = space.suggest(trial, self.space, cfg, names, self.custom)
        run_cfg = space.apply(cfg, values)
        hp = hparams(run_cfg)
        trial.set_user_attr(EPOCHS, hp.epochs)  # for the pruner, searched or fixed
        trial.set_user_attr(space.CONFIG, values)  # the whole configuration, for best.yaml, retrain, the verdict
        if self.trivial is not None:
            trial.set_user_attr(TRIVIAL, self.trivial)
        if self.trivial_within is not None:
            trial.set_user_attr(TRIVIAL_WITHIN, self.trivial_within)
        k, train_size = cfg.train.evals_per_epoch, len(self.data.train)
        if k > 1:
            trial.set_user_attr(steps.STEP_UNIT, steps.SAMPLES)
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        retried = frozen.system_attrs.get("retry_history", [])
        resume = checkpoints.claim(self.checkpoint_root, trial.number, retried) if retried else None
        progress = checkpoints.read_progress(resume) if resume is not None else {"history": []}
        resumed = progress["history"]
        if retried:  # Optuna's retry copies the predecessor's user attributes: count only this run's compute
            budget.reset(trial)
        if resume is not None:
            self.restore_reports(trial, frozen, resumed)
            # Batches of the next epoch its checkpoint had trained (one saved within an epoch), else 0.
            trial.set_user_attr("resumed_at_batch", progress.get("within", {}).get("step", 0))
        log.info("trial %d: %s%s%s", trial.number, shown(values), f" (retries trial {retried[-1]})" if retried else "",
                 probes.role(trial.user_attrs))
        # Every epoch's metrics, for the export's value; a retry whose predecessor died after its last
        # checkpoint trains no epoch and has only the checkpoint's.
        objective, seen = self.objectives[0], list(resumed)

        probe = trial.user_attrs.get(probes.PROBE)  # judged by the bracket, at its point, not by the pruner

        def then_probe(report):  # the report, then a probe's stop once it trained search.probe.epochs
            def report_and_stop(step: int, metrics: dict) -> None:
                report(trial, objective, step, metrics, prune=probe is None)
                probes.stop(probe, trial, step, metrics[objective], train_size)
            return report_and_stop

        def on_epoch_end(epoch: int, metrics: dict) -> None:
            seen.append(metrics)
            step = steps.epoch_end_step(epoch, k, train_size)
            distributed.decide(then_probe(report_epoch), step, metrics)  # the other ranks prune too

        def on_evaluate(step: int, metrics: dict) -> None:  # within an epoch (train.evals_per_epoch > 1)
            distributed.decide(then_probe(steps.report_within_epoch), step, metrics)

        # Evaluations within an epoch measure the task's metrics: an objective that is none of them (the training
        # loss, seconds, an extra split's metric) is reported at epoch ends only.
        within = on_evaluate if objective in cfg.task.metrics or len(self.objectives) > 1 else None

        # A multi-objective study has a Pareto front, not one best model to export.
        export = ((lambda model: self.export_best(trial, model, kept(seen, hp)[objective]))
                  if len(self.objectives) == 1 else None)
        distributed.share((values, resume, trial.number))  # the other ranks train it too (distributed.follow)
        with trial_run(cfg.train.report_to, cfg.out_dir, cfg.study.name, trial.number, values,
                       pruned=optuna.TrialPruned) as on_log:  # one tracker run per trial (train.report_to)
            history = self.fit(run_cfg, cfg.seed, on_epoch_end, on_train_end=export, on_log=on_log,
                               on_evaluate=within, checkpoint=checkpoints.trial_dir(self.checkpoint_root, trial.number),
                               resume=resume)
        final = kept(history, hp)  # train.keep_best: the best epoch's
        if final is not history[-1]:
            trial.set_user_attr("kept_epoch", final["epoch"])
        results = [final[name] for name in self.objectives]
        return results[0] if len(results) == 1 else results

    def fit(self, run_cfg, seed: int, on_epoch_end, on_train_end=None, checkpoint=None, resume=None, on_log=None,
            on_evaluate=None, data=None):
        """One training run of `run_cfg` (the study's config with a trial's values set, space.apply) on the study's
        data (or `data`: the verdict's) and template: a trial's, or a retrain seed's. train.batch_size is the
        global batch: each of a data-parallel trial's processes takes its share (sweeper/scale/distributed.py).
        `on_evaluate` (evaluations within an epoch, on self.subset) is a trial's: on the study's data only."""
        cfg, data, hp = self.cfg, data or self.data, hparams(run_cfg)
        assert on_evaluate is None or data is self.data, "self.subset indexes the study's evaluation split"
        train_dl, eval_dl = get_dataloaders(
            data, hp.batch_size // distributed.world_size(), cfg.train.eval_batch_size, seed,
            cfg.train.group_by_length, pad_multiple(self.precision))
        extra_eval = get_extra_eval_dataloaders(data, cfg.train.eval_batch_size, cfg.train.group_by_length,
                                                pad_multiple(self.precision))
        # A trial (it has a checkpoint) also checkpoints within epochs, on the clock and when told to stop.
        pause = preemption.Pause(cfg.train.checkpoint_minutes) if checkpoint is not None else None
        with pause or contextlib.nullcontext():
            return train(
                fresh_model(self.template, run_cfg.model, seed), train_dl, eval_dl, hp,
                optimizer_fn=instantiate(run_cfg.optimizer.optimizer), precision=self.precision,
                metric_names=list(cfg.task.metrics), seed=seed, on_epoch_end=on_epoch_end,
                checkpoint=checkpoint, resume=resume, log_every=cfg.train.log_every, progress=cfg.train.progress,
                cpu_fastpath=cfg.train.cpu_fastpath, compile_model=cfg.train.compile, on_train_end=on_train_end,
                regression=cfg.task.num_labels == 1, extra_eval=extra_eval, on_log=on_log,
                evals_per_epoch=cfg.train.evals_per_epoch, on_evaluate=on_evaluate,
                subset_dl=get_subset_eval_dataloader(data, self.subset, cfg.train.eval_batch_size,
                                                     cfg.train.group_by_length, pad_multiple(self.precision))
                if on_evaluate is not None and cfg.train.evals_per_epoch > 1 else None, pause=pause)

    def export_best(self, trial: optuna.Trial, model, value: float) -> None:
        """Export the trial's model if it beats the one exported so far. That one counts only while its
        trial is complete with that value, or still running (exports come just before a trial completes);
        a dead worker's or an older study's does not."""
        def is_current(marker: dict) -> bool:
            t = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == marker.get("trial")), None)
            return t is not None and (t.state == TrialState.RUNNING or
                                      (t.state == TrialState.COMPLETE and t.value == marker["value"]))

        name = self.objectives[0]
        record = {"study": self.cfg.study.name, "trial": trial.number, "value": value, "objective": name,
                  "params": trial.params}
        if export_if_better(model, self.data.tokenizer, self.data.label_names, self.best_model,
                            record, is_current, improves=lambda new, old: improves(name, new, old)):
            log.info("trial %d: %s=%.4f, the best so far: model written to %s", trial.number, name, value,
                     self.best_model)
            attach_best_model(self.cfg.study.artifacts, trial, self.best_model, record, is_current)

    def restore_reports(self, trial: optuna.Trial, frozen, history: list[dict]) -> None:
        """A resumed trial holds the intermediate values its predecessor reported (inherited by the
        retry); report those the checkpoint has and the predecessor died before reporting."""
        for metrics in history if len(self.objectives) == 1 else []:
            step = steps.epoch_end_step(metrics["epoch"], self.cfg.train.evals_per_epoch, len(self.data.train))
            if step not in frozen.intermediate_values:
                trial.report(metrics[self.objectives[0]], step)
        trial.set_user_attr("resumed_at_epoch", len(history))
