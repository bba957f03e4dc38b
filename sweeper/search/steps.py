"""The step a trial reports its objective at. One evaluation per epoch (train.evals_per_epoch=1, the default):
the epoch index, as studies always did. Several (k > 1): training samples seen, counted over all processes, so
a step means the same amount of training whatever the trial's batch size or number of epochs, and Hyperband's
or successive halving's resource is compute; such trials carry the user attribute step_unit=train_samples."""
from __future__ import annotations

import optuna

from sweeper.search.budget import EVALUATED, TRAIN
from sweeper.search.pruning import SAMPLES, STEP_UNIT  # noqa: F401  (the objective sets them through this module)


def epoch_end_step(epoch: int, evals_per_epoch: int, train_size: int) -> int:
    """The step of the evaluation at the end of `epoch` (0-based)."""
    return epoch if evals_per_epoch == 1 else (epoch + 1) * train_size


def report_within_epoch(trial: optuna.Trial, objective: str, step: int, metrics: dict, prune: bool = True) -> None:
    """An evaluation within an epoch (on the capped subset): record the compute spent so far, report the
    objective at `step` (training samples seen) and prune if the pruner says so. The task metrics stay the
    last epoch's (whole validation split)."""
    for name in (TRAIN, EVALUATED):
        trial.set_user_attr(name, metrics[name])
    if len(trial.study.directions) > 1:
        return
    trial.report(metrics[objective], step)
    if prune and trial.should_prune():
        raise optuna.TrialPruned(f"{objective}={metrics[objective]:.4f} after {step} training samples "
                                 f"(within epoch {metrics['epoch']})")
