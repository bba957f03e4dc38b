"""The default pruner: median pruning that compares like with like and waits for a signal.

Measured on MRPC (1,000 training pairs, MiniLM), Optuna's MedianPruner pruned 17 of 20 trials, 14 of
them at F1 0.8122: the F1 of predicting "equivalent" for every pair, where nearly every model sits
after its first epoch. Two things made those decisions uninformative, and this pruner removes both:
- a value within `plateau_margin` of the trivial classifier's (the best constant prediction on the
  validation set, stored by the trial as the `trivial_value` user attribute) says the trial has not
  learned *yet*, not that it will not: no pruning decision is taken on it;
- the linear schedule decays over each trial's own epochs, so epoch 0 of a 1-epoch trial (lr decayed
  to zero) and of a 3-epoch trial (lr still at two thirds) are different fidelities: a trial is compared
  only with trials of the same number of epochs, at the same epoch.
With train.evals_per_epoch > 1 steps are training samples seen: a trial is compared with same-epochs peers that
trained at least as far, at their last report up to its step, and only with trials of the same step unit.
"""
from __future__ import annotations

import statistics

import optuna
from optuna.trial import FrozenTrial, TrialState

TRIVIAL = "trivial_value"  # the trial user attribute the objective sets
TRIVIAL_WITHIN = "trivial_value_within"  # the same on the capped subset that reports within an epoch score on
PROMOTED_AT = "promoted_at"  # a continued probe's user attribute: the step its probe stopped at (probes.py)
STEP_UNIT = "step_unit"  # absent: steps are epochs; SAMPLES: within-epoch reports (sweeper/search/steps.py)
SAMPLES = "train_samples"
EPOCHS = "epochs"  # the trial user attribute of its epoch count, searched or fixed (a study made before: a param)


def trial_epochs(trial: FrozenTrial) -> int | None:
    return trial.user_attrs.get(EPOCHS, trial.params.get("epochs"))


class PlateauMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial whose value at epoch k is below the median of the finished trials with the same
    number of epochs at epoch k, once `n_startup_trials` of them exist, after `n_warmup_steps` epochs,
    and never while its value is on the trivial classifier's plateau."""

    def __init__(self, n_startup_trials: int = 2, n_warmup_steps: int = 0, plateau_margin: float = 0.01):
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.plateau_margin = plateau_margin

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        value = trial.intermediate_values[step]
        trivial = trivial_at(trial, step, study.user_attrs.get("train_size"))
        if trivial is not None and plateau(value, trivial, self.plateau_margin, study.direction):
            return False
        epochs, unit = trial_epochs(trial), trial.user_attrs.get(STEP_UNIT)
        peers = [value_at(t, step)
                 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                 if trial_epochs(t) == epochs and t.user_attrs.get(STEP_UNIT) == unit
                 and t.last_step is not None and t.last_step >= step]
        if len(peers) < self.n_startup_trials:
            return False
        median = statistics.median(peers)
        return value < median if study.direction == optuna.study.StudyDirection.MAXIMIZE else value > median


def value_at(trial: FrozenTrial, step: int) -> float:
    """A peer's value at `step`, or at its last report before it: trials of other batch sizes report within an
    epoch at other sample counts (train.evals_per_epoch > 1). Epoch steps are reported by every peer that got there."""
    return trial.intermediate_values[max(s for s in trial.intermediate_values if s <= step)]


class PlateauHalvingPruner(optuna.pruners.BasePruner):
    """The default: asynchronous successive halving over compute ("start many, stop early, continue some", Dodge
    et al. 2020), with the plateau guard. Rungs are at `min_epochs` * `reduction_factor`**k epochs of training
    (1/3, 1, 3 by default); at the first report at or past a rung, a trial goes on only if its value there is among
    the best 1/reduction_factor of the values every trial (finished, pruned or running) had at that rung, once
    `min_peers` others got there. Progress is training samples over the training set's size (train.evals_per_epoch
    > 1) or epochs, so trials of any batch size, epoch count or step unit meet at the same rungs. Not judged: a
    trial at its last report (nothing left to save), and one on the trivial classifier's plateau before
    `plateau_grace` epochs (it has not learned *yet*; after that, a plateau is a run that diverged to the majority
    class, which Dodge et al. saw on MRPC, RTE and CoLA, and is judged like any low value)."""

    def __init__(self, min_epochs: float = 1 / 3, reduction_factor: int = 3, min_peers: int = 2,
                 plateau_margin: float = 0.01, plateau_grace: float = 1.0):
        if min_epochs <= 0 or reduction_factor < 2 or min_peers < 1:
            raise ValueError(f"min_epochs={min_epochs} reduction_factor={reduction_factor} min_peers={min_peers}; "
                             "allowed: min_epochs > 0, reduction_factor >= 2, min_peers >= 1")
        self.min_epochs, self.reduction_factor, self.min_peers = min_epochs, reduction_factor, min_peers
        self.plateau_margin, self.plateau_grace = plateau_margin, plateau_grace

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step, train_size = trial.last_step, study.user_attrs.get("train_size")
        if step is None:
            return False
        progress = epochs_done(trial, step, train_size)
        rung = self.rung_reached(progress)
        if rung is None or progress >= (trial_epochs(trial) or float("inf")) * RUNG_SLACK:  # None: no progress known
            return False
        if step <= trial.user_attrs.get(PROMOTED_AT, -1):  # a continued probe (search.probe), judged up to there
            return False  # with every probe already
        mine = value_at_rung(trial, self.rung_epochs(rung), train_size)
        if mine is None or mine[0] != step:  # decided at an earlier report of this rung: it went on then
            return False
        value = mine[1]
        trivial = trivial_at(trial, step, train_size)
        if trivial is not None and progress < self.plateau_grace and plateau(value, trivial, self.plateau_margin,
                                                                            study.direction):
            return False
        peers = [v for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                      TrialState.RUNNING))
                 if t.number != trial.number and (v := value_at_rung(t, self.rung_epochs(rung), train_size))]
        if len(peers) < self.min_peers:
            return False
        values = sorted((v for _, v in peers), reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
        keep = max(1, (len(values) + 1) // self.reduction_factor)  # of the peers and this trial
        bar = values[min(keep, len(values)) - 1]
        return value < bar if study.direction == optuna.study.StudyDirection.MAXIMIZE else value > bar

    def rung_epochs(self, k: int) -> float:
        return self.min_epochs * self.reduction_factor ** k

    def rung_reached(self, progress: float | None) -> int | None:
        """The highest rung at or below `progress` epochs, None below the first."""
        if progress is None or progress < self.min_epochs * RUNG_SLACK:
            return None
        k = 0
        while progress >= self.rung_epochs(k + 1) * RUNG_SLACK:
            k += 1
        return k


# Reports within an epoch fall on batch boundaries: 1/3 of 367 batches is 122 (0.3327 of the epoch), so a rung
# counts as reached a little before its exact point.
RUNG_SLACK = 0.98


def epochs_done(trial: FrozenTrial, step: int, train_size: int | None) -> float | None:
    """Epochs of training behind the report at `step`: samples over the training set's size in the samples unit,
    the epoch index + 1 in the epoch unit; None where the size is unknown."""
    if trial.user_attrs.get(STEP_UNIT) == SAMPLES:
        return step / train_size if train_size else None
    return step + 1.0


def value_at_rung(trial: FrozenTrial, rung: float, train_size: int | None) -> tuple[int, float] | None:
    """(step, value) of the trial's first report at or past `rung` epochs, None if it never got there."""
    for step in sorted(trial.intermediate_values):
        done = epochs_done(trial, step, train_size)
        if done is not None and done >= rung * RUNG_SLACK:
            return step, trial.intermediate_values[step]
    return None


def trivial_at(trial: FrozenTrial, step: int, train_size: int | None) -> float | None:
    """The trivial classifier's value on the examples behind the report at `step`: within an epoch (a samples step
    short of a whole epoch) the capped subset's (MRPC's 20% selection split: F1 0.806 on all of it, 0.819 on its
    512-example subset, more than the plateau's margin apart), at an epoch's end the whole split's."""
    within = trial.user_attrs.get(STEP_UNIT) == SAMPLES and train_size and step % train_size
    return trial.user_attrs.get(TRIVIAL_WITHIN if within and TRIVIAL_WITHIN in trial.user_attrs else TRIVIAL)


def plateau(value: float, trivial: float, margin: float, direction) -> bool:
    """Within `margin` of the trivial classifier's value (or worse): nothing learned yet."""
    if direction == optuna.study.StudyDirection.MAXIMIZE:
        return value <= trivial + margin
    return value >= trivial - margin
