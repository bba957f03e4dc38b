"""What defines a study, in-process: which keys count, how differences read, and load_study (what every
worker calls) refusing a different config, accepting safe changes, adopting a study made before."""
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, load
from sweeper.errors import ConfigError
from sweeper.job import run_study
from sweeper.study.definition import SAFE, check_accept, definition, differences, refusal, stored
from sweeper.study.run import load_study
from sweeper.study.storage import open_storage


def attrs(cfg) -> dict:
    return load(cfg.study.storage, cfg.study.name).user_attrs


def test_the_definition_holds_resolved_values(compose_cfg):
    d = definition(compose_cfg(*TINY))
    assert Path(d["model.path"]).is_absolute() and (Path(d["model.path"]) / "config.json").exists()
    assert d["task.max_train_samples"] == 64 and d["task.max_eval_samples"] == 32 and d["seed"] == 42
    assert d["search.space.train.batch_size"] == "CategoricalDistribution(choices=(8, 16, 32))"
    assert "optimizer.lr" not in d and "train.epochs" not in d  # the space sets them
    assert not [k for k in d if k.startswith(("model.pooling", "model.reinit", "optimizer.schedule"))]  # neutral
    assert d["pruner._target_"] == "sweeper.search.pruning.PlateauHalvingPruner"
    assert d["train.precision"] == "auto" and d["study.directions"] == ["maximize"]
    assert d["data.content"].startswith("sha256:")
    assert not [k for k in d if k.startswith(("study.n_trials", "train.progress", "train.eval_batch_size"))]


@pytest.mark.parametrize("override", [
    "study.n_trials=9", "train.progress=true", "train.eval_batch_size=16", "train.log_every=5", "train.compile=true",
    "study.keep_checkpoints=all", "study.max_retries=1", "study.max_failed_fraction=0.9", "study.startup_trials=1",
    "study.heartbeat_interval=5", "study.grace_period=60", "search.enqueue_portfolio=false", "out_dir=/elsewhere",
    "study.storage=sqlite:////elsewhere/s.db", "study.accept=[pruner]",
])
def test_keys_that_do_not_change_results_are_not_part_of_it(compose_cfg, override):
    assert differences(definition(compose_cfg(*TINY)), definition(compose_cfg(*TINY, override))) == []


@pytest.mark.parametrize("override,key,old,new", [
    ("task.max_train_samples=48", "task.max_train_samples", 64, 48),
    ("task.max_eval_samples=null", "task.max_eval_samples", 32, None),
    ("task.max_length=128", "task.max_length", None, 128),
    ("task=sst2", "task.name", "mrpc", "sst2"),
    ("model.path=/elsewhere/model", "model.path", None, "/elsewhere/model"),
    ("model=minilm", "model.random_init", True, False),
    ("optimizer=adamw-warmup", "optimizer.warmup_ratio", 0.0, 0.1),
    ("search.space.optimizer.lr=5e-5", "search.space.optimizer.lr",
     "FloatDistribution(high=0.0002, log=True, low=1e-05, step=None)", 5e-5),
    ("search.space.train.epochs=1", "search.space.train.epochs", "IntDistribution(high=3, log=False, low=1, step=1)",
     1),
    ("search.space.train.batch_size=8", "search.space.train.batch_size", "CategoricalDistribution(choices=(8, 16, 32))",
     8),
    ("model.pooling=mean", "model.pooling", None, "mean"),
    ("optimizer.layer_decay=0.8", "optimizer.layer_decay", None, 0.8),
    ("train.keep_best=true", "train.keep_best", None, True),
    ("search.space.model.reinit_layers=range(0,2)", "search.space.model.reinit_layers", None,
     "IntDistribution(high=2, log=False, low=0, step=1)"),
    ("pruner=plateau", "pruner._target_", "sweeper.search.pruning.PlateauHalvingPruner",
     "sweeper.search.pruning.PlateauMedianPruner"),
    ("train.precision=no", "train.precision", "auto", "no"),
    ("train.group_by_length=false", "train.group_by_length", True, False),
    ("train.cpu_fastpath=false", "train.cpu_fastpath", True, False),
    ("seed=1", "seed", 42, 1),
])
def test_keys_that_change_results_are(compose_cfg, override, key, old, new):
    before, after = definition(compose_cfg(*TINY)), definition(compose_cfg(*TINY, override))
    diffs = {k: (o, n) for k, o, n in differences(before, after)}
    assert key in diffs
    if old is not None:
        assert diffs[key] == (old, new)
    assert diffs[key][1] == new


def test_the_same_data_under_another_path_is_the_same_study(compose_cfg, glue_dir, tmp_path):
    copy = tmp_path / "glue"
    shutil.copytree(Path(glue_dir) / "mrpc", copy / "mrpc")
    here, there = (definition(compose_cfg(*TINY, f"data_dir={d}")) for d in (glue_dir, copy))
    assert differences(here, there) == []
    train = next((copy / "mrpc").glob("train-*.parquet"))
    train.write_bytes(train.read_bytes() + b"\0")  # other content under the same name
    diffs = differences(here, definition(compose_cfg(*TINY, f"data_dir={copy}")))
    assert [k for k, _, _ in diffs] == ["data.content"]
    hub = differences(here, definition(compose_cfg(*TINY, "data_dir=null")))
    assert hub == [("data.content", here["data.content"], "Hub nyu-mll/glue mrpc")]


def test_the_refusal_names_every_key_both_values_and_the_ways_on():
    old = {"task.max_train_samples": None, "search.space.train.epochs": "I(1, 3)", "pruner._target_": "M",
           "pruner.n_warmup_steps": 0}
    new = {"task.max_train_samples": 64, "search.space.train.epochs": "I(1, 1)", "pruner._target_": "H",
           "pruner.min_resource": 1}
    message = refusal("mrpc-minilm", differences(old, new), [])
    assert message.startswith("study mrpc-minilm was created with another definition: "
                              "task.max_train_samples: stored null, now 64; search.space.train.epochs: stored I(1, 3), "
                              "now I(1, 1); "
                              "pruner._target_: stored M, now H; pruner.min_resource: stored (absent), now 1; "
                              "pruner.n_warmup_steps: stored 0, now (absent); allowed: run it under a new "
                              "study.name (e.g. study.name=mrpc-minilm-2)")
    assert message.endswith("study.accept may take search.space, pruner, not task.max_train_samples")
    safe_only = refusal("s", differences(old, {**new, "task.max_train_samples": None}), [])
    assert safe_only.endswith("or accept the change with study.accept=[search.space,pruner]")
    assert refusal("s", differences(old, {**new, "task.max_train_samples": None}), ["search.space", "pruner"]) is None


@pytest.mark.parametrize("entry,ok", [
    ("pruner", True), ("train", True), ("search.space", True), ("search.space.train.epochs", True),
    ("search", True), ("model.path", True), ("task.max_train_samples", False), ("optimizer", False),
    ("seed", False), ("data.content", False), ("model", False),
])
def test_only_safe_keys_can_be_accepted(compose_cfg, entry, ok):
    now = definition(compose_cfg(*TINY))
    if ok:
        check_accept([entry], now)
    else:
        with pytest.raises(ConfigError, match=rf"^study.accept=\[{entry}\]: .*; allowed: {', '.join(SAFE)}"):
            check_accept([entry], now)


def test_a_worker_with_another_config_cannot_join_and_writes_nothing(compose_cfg):
    cfg = compose_cfg(*TINY)
    load_study(open_storage(cfg.study), cfg)  # creates it, with its definition
    before = attrs(cfg)
    assert stored(before) == definition(cfg) and "torch" in before["recorded"]
    other = compose_cfg(*TINY, "task.max_train_samples=48")
    with pytest.raises(ConfigError, match="task.max_train_samples: stored 64, now 48"):
        load_study(open_storage(other.study), other)
    with pytest.raises(ConfigError, match="task.max_train_samples: stored 64, now 48"):
        run_study(other)
    assert attrs(cfg) == before
    portfolio = len(cfg.search.portfolio)  # the start-up portfolio, queued when the study was created
    assert [t.state for t in load(cfg.study.storage, cfg.study.name).trials] == [TrialState.WAITING] * portfolio


def test_a_study_that_stored_the_pruner_under_its_old_module_path_resumes(compose_cfg):
    cfg = compose_cfg(*TINY, "pruner=plateau")
    study = load_study(open_storage(cfg.study), cfg)
    pruner = dict(study.user_attrs["pruner"], _target_="sweeper.pruning.PlateauMedianPruner")  # before the regroup
    study.set_user_attr("pruner", pruner)
    load_study(open_storage(cfg.study), cfg)  # the same class: no refusal
    assert attrs(cfg)["pruner"]["_target_"] == "sweeper.pruning.PlateauMedianPruner"  # the record is left as it was


def test_an_accepted_change_becomes_the_definition_and_is_noted(compose_cfg, caplog):
    cfg = compose_cfg(*TINY, "pruner=plateau")
    load_study(open_storage(cfg.study), cfg)
    changed = compose_cfg(*TINY, "pruner=none", "search.space.train.epochs=range(1,2)",
                          "study.accept=[pruner,search.space]")
    with caplog.at_level("WARNING"):
        load_study(open_storage(changed.study), changed)
    now = attrs(cfg)
    assert stored(now) == definition(changed)
    change = "from trial 1: pruner._target_: sweeper.search.pruning.PlateauMedianPruner -> optuna.pruners.NopPruner"
    assert change in now["changes"]
    epochs = ("search.space.train.epochs: IntDistribution(high=3, log=False, low=1, step=1) -> "
              "IntDistribution(high=2, log=False, low=1, step=1)")
    assert f"from trial 1: {epochs}" in now["changes"]  # after the queued start
    assert f"mrpc-tiny: study.accept lets these change from trial 1 on: {epochs}; " in caplog.text
    with pytest.raises(ConfigError, match="pruner._target_: stored optuna.pruners.NopPruner, now "):
        load_study(open_storage(cfg.study), cfg)  # the old command is now the different one


def test_a_study_from_before_definitions_adopts_this_one_with_a_warning(compose_cfg, caplog):
    cfg = compose_cfg(*TINY, "study.n_trials=1")
    old = optuna.create_study(storage=cfg.study.storage, study_name=cfg.study.name, direction="maximize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-4, log=True)}
    old.add_trial(optuna.create_trial(state=TrialState.COMPLETE, value=0.5, params={"lr": 5e-5}, distributions=dist))
    with caplog.at_level("WARNING"):
        run_study(cfg)  # complete already: nothing trains
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["study mrpc-tiny has no stored definition (made before sweeper stored one); storing this run's"]
    assert stored(attrs(cfg)) == definition(cfg)
    rows = (Path(cfg.out_dir) / cfg.study.name / "study.csv").read_text().splitlines()
    assert rows[0] == "attribute,key,value" and "task,max_train_samples,64" in rows and "seed,,42" in rows
