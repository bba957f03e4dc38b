"""The search space as the user declares it: hydra-optuna-sweeper's grammar compiled to Optuna's distributions,
refusals of keys and ranges that cannot work, a custom hook for conditional parameters, parameters named by their
config keys from the study to best.yaml, and a study made before the space existed still resuming."""
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import TINY, compose_config, load
from sweeper.errors import ConfigError
from sweeper.search import grammar, space
from sweeper.validate import validate

FIXTURE = Path(__file__).parent / "fixtures" / "study-0.1.0.db"  # made by sweeper 0.1 (tests/fixtures/README.md)


@pytest.mark.parametrize("entry,expected", [
    ("interval(0, 0.3)", FloatDistribution(0.0, 0.3)),
    ("tag(log, interval(1e-5, 3e-4))", FloatDistribution(1e-5, 3e-4, log=True)),
    ("range(1, 10)", IntDistribution(1, 10)),  # the upper bound included, as hydra-optuna-sweeper reads it
    ("range(2, 10, 2)", IntDistribution(2, 10, step=2)),
    ("tag(log, range(1, 64))", IntDistribution(1, 64, log=True)),
    ("range(0.0, 0.3, 0.1)", FloatDistribution(0.0, 0.3, step=0.1)),
    ("choice(8, 16, 32)", CategoricalDistribution([8, 16, 32])),
    ("choice(linear, cosine)", CategoricalDistribution(["linear", "cosine"])),
    ("choice(true, false)", CategoricalDistribution([True, False])),
    ("cosine", "cosine"), (0.1, 0.1), ("3", 3),  # a plain value is fixed
])
def test_the_grammar_compiles_to_optunas_distributions(entry, expected):
    assert grammar.parse("k", entry) == expected


@pytest.mark.parametrize("entry,named", [
    ("interval(0.3, 0.1)", "low 0.3 >= high 0.1"),
    ("interval(0.1, 0.1)", "low 0.1 >= high 0.1"),
    ("tag(log, interval(0, 1e-3))", "log scale from 0"),
    ("range(5, 2)", "low 5 > high 2"),
    ("range(1, 10, 4)", "step 4 does not divide 10 - 1"),
    ("choice(8, 8)", "a choice given twice"),
    ("interval(1e-5", "allowed: interval(a, b)"),
])
def test_an_empty_or_inverted_range_is_refused_in_one_line(entry, named):
    with pytest.raises(ConfigError, match="search.space.k=") as e:
        grammar.parse("k", entry)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_a_space_written_flat_and_nested_is_one_space_and_the_nested_entry_wins():
    flat = grammar.flatten({"optimizer.lr": "a", "train": {"epochs": "b"}, "model": {"dropout": {"hidden": 0.1}}})
    assert flat == {"optimizer.lr": "a", "train.epochs": "b", "model.dropout.hidden": 0.1}
    assert grammar.flatten({"optimizer.lr": "yaml", "optimizer": {"lr": "command line"}}) == {
        "optimizer.lr": "command line"}


@pytest.mark.parametrize("override,named", [
    ("search.space.optimizer.lrr=interval(1e-5, 1e-4)", "search.space.optimizer.lrr: no such config key; keys "
                                                         "under optimizer: name, lr, optimizer"),
    ("search.space.task.max_train_samples=range(10, 20)", "the task and its data define what the study measures"),
    ("search.space.seed=range(1, 3)", "the seed is the study's"),
    ("search.space.data_dir=choice(a, b)", "the data defines what the study measures"),
    ("search.space.model.path=choice(a, b)", "the weights are read once per study"),
    ("search.space.train.epochs=interval(1, 3)", "does not fit the config"),  # a float for an int key
    ("search.space.optimizer.warmup_ratio=interval(0, 1.5)", "optimizer.warmup_ratio=1.5; allowed"),
    ("search.space.model.pooling=choice(cls, max)", "does not fit the config"),
    ("search.space.optimizer.lr=interval(2e-4, 1e-5)", "low 0.0002 >= high 1e-05"),
])
def test_a_bad_entry_is_refused_before_anything_runs(override, named):
    with pytest.raises(ConfigError) as e:
        validate(compose_config(*TINY, override))
    assert named in str(e.value), str(e.value)


def test_the_default_space_is_the_three_knobs_and_narrows_from_the_command_line():
    s = space.compile_space(compose_config().search)
    assert s == {"optimizer.lr": FloatDistribution(1e-5, 2e-4, log=True), "train.epochs": IntDistribution(1, 3),
                 "train.batch_size": CategoricalDistribution([8, 16, 32])}
    narrowed = space.compile_space(compose_config("search.space.optimizer.lr=tag(log, interval(3e-5, 1e-4))",
                                                  "search.space.train.epochs=2",
                                                  "search.space.optimizer.warmup_ratio=interval(0, 0.2)").search)
    assert narrowed["optimizer.lr"] == FloatDistribution(3e-5, 1e-4, log=True)
    assert narrowed["train.epochs"] == 2 and narrowed["optimizer.warmup_ratio"] == FloatDistribution(0, 0.2)


def conditional(trial, cfg):
    """A custom hook: warmup only where the schedule decays (test_a_custom_hook_adds_conditional_parameters)."""
    if trial.params["optimizer.schedule"] != "constant":
        trial.suggest_float("optimizer.warmup_ratio", 0.0, 0.2)
    return {"train.keep_best": trial.params["train.epochs"] > 2}


def test_a_custom_hook_adds_conditional_parameters_named_by_config_keys():
    cfg = compose_config(*TINY, "search.space.optimizer.schedule=choice(linear, constant)",
                         "search.custom={_target_:test_space.conditional}")
    validate(cfg)
    compiled, hook = space.compile_space(cfg.search), space.custom(cfg.search)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        values = space.suggest(trial, compiled, cfg, hook=hook)
        run_cfg = space.apply(cfg, values)
        seen.add(values["optimizer.schedule"])
        assert ("optimizer.warmup_ratio" in trial.params) == (values["optimizer.schedule"] != "constant")
        assert run_cfg.train.keep_best == (values["train.epochs"] > 2)
        assert run_cfg.optimizer.lr == values["optimizer.lr"] == trial.params["optimizer.lr"]
        study.tell(trial, 0.5)
    assert seen == {"linear", "constant"}


def test_a_hook_suggesting_a_key_that_cannot_change_is_refused():
    cfg = compose_config(*TINY, "search.custom={_target_:test_space.bad_hook}")
    with pytest.raises(ConfigError, match="search.custom suggested.task.max_length: the task"):
        validate(cfg)


def bad_hook(trial, cfg):
    trial.suggest_int("task.max_length", 32, 128)


def test_a_trial_of_any_space_reproduces_from_best_yaml_and_retrains_the_same(compose_cfg, tmp_path):
    from sweeper.job import run_study
    from sweeper.results.retrain import run_retrain

    cfg = compose_cfg(*TINY, "study.n_trials=2", "search.space.train.epochs=1", "train.precision=no",
                      "search.space.optimizer.schedule=choice(linear, cosine)",
                      "search.space.optimizer.warmup_ratio=interval(0, 0.3)",
                      "search.space.model.dropout.hidden=choice(0.0, 0.1)", "search.space.model.pooling=mean",
                      "search.enqueue_portfolio=false", "pruner=none")
    best = run_study(cfg)
    study = load(cfg.study.storage, cfg.study.name)
    trial = study.best_trial
    assert set(trial.params) == {"optimizer.lr", "optimizer.schedule", "optimizer.warmup_ratio",
                                 "model.dropout.hidden", "train.batch_size"}  # the dashboard's names: config keys
    assert trial.user_attrs[space.CONFIG] == {**trial.params, "train.epochs": 1, "model.pooling": "mean"}
    columns = (tmp_path / cfg.study.name / "trials.csv").read_text().splitlines()[0]
    assert "params_optimizer.warmup_ratio" in columns and "params_model.dropout.hidden" in columns
    again = compose_cfg(f"hydra.searchpath=[file://{tmp_path}]", f"+{cfg.study.name}=best", "train.precision=no",
                        f"study.storage=sqlite:///{tmp_path}/again.db")
    assert space.compile_space(again.search) == trial.user_attrs[space.CONFIG]  # every entry fixed
    assert run_study(again) == best  # the same configuration, the same value
    retrained = run_retrain(compose_cfg(*TINY, "search.space.train.epochs=1", "train.precision=no", "retrain.seeds=1",
                                        "search.space.optimizer.schedule=choice(linear, cosine)",
                                        "search.space.optimizer.warmup_ratio=interval(0, 0.3)",
                                        "search.space.model.dropout.hidden=choice(0.0, 0.1)",
                                        "search.space.model.pooling=mean", "search.enqueue_portfolio=false",
                                        "pruner=none"))
    assert retrained == best  # seed 42 is the trial's own


def test_a_changed_space_refuses_to_resume_unless_accepted_and_a_changed_choice_never(compose_cfg):
    from sweeper.study.definition import verify
    from sweeper.study.run import load_study
    from sweeper.study.storage import open_storage

    cfg = compose_cfg(*TINY)
    storage = open_storage(cfg.study)
    load_study(storage, cfg)
    wider = compose_cfg(*TINY, "search.space.optimizer.lr=tag(log, interval(1e-5, 3e-4))")
    with pytest.raises(ConfigError, match=r"search.space.optimizer.lr: stored FloatDistribution\(.*high=0.0002.*\), "
                                          r"now FloatDistribution\(.*high=0.0003"):
        verify(storage, wider)
    assert verify(storage, compose_cfg(*TINY, "search.space.optimizer.lr=tag(log, interval(1e-5, 3e-4))",
                                       "study.accept=[search.space]"))
    added = compose_cfg(*TINY, "search.space.optimizer.warmup_ratio=interval(0, 0.2)", "study.accept=[search.space]")
    assert verify(storage, added)  # a new dimension: old trials simply lack it
    with pytest.raises(ConfigError, match="study.accept may take .* not search.space.train.batch_size|allowed: run it"):
        verify(storage, compose_cfg(*TINY, "search.space.train.batch_size=choice(8, 16)",
                                    "study.accept=[search.space]"))


def test_a_config_of_the_users_own_directory_is_accepted_like_a_shipped_one(tmp_path):
    from sweeper.cli import preflight

    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "mine.yaml").write_text(
        "defaults:\n  - default\n\nspace:\n  optimizer:\n    warmup_ratio: interval(0, 0.2)\n")
    (tmp_path / "task").mkdir()
    shutil.copy(Path(__file__).parent.parent / "conf" / "task" / "rte.yaml", tmp_path / "task" / "myrte.yaml")
    cfg = compose_config(f"hydra.searchpath=[file://{tmp_path}]", "search=mine", "task=myrte")
    assert space.compile_space(cfg.search)["optimizer.warmup_ratio"] == FloatDistribution(0, 0.2)
    with pytest.raises(ConfigError, match=r"unknown search 'nope'; allowed: default, .*wide"):
        preflight([f"hydra.searchpath=[file://{tmp_path}]", "search=nope", "model=tiny"])


def test_a_study_made_by_sweeper_0_1_resumes_with_its_parameter_names(glue_dir, tmp_path):
    from sweeper.job import run_study
    from sweeper.results.report import best_overrides

    with sqlite3.connect(FIXTURE) as src, sqlite3.connect(tmp_path / "old.db") as dst:
        src.backup(dst)
    storage = f"sqlite:///{tmp_path}/old.db"
    cfg = compose_config(f"data_dir={glue_dir}", f"out_dir={tmp_path}", f"study.storage={storage}", *TINY,
                         "search.portfolio=[{optimizer.lr:5e-5,train.epochs:1,train.batch_size:8}]",
                         "search.space.train.epochs=range(1,1)", "study.n_trials=3", "study.artifacts=null",
                         "study.accept=[model.path]")  # the fixture's venv is not this one
    run_study(cfg)
    study = load(storage, "mrpc-tiny")
    assert len(study.trials) == 3 and all(set(t.params) == {"lr", "epochs", "batch_size"} for t in study.trials)
    assert space.trial_values(study.trials[2]) == {"optimizer.lr": study.trials[2].params["lr"], "train.epochs": 1,
                                                   "train.batch_size": study.trials[2].params["batch_size"]}
    assert "search.space.optimizer.lr=" in " ".join(best_overrides(cfg, space.trial_values(study.trials[0])))


def test_the_cli_quotes_the_grammar_for_hydra_and_shows_the_command_as_typed():
    from sweeper.cli import quote_space, unquote_space

    typed = ["-m", "task=mrpc,sst2", "search.space.optimizer.lr=tag(log, interval(3e-5, 1e-4))",
             "search.space.model.pooling=choice('cls',mean)", "search.space.train.epochs=2", "seed=1"]
    quoted = quote_space(typed)
    assert quoted[2] == "++search.space.optimizer.lr='tag(log, interval(3e-5, 1e-4))'"  # a string, not a sweep
    assert quoted[4] == "++search.space.train.epochs=2" and quoted[:2] == typed[:2] and quoted[5] == "seed=1"
    assert quote_space(quoted) == quoted  # the preflight quotes again what __main__ quoted
    assert unquote_space(quoted) == typed  # the resume line
