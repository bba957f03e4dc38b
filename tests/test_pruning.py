"""The default pruner on real studies in SQLite: it waits out the trivial classifier's plateau, then prunes
trials below the median of those with the same number of epochs."""
import optuna
import pytest
from optuna.trial import TrialState

from conftest import compose_config, load
from sweeper.search.budget import EVALUATED, TRAIN
from sweeper.search.pruning import (
    STEP_UNIT,
    TRIVIAL,
    TRIVIAL_WITHIN,
    PlateauHalvingPruner,
    PlateauMedianPruner,
    trivial_at,
)
from sweeper.search.steps import SAMPLES, report_within_epoch
from sweeper.study.objective import report_epoch
from sweeper.train.metrics import trivial_value

TRIVIAL_F1 = 0.8122  # MRPC validation: every pair predicted "equivalent"


def run(study, epochs: int, values: list[float], metric: str = "f1", trivial: float = TRIVIAL_F1) -> TrialState:
    """One trial of `epochs` epochs reporting `values` per epoch, as sweeper's objective does."""
    study.enqueue_trial({"epochs": epochs})

    def objective(trial):
        trial.suggest_int("epochs", 1, 3)
        trial.set_user_attr(TRIVIAL, trivial)
        for epoch, value in enumerate(values):
            report_epoch(trial, metric, epoch, {metric: value})
        return values[-1]

    study.optimize(objective, n_trials=1)
    return study.trials[-1].state


@pytest.fixture
def study(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(storage=url, study_name="p", direction="maximize",
                                pruner=PlateauMedianPruner(n_startup_trials=2, n_warmup_steps=0, plateau_margin=0.01))
    study.storage_url = url
    return study


def test_a_trial_on_the_plateau_is_not_pruned_though_below_the_median(study):
    for _ in range(2):
        assert run(study, 3, [0.84, 0.86, 0.88]) == TrialState.COMPLETE
    # A high learning rate still predicting the majority class after epochs 0 and 1: no decision yet.
    assert run(study, 3, [TRIVIAL_F1, TRIVIAL_F1 + 0.005, 0.90]) == TrialState.COMPLETE


def test_a_trial_that_learned_less_than_its_peers_is_pruned(study):
    for _ in range(2):
        run(study, 3, [0.84, 0.86, 0.88])
    assert run(study, 3, [0.83, 0.85, 0.90]) == TrialState.PRUNED
    pruned = load(study.storage_url, "p").trials[-1]
    assert pruned.intermediate_values == {0: 0.83}  # decided at epoch 0, the first epoch above the plateau


def test_trials_are_compared_only_with_trials_of_the_same_epochs(study):
    # One-epoch trials end their schedule at epoch 0 with higher values than a 3-epoch trial has there.
    for _ in range(2):
        run(study, 1, [0.87])
    assert run(study, 3, [0.83, 0.86, 0.88]) == TrialState.COMPLETE
    assert run(study, 3, [0.84, 0.87, 0.89]) == TrialState.COMPLETE
    assert run(study, 3, [0.825, 0.85, 0.89]) == TrialState.PRUNED  # below the two 3-epoch trials' median


def test_a_minimized_objective_has_its_plateau_above_and_its_median_the_right_way_round(tmp_path):
    """STS-B with objective mse: lower is better, and the mean prediction's mse is the plateau."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/m.db", direction="minimize",
                                pruner=PlateauMedianPruner(n_startup_trials=2, n_warmup_steps=0, plateau_margin=0.01))
    trivial_mse = 2.3
    for _ in range(2):
        assert run(study, 3, [1.0, 0.8, 0.6], "mse", trivial_mse) == TrialState.COMPLETE
    # Still predicting the mean after two epochs: not judged yet, though worse than the median.
    assert run(study, 3, [trivial_mse, trivial_mse - 0.005, 0.5], "mse", trivial_mse) == TrialState.COMPLETE
    # Learned, but less than its peers (a higher mse at epoch 0): pruned there.
    assert run(study, 3, [1.2, 0.9, 0.5], "mse", trivial_mse) == TrialState.PRUNED
    assert study.trials[-1].last_step == 0


def test_no_decision_before_the_warm_up(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/w.db", direction="maximize",
                                pruner=PlateauMedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for _ in range(2):
        run(study, 3, [0.86, 0.87, 0.88])
    assert run(study, 3, [0.83, 0.88, 0.89]) == TrialState.COMPLETE  # below at epoch 0, above from epoch 1
    assert run(study, 3, [0.83, 0.84, 0.89]) == TrialState.PRUNED
    assert study.trials[-1].last_step == 1


def test_the_trivial_value_is_the_best_constant_prediction():
    labels = [1] * 279 + [0] * 129  # MRPC's validation set
    assert trivial_value(labels, "f1") == pytest.approx(2 * 279 / (2 * 279 + 129))
    assert trivial_value(labels, "f1") == pytest.approx(TRIVIAL_F1, abs=1e-4)
    assert trivial_value(labels, "accuracy") == pytest.approx(279 / 408)


def test_the_default_pruner_halves_over_compute_with_the_plateau_guard():
    from hydra.utils import instantiate

    cfg = compose_config()
    pruner = instantiate(cfg.pruner)
    assert isinstance(pruner, PlateauHalvingPruner)
    assert [round(pruner.rung_epochs(k), 3) for k in range(3)] == [0.333, 1.0, 3.0]
    assert cfg.train.evals_per_epoch == 3  # a report lands on the first rung
    sampler = instantiate(cfg.sampler, seed=1)
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._multivariate and sampler._constant_liar


TRAIN_SIZE = 300  # samples per epoch in the halving tests: reports at 100, 200, 300, ... (3 per epoch)


@pytest.fixture
def halving(tmp_path):
    url = f"sqlite:///{tmp_path}/h.db"
    study = optuna.create_study(storage=url, study_name="h", direction="maximize", pruner=PlateauHalvingPruner())
    study.set_user_attr("train_size", TRAIN_SIZE)
    study.storage_url = url
    return study


def run_samples(study, epochs: int, values: list[float], within: float | None = None) -> TrialState:
    """One trial reporting `values` every third of an epoch, in training samples, as train.evals_per_epoch=3 does;
    `within`: the trivial value on the capped subset the reports within an epoch score on."""
    study.enqueue_trial({"epochs": epochs})

    def objective(trial):
        trial.suggest_int("epochs", 1, 3)
        trial.set_user_attr(TRIVIAL, TRIVIAL_F1)
        if within is not None:
            trial.set_user_attr(TRIVIAL_WITHIN, within)
        trial.set_user_attr(STEP_UNIT, SAMPLES)
        for i, value in enumerate(values):
            report_within_epoch(trial, "f1", (i + 1) * TRAIN_SIZE // 3,
                                {"f1": value, "epoch": i // 3, TRAIN: (i + 1) * 100, EVALUATED: 0})
        return values[-1]

    study.optimize(objective, n_trials=1)
    return study.trials[-1].state


def test_halving_keeps_the_best_third_at_the_first_rung_and_decides_there(halving):
    assert run_samples(halving, 3, [0.85] * 9) == TrialState.COMPLETE  # no peers yet
    assert run_samples(halving, 3, [0.84] * 9) == TrialState.COMPLETE  # one peer: not judged
    assert run_samples(halving, 3, [0.83] + [0.90] * 8) == TrialState.PRUNED  # not the best third of 3 at 1/3 epoch
    pruned = load(halving.storage_url, "h").trials[-1]
    assert pruned.intermediate_values == {100: 0.83}  # one third of an epoch: 100 of 300 samples
    assert run_samples(halving, 3, [0.86] * 9) == TrialState.COMPLETE  # the best at the first rung


def test_halving_meets_trials_of_other_schedules_and_units_at_the_same_compute(halving):
    # Epoch-unit peers (train.evals_per_epoch=1) report at epochs: their first rung is the 1-epoch rung.
    for value in (0.86, 0.87):
        assert run(halving, 3, [value, value, value]) == TrialState.COMPLETE
    # A samples-unit trial has no peer at 1/3 epoch, and at 1 epoch it is below both: pruned there.
    assert run_samples(halving, 3, [0.80, 0.82, 0.84, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9]) == TrialState.PRUNED
    assert load(halving.storage_url, "h").trials[-1].last_step == TRAIN_SIZE


def test_halving_waits_out_the_plateau_until_the_grace_then_judges_it(halving):
    for value in (0.85, 0.86, 0.87):
        run_samples(halving, 3, [value] * 9)
    # The majority class at 1/3 and 2/3 of an epoch: not learned yet, no decision; still there at 1 epoch: pruned.
    assert run_samples(halving, 3, [TRIVIAL_F1, TRIVIAL_F1, TRIVIAL_F1] + [0.9] * 6) == TrialState.PRUNED
    assert load(halving.storage_url, "h").trials[-1].last_step == TRAIN_SIZE
    # Off the plateau at 1 epoch and among the best: goes on to the end.
    assert run_samples(halving, 3, [TRIVIAL_F1, TRIVIAL_F1, 0.88] + [0.9] * 6) == TrialState.COMPLETE


def test_within_an_epoch_the_plateau_is_the_capped_subsets(halving):
    # Reports within an epoch score on the capped subset, where the constant prediction scores otherwise than on the
    # whole split (MRPC's selection split: F1 0.806 on all of it, 0.819 on its 512-example subset).
    for value in (0.85, 0.86, 0.87):
        run_samples(halving, 3, [value] * 9)
    # 0.835 at 1/3 epoch: off the whole split's plateau (0.812 + 0.01), on the subset's (0.83 + 0.01): not judged.
    assert run_samples(halving, 3, [0.835, 0.835] + [0.9] * 7, within=0.83) == TrialState.COMPLETE
    # Judged against the whole split's value it is below the best third there, and stopped.
    assert run_samples(halving, 3, [0.835, 0.835] + [0.9] * 7) == TrialState.PRUNED


def test_the_plateau_of_a_report_follows_the_examples_it_scored(halving):
    run_samples(halving, 1, [0.8] * 3, within=0.83)
    trial = halving.trials[-1]
    assert trivial_at(trial, 100, TRAIN_SIZE) == trivial_at(trial, 200, TRAIN_SIZE) == 0.83  # the subset's
    assert trivial_at(trial, 300, TRAIN_SIZE) == TRIVIAL_F1  # an epoch's end: the whole split
    run_samples(halving, 1, [0.8] * 3)
    assert trivial_at(halving.trials[-1], 100, TRAIN_SIZE) == TRIVIAL_F1  # no subset: the whole split was scored


def test_halving_never_stops_a_trial_at_its_last_report(halving):
    for value in (0.86, 0.87):
        run_samples(halving, 1, [value] * 3)
    # A one-epoch trial's report at 1 epoch is its last: low, but its compute is spent anyway.
    assert run_samples(halving, 1, [0.87, 0.87, 0.80]) == TrialState.COMPLETE


def test_a_better_value_follows_the_metrics_direction():
    """What replaces an exported best model or a retrain's best seed: lower mse, higher f1."""
    from sweeper.train.metrics import improves

    assert improves("mse", 0.1, 0.2) and not improves("mse", 0.2, 0.1)
    assert improves("f1", 0.9, 0.8) and not improves("f1", 0.8, 0.9)
