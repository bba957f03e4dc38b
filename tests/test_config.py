"""Every config composes; schemas reject typos and wrong types; semantic checks name the bad value."""
import itertools

import pytest
from hydra.errors import ConfigCompositionException

from sweeper.config import choices
from sweeper.errors import ConfigError
from sweeper.validate import validate


@pytest.mark.parametrize("task,model,optimizer", list(itertools.product(
    choices("task"), choices("model"), choices("optimizer"))))
def test_every_task_model_optimizer_composes(compose_cfg, task, model, optimizer):
    cfg = compose_cfg(f"task={task}", f"model={model}", f"optimizer={optimizer}")
    validate(cfg)
    assert cfg.task.name == task and cfg.model.name == model and cfg.optimizer.name == optimizer
    assert cfg.study.name == f"{task}-{model}"
    assert cfg.task.objective in cfg.task.metrics


@pytest.mark.parametrize("sampler", choices("sampler"))
def test_every_sampler_instantiates_with_the_study_seed(compose_cfg, sampler):
    import optuna
    from hydra.utils import instantiate

    cfg = compose_cfg(f"sampler={sampler}")
    validate(cfg)
    assert isinstance(instantiate(cfg.sampler, seed=7), optuna.samplers.BaseSampler)


def test_an_unknown_sampler_is_refused_with_the_allowed_ones(compose_cfg):
    with pytest.raises(ConfigError, match=r"sampler._target_=optuna.samplers.NSGAIISampler; allowed: \['optuna"):
        validate(compose_cfg("sampler._target_=optuna.samplers.NSGAIISampler"))


def test_optunas_epoch_pruners_name_the_fix_with_reports_in_samples(compose_cfg):
    with pytest.raises(ConfigError, match=r"pruner.min_resource=1 with train.evals_per_epoch=3: .*"
                                          r"allowed: train.evals_per_epoch=1"):
        validate(compose_cfg("pruner=hyperband"))


@pytest.mark.parametrize("pruner", choices("pruner"))
def test_every_pruner_instantiates(compose_cfg, pruner):
    import optuna
    from hydra.utils import instantiate

    # Optuna's halving pruners count resources in epochs: they take one report per epoch (README, Pruners).
    epochs = ["train.evals_per_epoch=1"] if pruner in ("hyperband", "successive_halving") else []
    cfg = compose_cfg(f"pruner={pruner}", *epochs)
    validate(cfg)
    assert isinstance(instantiate(cfg.pruner), optuna.pruners.BasePruner)


def test_groups_hold_what_the_product_promises():
    assert {"mrpc", "sst2"} <= set(choices("task"))
    assert {"minilm", "bert-base-uncased", "tiny"} <= set(choices("model"))
    assert {"median", "hyperband", "successive_halving", "none"} <= set(choices("pruner"))


@pytest.mark.parametrize("override", [
    "task.max_train_sample=5",      # typo of max_train_samples
    "study.n_trial=3",              # typo of n_trials
    "study.n_trials=three",         # wrong type
    "train.precision=fp8",          # not a Precision
    "study.keep_checkpoints=some",  # not a KeepCheckpoints
    "train.epochs=1.5",             # int field
    "model.pooling=max",            # not a Pooling
    "optimizer.schedule=step",      # not a Schedule
])
def test_schema_rejects_typos_and_wrong_types(compose_cfg, override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


@pytest.mark.parametrize("overrides,needle", [
    (["search.space.optimizer.lr=tag(log, interval(1e-3, 2e-4))"], "low 0.001 >= high 0.0002"),
    (["search.space.train.epochs=range(4,3)"], "low 4 > high 3"),
    (["search.space.train.batch_size=choice(8, 8)"], "a choice given twice"),
    (["study.n_trials=0"], "study.n_trials=0"),
    (["task.objective=auc"], "task.objective=auc"),
    (["task.max_train_samples=0"], "task.max_train_samples=0"),
    (["optimizer.layer_decay=1.2"], "optimizer.layer_decay=1.2; allowed: 0 < layer_decay <= 1"),
    (["model.dropout.hidden=1.0"], "model.dropout.hidden=1.0; allowed"),
    (["model.reinit_layers=-1"], "model.reinit_layers=-1"),
    (["optimizer.max_grad_norm=0"], "optimizer.max_grad_norm=0"),
    (["search.space.train.epochs=0"], "train.epochs=0 train.batch_size=8"),
    (["train.keep_best=true", "study.objectives=[f1,loss]"], "train.keep_best=true with objectives"),
])
def test_validate_names_the_bad_value(compose_cfg, overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(*overrides))
    assert needle in str(e.value), str(e.value)


def test_search_dimensions_can_be_fixed(compose_cfg):
    from sweeper.search.space import compile_space

    cfg = compose_cfg("search.space.optimizer.lr=5e-5", "search.space.train.batch_size=16",
                      "search.space.train.epochs=2")
    validate(cfg)
    assert compile_space(cfg.search) == {"optimizer.lr": 5e-5, "train.batch_size": 16, "train.epochs": 2}
