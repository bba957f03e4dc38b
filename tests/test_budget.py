"""A compute budget (study.budget_epochs, study.budget_minutes): in-process studies in real SQLite files,
the tiny model on 64 training and 32 evaluation pairs."""
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from conftest import TINY, load
from sweeper.job import run_study
from sweeper.results.status import status
from sweeper.search import budget
from sweeper.study.progress import snapshot

EPOCHS = [*TINY, "train.evals_per_epoch=1"]  # one evaluation per epoch: the counts below are whole epochs
ONE_EPOCH = [*EPOCHS, "search.space.train.epochs=1"]  # every trial 1 epoch: 64 trained + 32 evaluated samples
TRIAL_EPOCHS = (64 + 32 * budget.EVAL_WEIGHT) / 64  # what one such trial spends, in epochs of the training set


def test_a_budget_stops_the_study_and_a_resume_spends_only_what_is_left(compose_cfg, caplog):
    cfg = compose_cfg(*ONE_EPOCH, "study.n_trials=10", "study.budget_epochs=1.5")
    with caplog.at_level("INFO"):
        run_study(cfg)
    # The summary says what stopped it: the budget, not the 10 trials (only a cap).
    assert (f"study {cfg.study.name}: 2 complete, 0 pruned, 0 failed; stopped by its budget: study.budget_epochs=1.5 "
            "is spent: 2.33 epochs of the 64-example training set (study.n_trials=10 is only a cap)") in caplog.text
    study = load(cfg.study.storage, cfg.study.name)
    # Trial 0 leaves 1.5 - 1.17 epochs: trial 1 starts under budget and runs to its end; then no more.
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["train_samples"] for t in study.trials] == [64, 64]
    assert [t.user_attrs["evaluated_samples"] for t in study.trials] == [32, 32]
    assert budget.spent(study).samples / 64 == 2 * TRIAL_EPOCHS
    # The progress line and mode=status show the budget spent of the budget, from the study's own records.
    assert f"budget {2 * TRIAL_EPOCHS:.2f}/1.5 epochs, best" in snapshot(study, 10, elapsed=1).line()
    assert f"2/10 (budget {2 * TRIAL_EPOCHS:.2f}/1.5 epochs)" in status(cfg)

    caplog.clear()
    with caplog.at_level("INFO"):
        run_study(compose_cfg(*ONE_EPOCH, "study.n_trials=10", "study.budget_epochs=1.5"))  # the same budget
    assert "study.budget_epochs=1.5 is spent: 2.33 epochs" in caplog.text and "nothing to run" in caplog.text
    assert len(load(cfg.study.storage, cfg.study.name).trials) == 2

    run_study(compose_cfg(*ONE_EPOCH, "study.n_trials=10", "study.budget_epochs=3"))  # a larger one resumes
    study = load(cfg.study.storage, cfg.study.name)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3  # 2.33 spent: one more trial, then 3.5
    assert budget.spent(study).train["complete"] == 3 * 64

    caplog.clear()
    with caplog.at_level("INFO"):
        run_study(compose_cfg(*ONE_EPOCH, "study.n_trials=4", "study.budget_epochs=100"))  # n_trials stays the cap
    assert len(load(cfg.study.storage, cfg.study.name).trials) == 4
    assert "4 complete, 0 pruned, 0 failed; stopped at its target, study.n_trials=4 finished trials" in caplog.text


def test_a_budget_in_minutes_counts_the_stored_trials_durations(compose_cfg, caplog):
    cfg = compose_cfg(*ONE_EPOCH, "study.n_trials=10", "study.budget_minutes=0.0001")
    run_study(cfg)  # the first trial starts under budget (nothing spent) and finishes; it alone spends it
    study = load(cfg.study.storage, cfg.study.name)
    assert len(study.trials) == 1
    minutes = (study.trials[0].datetime_complete - study.trials[0].datetime_start).total_seconds() / 60
    assert budget.spent(study).minutes == minutes
    assert budget.reached(study, cfg.study, 64).startswith("study.budget_minutes=0.0001 is spent")


def test_a_pruned_trial_counts_what_it_trained(compose_cfg):
    from sweeper.study.objective import Objective

    cfg = compose_cfg(*EPOCHS, "search.space.train.epochs=2", "search.space.train.batch_size=16")
    study = optuna.create_study(storage=cfg.study.storage, study_name="pruned", direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=2.0))  # prunes at its first report
    study.optimize(Objective(cfg, Path(cfg.out_dir) / "pruned"), n_trials=1)
    trial = load(cfg.study.storage, "pruned").trials[0]
    assert trial.state == TrialState.PRUNED and trial.intermediate_values.keys() == {0}
    assert trial.user_attrs["train_samples"] == 64  # one epoch of its two
    used = budget.spent(study)
    assert used.train == {"complete": 0, "pruned": 64, "failed": 0, "running": 0} and used.evaluated == 32


def test_compute_spent_is_in_the_summary_trials_csv_report_and_summary_csv(compose_cfg, caplog, tmp_path):
    from sweeper.results.summary import write_summary

    cfg = compose_cfg(*ONE_EPOCH, "study.n_trials=2")  # no budget: compute is reported all the same
    with caplog.at_level("INFO"):
        run_study(cfg)
    assert "compute: trained 128 (2.00 ep) samples (128 (2.00 ep) complete, 0 (0.00 ep) pruned" in caplog.text
    study_dir = Path(cfg.out_dir) / cfg.study.name
    trials = pd.read_csv(study_dir / "trials.csv")
    assert list(trials["user_attrs_train_samples"]) == [64, 64]
    assert "<th>compute</th><td>trained 128 (2.00 ep) samples" in (study_dir / "report.html").read_text()
    row = write_summary([load(cfg.study.storage, cfg.study.name)], tmp_path / "summary.csv").iloc[0]
    assert (row["train_samples_complete"], row["train_samples_pruned"], row["evaluated_samples"]) == (128, 0, 64)
    assert row["budget_epochs_spent"] == round(2 * TRIAL_EPOCHS, 3)


def test_a_budget_is_not_part_of_the_definition_and_is_checked(compose_cfg):
    import pytest

    from sweeper.errors import ConfigError
    from sweeper.study.definition import definition
    from sweeper.validate import validate

    plain, budgeted = compose_cfg(*TINY), compose_cfg(*TINY, "study.budget_epochs=2", "study.budget_minutes=30")
    assert definition(plain) == definition(budgeted)
    with pytest.raises(ConfigError, match=r"study.budget_epochs=0.0; allowed: null \(no budget\) or a number > 0"):
        validate(compose_cfg(*TINY, "study.budget_epochs=0"))


def test_a_retry_counts_only_what_it_trained_itself(compose_cfg):
    import pytest

    from sweeper.study.objective import Objective
    from sweeper.study.run import load_study, run_trials
    from sweeper.study.storage import open_storage

    class Interrupt(optuna.pruners.BasePruner):  # Ctrl-C at the first report, after epoch 0's checkpoint
        def prune(self, study, trial):
            raise KeyboardInterrupt

    cfg = compose_cfg(*EPOCHS, "study.n_trials=1", "search.space.train.epochs=2", "pruner=none")
    study = load_study(open_storage(cfg.study), cfg)
    objective = Objective(cfg, Path(cfg.out_dir) / cfg.study.name)
    study.pruner = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, objective, cfg, objective.checkpoint_root)
    study.pruner = optuna.pruners.NopPruner()
    run_trials(study, objective, cfg, objective.checkpoint_root)
    failed, retry = load(cfg.study.storage, cfg.study.name).trials
    assert (failed.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.user_attrs["resumed_at_epoch"] == 1
    # 64 samples on each, not 64 + 128: the retry trained epoch 1 only, from its predecessor's checkpoint.
    assert (failed.user_attrs["train_samples"], retry.user_attrs["train_samples"]) == (64, 64)
    assert budget.spent(study).train == {"complete": 64, "pruned": 0, "failed": 64, "running": 0}
