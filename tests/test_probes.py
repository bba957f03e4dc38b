"""search.probe, "start many, stop early, continue some" as one bracket: the first trials stop after a fraction of
an epoch, the best of them are trained in full from the start, then the search goes on. In-process, tiny model,
real SQLite; the race between workers is in test_concurrency.py."""
import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, load
from sweeper.errors import ConfigError
from sweeper.job import run_study
from sweeper.search.probes import CONTINUES, PROBE, ranked
from sweeper.search.pruning import PROMOTED_AT, PlateauHalvingPruner
from sweeper.study.definition import definition
from sweeper.validate import validate

# STS-B's Pearson correlation differs between any two configurations of the tiny model (its classes' F1 is 0).
# One-epoch trials keep it quick; the portfolio's one entry is the first probe.
ONE_EPOCH = ["search.space.train.epochs=1",
             "search.portfolio=[{optimizer.lr:1e-4,train.epochs:1,train.batch_size:8}]"]
PROBE_ON = ["task=stsb", *ONE_EPOCH, "search.probe.trials=4", "search.probe.keep=2", "search.probe.epochs=0.5",
            "study.n_trials=7"]


def test_probes_stop_early_and_the_best_start_over_in_full(compose_cfg):
    cfg = compose_cfg(*TINY, *PROBE_ON)
    validate(cfg)
    run_study(cfg)
    study = load(cfg.study.storage, cfg.study.name)
    trials, size = study.trials, study.user_attrs["train_size"]
    probes, continued, rest = trials[:4], trials[4:6], trials[6:]
    assert [t.params for t in trials[:1]] == [{"optimizer.lr": 1e-4, "train.batch_size": 8}]  # the portfolio's entry
    for t in probes:  # each stopped at its first report at or past half an epoch, wherever its batches fall
        assert t.state == TrialState.PRUNED and t.user_attrs[PROBE] == 0.5
        *before, last = sorted(t.intermediate_values)
        assert last / size >= 0.49 and all(s / size < 0.49 for s in before), t.intermediate_values
        assert t.user_attrs["train_samples"] == last  # the budget counts what a probe trained
    best = ranked(probes, study.direction)[:2]
    assert [t.user_attrs[CONTINUES] for t in continued] == [p.number for p in best]
    for t, probe in zip(continued, best, strict=True):
        assert t.params == probe.params and t.user_attrs[PROMOTED_AT] == probe.last_step and PROBE not in t.user_attrs
        assert t.state == TrialState.COMPLETE and t.last_step == t.user_attrs["epochs"] * size  # trained in full
        # From the start, with the probe's seed and data order: the same value where the probe stopped.
        assert t.intermediate_values[probe.last_step] == pytest.approx(probe.intermediate_values[probe.last_step])
    assert rest and all(PROBE not in t.user_attrs and CONTINUES not in t.user_attrs for t in rest)
    assert study.best_trial.number not in {t.number for t in probes}


def test_a_continued_probe_is_not_judged_again_where_it_was_promoted(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/p.db", direction="maximize",
                                pruner=PlateauHalvingPruner(min_epochs=0.5))
    study.set_user_attr("train_size", 100)
    for value in (0.9, 0.9, 0.9):  # peers far ahead at half an epoch
        study.add_trial(optuna.trial.create_trial(params={"epochs": 2}, distributions={
            "epochs": optuna.distributions.IntDistribution(1, 3)}, value=value, intermediate_values={50: value},
            user_attrs={"step_unit": "train_samples"}, state=TrialState.PRUNED))

    def decided(attrs: dict) -> bool:
        trial = study.ask({"epochs": optuna.distributions.IntDistribution(1, 3)})
        for key, value in {"step_unit": "train_samples", **attrs}.items():
            trial.set_user_attr(key, value)
        trial.report(0.5, 50)
        pruned = trial.should_prune()
        study.tell(trial, state=TrialState.FAIL)
        return pruned

    assert decided({})  # low at the first rung: stopped there
    assert not decided({PROMOTED_AT: 50})  # a continued probe whose probe stopped there: judged with every probe


@pytest.mark.parametrize("overrides,bad", [
    (["search.probe.trials=3", "search.probe.keep=4"], "keep=4"),
    (["search.probe.trials=4", "search.probe.epochs=0"], "epochs=0"),
    (["search.probe.trials=25", "study.n_trials=26"], "trials=25"),
    (["search.probe.trials=4", "study.objectives=[f1,total_train_seconds]"], "study.objectives"),
])
def test_a_bad_probe_config_is_refused_before_training(compose_cfg, overrides, bad):
    with pytest.raises(ConfigError, match=rf"search\.probe.*{bad}.*allowed"):
        validate(compose_cfg(*overrides))


def test_probes_enter_the_study_definition_only_when_on(compose_cfg):
    assert not any(k.startswith("search.probe") for k in definition(compose_cfg()))
    assert definition(compose_cfg("search.probe.trials=6"))["search.probe.trials"] == 6


def test_a_budget_smaller_than_the_bracket_still_ends_with_a_continued_probe(compose_cfg):
    # Half an epoch of budget: spent by the first probe, yet a study of stopped probes would have no result.
    cfg = compose_cfg(*TINY, "task=stsb", *ONE_EPOCH, "search.probe.trials=3", "search.probe.keep=1",
                      "search.probe.epochs=0.5", "study.budget_epochs=0.5", "study.n_trials=30")
    run_study(cfg)
    trials = load(cfg.study.storage, cfg.study.name).trials
    assert [PROBE in t.user_attrs for t in trials] == [True, True, True, False]
    assert trials[-1].state == TrialState.COMPLETE and CONTINUES in trials[-1].user_attrs  # then the budget stops it


def test_the_best_stopped_probes_are_continued_not_one_that_failed(tmp_path):
    from types import SimpleNamespace

    from sweeper.search.probes import before_ask
    from sweeper.study.faults import own_failures

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/p.db", direction="minimize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    for lr, value, state in ((1e-4, 0.5, TrialState.PRUNED), (2e-4, 0.1, TrialState.FAIL),
                             (3e-4, 0.3, TrialState.PRUNED), (4e-4, 0.4, TrialState.PRUNED)):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr}, distributions=dist, intermediate_values={10: value}, state=state,
            user_attrs={PROBE: 0.33, "fail_cause": "trial"} if state == TrialState.FAIL else {PROBE: 0.33}))
    probe = SimpleNamespace(trials=4, keep=2, epochs=0.33)
    own = own_failures(study.get_trials())
    assert own == {1}  # the failed probe's own fault: it counts as a probe, but is not continued
    before_ask(study, study.get_trials(), probe, own)
    before_ask(study, study.get_trials(), probe, own)  # once per study
    queued = [study.ask(dist) for _ in study.get_trials(states=(TrialState.WAITING,))]  # as a worker takes them
    assert [(t.params["lr"], t.user_attrs[CONTINUES], t.user_attrs[PROMOTED_AT]) for t in queued] == [
        (3e-4, 2, 10), (4e-4, 3, 10)]  # lowest values first (minimized), the failed 0.1 skipped
