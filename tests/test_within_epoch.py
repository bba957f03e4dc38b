"""Evaluations within an epoch (train.evals_per_epoch): real in-process studies with the tiny model on 64 training
and 32 evaluation pairs, and the plateau pruner on steps in training samples."""
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from conftest import TINY, load
from sweeper.data.batching import eval_subset
from sweeper.job import run_study
from sweeper.search.pruning import STEP_UNIT, TRIVIAL_WITHIN, PlateauMedianPruner
from sweeper.study.objective import Objective
from sweeper.train.loop import within_epoch_steps
from sweeper.train.metrics import trivial_value

# One trial: 2 epochs of 4 batches of 16; with 3 evaluations per epoch, after batches 1 and 3 and at the end.
FIXED = [*TINY, "search.space.optimizer.lr=5e-4", "search.space.train.epochs=2",
         "search.space.train.batch_size=16", "study.n_trials=1", "pruner=none"]


def test_evaluations_are_evenly_spaced_and_the_last_is_the_epochs_end():
    assert within_epoch_steps(4, 1) == set()
    assert within_epoch_steps(4, 3) == {1, 3}
    assert within_epoch_steps(100, 4) == {25, 50, 75}
    assert within_epoch_steps(2, 8) == {1}  # never more evaluations than batches, never at 0


def test_reports_within_epochs_arrive_in_training_samples_and_leave_training_unchanged(compose_cfg):
    once = compose_cfg(*FIXED, "study.name=once", "train.evals_per_epoch=1")
    run_study(once)
    thrice = compose_cfg(*FIXED, "study.name=thrice", "train.evals_per_epoch=3", "train.eval_subset=16")
    run_study(thrice)
    a, b = load(once.study.storage, "once").trials[0], load(thrice.study.storage, "thrice").trials[0]
    assert a.intermediate_values.keys() == {0, 1} and STEP_UNIT not in a.user_attrs  # epoch steps
    assert sorted(b.intermediate_values) == [16, 48, 64, 80, 112, 128] and b.user_attrs[STEP_UNIT] == "train_samples"
    # Evaluating within epochs leaves training alone: the epoch ends (whole validation split) are identical.
    ends = (b.intermediate_values[64], b.intermediate_values[128])
    assert ends == (a.intermediate_values[0], a.intermediate_values[1])
    assert b.value == a.value and b.user_attrs["f1"] == a.user_attrs["f1"]
    # The plateau within an epoch is the constant prediction's value on the subset those reports score on.
    labels = np.asarray(Objective(thrice, Path(thrice.out_dir) / "x").data.eval["labels"])
    subset = labels[eval_subset(len(labels), 16, thrice.seed)]
    assert b.user_attrs[TRIVIAL_WITHIN] == trivial_value(subset, "f1") and TRIVIAL_WITHIN not in a.user_attrs
    assert a.user_attrs["train_samples"] == b.user_attrs["train_samples"] == 128
    assert (a.user_attrs["evaluated_samples"], b.user_attrs["evaluated_samples"]) == (2 * 32, 2 * (2 * 16 + 32))


def test_the_pruner_decides_within_an_epoch_and_the_partial_epoch_counts(compose_cfg):
    cfg = compose_cfg(*FIXED, "train.evals_per_epoch=4", "train.eval_subset=8")
    study = optuna.create_study(storage=cfg.study.storage, study_name="cut", direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=2.0))  # prunes at its first report
    study.optimize(Objective(cfg, Path(cfg.out_dir) / "cut"), n_trials=1)
    trial = load(cfg.study.storage, "cut").trials[0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [16]  # a quarter into epoch 0
    assert (trial.user_attrs["train_samples"], trial.user_attrs["evaluated_samples"]) == (16, 8)


def test_the_plateau_pruner_compares_sample_steps_of_other_batch_sizes(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/p.db", study_name="p", direction="maximize",
                                pruner=PlateauMedianPruner(n_startup_trials=2))

    def run(reports: dict[int, float], unit="train_samples") -> TrialState:
        study.enqueue_trial({"epochs": 1})

        def objective(trial):
            trial.suggest_int("epochs", 1, 3)
            if unit:
                trial.set_user_attr(STEP_UNIT, unit)
            for step, value in reports.items():
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return value

        study.optimize(objective, n_trials=1)
        return study.trials[-1].state

    # Peers at batch 16 report at 16, 32, 48, 64 samples; a batch-24 trial at 24, 48, 64.
    assert run({16: 0.6, 32: 0.7, 48: 0.8, 64: 0.9}) == TrialState.COMPLETE
    assert run({16: 0.6, 32: 0.7, 48: 0.8, 64: 0.9}) == TrialState.COMPLETE
    assert run({24: 0.71, 48: 0.9, 64: 0.95}) == TrialState.COMPLETE  # at 24 the peers' last (16: 0.6) is below
    assert run({24: 0.5, 48: 0.9}) == TrialState.PRUNED  # below the median of the peers at 24 samples
    assert run({0: 0.1}, unit=None) == TrialState.COMPLETE  # epoch steps: no peers of that unit yet


def test_bad_within_epoch_settings_are_refused_in_one_line(compose_cfg):
    import pytest

    from sweeper.errors import ConfigError
    from sweeper.validate import validate

    validate(compose_cfg(*TINY, "train.evals_per_epoch=4", "pruner=plateau"))
    with pytest.raises(ConfigError, match=r"^train.evals_per_epoch=0; allowed: an integer >= 1$"):
        validate(compose_cfg(*TINY, "train.evals_per_epoch=0"))
    with pytest.raises(ConfigError, match=r"^pruner.min_resource=1 with train.evals_per_epoch=4: steps are then "):
        validate(compose_cfg(*TINY, "train.evals_per_epoch=4", "pruner=hyperband"))
    validate(compose_cfg(*TINY, "train.evals_per_epoch=4", "pruner=hyperband", "pruner.min_resource=16"))


def test_an_objective_no_evaluation_within_an_epoch_measures_is_reported_at_epoch_ends(compose_cfg):
    # The training loss is the epoch's, not the capped evaluation's: every trial failed on a KeyError before.
    cfg = compose_cfg(*TINY, "study.objectives=[loss]", "study.n_trials=1", "train.evals_per_epoch=3")
    run_study(cfg)
    trial = load(cfg.study.storage, cfg.study.name).trials[0]
    assert trial.state == TrialState.COMPLETE and "trivial_value" not in trial.user_attrs  # no plateau for a loss
    assert sorted(trial.intermediate_values) == [64, 128, 192]  # the course settings' 3 epochs of 64 samples
