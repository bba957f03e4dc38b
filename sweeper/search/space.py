"""The search space: dotted config keys -> Optuna distributions (search.space, in the grammar of
sweeper/search/grammar.py), which keys a trial may set, a trial's draws, and a trial's values -> the config it trains
with."""
from __future__ import annotations

import copy
from collections.abc import Callable

import optuna
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweeper.errors import ConfigError
from sweeper.search.grammar import flatten, parse

# Keys a trial may not change: they define what the study measures, or are the study's own machinery.
_WEIGHTS, _STEPS = "the weights are read once per study", "the pruner's steps are the study's"
FIXED_PER_STUDY = {
    "task": "the task and its data define what the study measures",
    "data_dir": "the data defines what the study measures",
    "seed": "the seed is the study's, for fair comparisons",
    **dict.fromkeys(("model.path", "model.name", "model.random_init", "model.overrides"), _WEIGHTS),
    **dict.fromkeys(("train.evals_per_epoch", "train.eval_subset"), _STEPS),
    "train.precision": "the study's arithmetic is part of its definition",
    **dict.fromkeys(("study", "search", "pruner", "sampler", "verdict", "retrain", "mode", "out_dir", "hydra",
                     "worker"), "the study's machinery, not a trial's"),
}
# The names studies made before the space held config keys gave the three knobs (sweeper 0.1).
LEGACY = {"optimizer.lr": "lr", "train.epochs": "epochs", "train.batch_size": "batch_size"}
CONFIG = "config"  # the trial user attribute of its values: what best.yaml, retrain and the verdict reproduce
_ABSENT = object()


def compile_space(search) -> dict[str, BaseDistribution | object]:
    """search.space as {config key: distribution or fixed value}."""
    space = search.get("space")
    plain = OmegaConf.to_container(space, resolve=True) if OmegaConf.is_config(space) else space
    return {key: parse(key, entry) for key, entry in flatten(plain).items()}


def searched(space: dict) -> dict[str, BaseDistribution]:
    return {k: v for k, v in space.items() if isinstance(v, BaseDistribution)}


def contains(compiled: dict, values: dict, cfg) -> bool:
    """Whether a configuration ({key: value}) lies in the space: searched keys in their distributions, fixed keys at
    their values, other keys at the config's."""
    return all(inside(compiled.get(k, _ABSENT), v, cfg, k) for k, v in values.items())


def inside(entry, value, cfg, key: str) -> bool:
    if isinstance(entry, CategoricalDistribution):
        return value in entry.choices
    if isinstance(entry, (FloatDistribution, IntDistribution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not entry.low <= value <= entry.high:
            return False
        steps = None if entry.step is None else (value - entry.low) / entry.step
        return steps is None or abs(steps - round(steps)) < 1e-9
    if entry is _ABSENT:
        entry = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        entry = getattr(entry, "value", entry)  # an enum's value
    return entry == value


def possible(cfg, key: str) -> list:
    """The values `key` can take in a trial: a categorical's choices, an integer range's every value, a float's
    bounds, a fixed entry's value, or the config's own (a custom hook's draws are not known before the trial)."""
    entry = compile_space(cfg.search).get(key, _ABSENT)
    if isinstance(entry, CategoricalDistribution):
        return list(entry.choices)
    if isinstance(entry, IntDistribution):
        return list(range(entry.low, entry.high + 1, entry.step))
    if isinstance(entry, FloatDistribution):
        return [entry.low, entry.high]
    return [OmegaConf.select(cfg, key) if entry is _ABSENT else entry]


def describe(value) -> object:
    """A space entry as the study's definition and the dashboard show it."""
    return repr(value) if isinstance(value, BaseDistribution) else value


def check_key(cfg, key: str, where: str = "search.space") -> None:
    """A key a trial may set: one that exists in the config and does not define the study."""
    for prefix, why in FIXED_PER_STUDY.items():
        if key == prefix or key.startswith(prefix + "."):
            raise ConfigError(f"{where}.{key}: {why}; allowed: keys of optimizer, train (epochs, batch_size, "
                              "keep_best, ...) and model (pooling, reinit_layers, dropout)")
    if OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is _ABSENT:
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        keys = f"; keys under {parent or 'the config'}: {', '.join(node.keys())}" if OmegaConf.is_dict(node) else ""
        raise ConfigError(f"{where}.{key}: no such config key{keys}")


def check(cfg, validate: Callable = lambda cfg: None) -> dict:
    """The space compiled and every key checked, each bound set once on a copy of the config and `validate`d (a
    wrong type or value fails here, not in a trial); a custom hook (search.custom) run once on a throwaway trial.
    Returns the space."""
    space = compile_space(cfg.search)
    for key, entry in space.items():
        check_key(cfg, key)
        if isinstance(entry, CategoricalDistribution):
            values = list(entry.choices)
        elif isinstance(entry, BaseDistribution):
            values = [entry.low, entry.high]
        else:
            values = [entry]
        for value in values:
            try:
                bound = apply(cfg, {key: value})
            except Exception as e:
                raise ConfigError(f"search.space.{key}: {value!r} does not fit the config: "
                                  f"{str(e).splitlines()[0]}") from None
            try:
                validate(bound)
            except ConfigError as e:
                raise ConfigError(f"search.space.{key} reaches {value!r}: {e}") from None
    hook = custom(cfg.search)
    if hook is not None:
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        values = suggest(trial, space, cfg, hook=hook)
        for key in values:
            check_key(cfg, key, where="search.custom suggested")
        validate(apply(cfg, values))
    return space


def custom(search) -> Callable | None:
    """search.custom: a function called as fn(trial=..., cfg=...) after the space's suggestions; it suggests more
    (conditional parameters, named by config keys) and may return {key: value} to set besides."""
    from hydra.utils import instantiate

    target = search.get("custom")
    if not target:
        return None
    fn = instantiate(target, _partial_=True) if OmegaConf.is_dict(target) else instantiate({"_target_": target,
                                                                                            "_partial_": True})
    return fn


def suggest(trial: optuna.Trial, space: dict, cfg, names: dict | None = None, hook: Callable | None = None) -> dict:
    """A trial's values, {config key: value}: the space's distributions suggested under their parameter names (the
    keys, or `names`' for a study made before), fixed entries, then the custom hook's."""
    names = names or {}
    values = {key: draw(trial, names.get(key, key), entry) if isinstance(entry, BaseDistribution) else entry
              for key, entry in space.items()}
    if hook is not None:
        before = set(trial.params)
        extra = hook(trial=trial, cfg=cfg) or {}
        values.update({k: v for k, v in trial.params.items() if k not in before})
        values.update(extra)
    return values


def draw(trial: optuna.Trial, name: str, d: BaseDistribution):
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_categorical(name, d.choices)


def apply(cfg, values: dict):
    """A copy of cfg with each dotted key set to its value (a trial's config)."""
    out = copy.deepcopy(cfg)
    for key, value in values.items():
        OmegaConf.update(out, key, value, merge=False)
    return out


def trial_values(trial) -> dict:
    """What a trial set, {config key: value}: its stored CONFIG (drawn, fixed and the custom hook's), or for a
    trial of a study made before, its parameters by config key."""
    if CONFIG in trial.user_attrs:
        return dict(trial.user_attrs[CONFIG])
    legacy = {v: k for k, v in LEGACY.items()}
    return {legacy.get(k, k): v for k, v in trial.params.items()}


def param_names(trials) -> dict:
    """{config key: parameter name}: LEGACY's names in a study whose trials used them, else the keys themselves."""
    return LEGACY if any(set(LEGACY.values()) & set(t.params) for t in trials) else {}
