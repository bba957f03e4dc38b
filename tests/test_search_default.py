"""The default search end to end in-process (tiny model, real SQLite): the portfolio first, reports within
epochs in training samples, the halving pruner, and the compute budget ending the study."""
from optuna.trial import TrialState

from conftest import TINY, load
from sweeper.job import run_study
from sweeper.search import budget
from sweeper.search.pruning import STEP_UNIT
from sweeper.study.run import portfolio


def test_the_default_search_starts_from_the_portfolio_and_stops_at_its_budget(compose_cfg):
    # One-epoch trials keep it quick: a whole trial spends 64 trained + 3 x 32 evaluated samples, 1.5 epochs.
    cfg = compose_cfg(*TINY, "study.budget_epochs=5", "study.n_trials=30", "search.space.train.epochs=1",
                      "search.portfolio=[{optimizer.lr:1e-4,train.epochs:1,train.batch_size:16},"
                      "{optimizer.lr:5e-5,train.epochs:1,train.batch_size:8},"
                      "{optimizer.lr:2e-4,train.epochs:3,train.batch_size:32}]")  # the last: outside the space
    run_study(cfg)
    study = load(cfg.study.storage, cfg.study.name)
    trials = study.trials
    assert [t.params for t in trials[:2]] == portfolio(cfg) == [
        {"optimizer.lr": 1e-4, "train.batch_size": 16}, {"optimizer.lr": 5e-5, "train.batch_size": 8}]
    assert len(trials) > 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:  # three reports per epoch, at training samples seen
        assert t.user_attrs[STEP_UNIT] == "train_samples" and max(t.intermediate_values) <= 64
    assert sorted(trials[0].intermediate_values) == [16, 48, 64]  # batch 16: after batches 1 and 3 of 4, and the end
    used = budget.spent(study).samples / 64
    before_last = budget.spent_by(trials[:-1], study.user_attrs).samples / 64
    assert before_last < 5 <= used  # each trial starts under budget; the last one spent the rest
