"""Hydra's sweep grammar as hydra-optuna-sweeper reads it, compiled to Optuna's distribution classes (a pasted
`params:` block means the same): interval(a, b) is a float in [a, b]; `range`'s upper bound is *included* (Hydra's
basic sweeper excludes it); a float range has a step; choice(...) is categorical; a plain value is fixed. Additions:
tag(log, range(a, b)) is a log-scaled integer; a step range must divide."""
from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from sweeper.errors import ConfigError


def flatten(node, prefix: str = "") -> dict:
    """{dotted key: entry} of a space written flat (`optimizer.lr: ...`), nested (`optimizer: {lr: ...}`) or both;
    a key given both ways takes the nested entry, which is how a command-line override lands."""
    flat, nested = {}, {}
    for key, value in (node or {}).items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            nested.update(flatten(value, f"{full}."))
        else:
            flat[full] = value
    return {**flat, **nested}


def parse(key: str, entry) -> BaseDistribution | object:
    """One entry: a distribution, or the fixed value itself."""
    if not isinstance(entry, str):
        return entry
    try:
        override = OverridesParser.create().parse_override(f"{key}={entry}")
    except Exception as e:
        raise ConfigError(f"search.space.{key}={entry}: {str(e).splitlines()[0]}; allowed: interval(a, b), "
                          "tag(log, interval(a, b)), range(a, b[, step]), choice(x, y, ...) or a fixed value") from None
    if not override.is_sweep_override():
        return override.value()
    return distribution(key, entry, override.value())


def distribution(key: str, entry: str, sweep) -> BaseDistribution:
    def bad(why: str, allowed: str) -> ConfigError:
        return ConfigError(f"search.space.{key}={entry}: {why}; allowed: {allowed}")

    log = "log" in sweep.tags
    if isinstance(sweep, ChoiceSweep) or (isinstance(sweep, RangeSweep) and sweep.shuffle):
        choices = list(sweep.list) if isinstance(sweep, ChoiceSweep) else list(sweep)
        if not choices:
            raise bad("no choices", "choice(x, y, ...) with one or more values")
        if len(set(map(repr, choices))) < len(choices):
            raise bad("a choice given twice", "distinct choices")
        return CategoricalDistribution(choices)
    if isinstance(sweep, IntervalSweep):
        low, high = float(sweep.start), float(sweep.end)
        if not low < high:
            raise bad(f"low {low:g} >= high {high:g}", "interval(low, high) with low < high")
        if log and low <= 0:
            raise bad(f"log scale from {low:g}", "tag(log, interval(low, high)) with 0 < low < high")
        return FloatDistribution(low, high, log=log)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step is None or step <= 0:
            raise bad(f"step {step}", "range(low, high[, step]) with step > 0")
        if not start <= stop:
            raise bad(f"low {start:g} > high {stop:g} (the upper bound is included)",
                      "range(low, high) with low <= high")
        if isinstance(start, float) or isinstance(stop, float) or isinstance(step, float):
            if log:
                raise bad("a log-scaled float range", "tag(log, interval(low, high)) for a log-scaled float")
            if abs(round((stop - start) / step) * step - (stop - start)) > 1e-9 * max(1.0, abs(stop)):
                raise bad(f"step {step:g} does not divide {stop:g} - {start:g}", "a step that divides the range")
            return FloatDistribution(float(start), float(stop), step=float(step))
        if (stop - start) % step:
            raise bad(f"step {step} does not divide {stop} - {start}", "a step that divides the range")
        if log and (start < 1 or step != 1):
            raise bad("a log-scaled range from below 1 or with a step", "tag(log, range(low, high)) with low >= 1")
        return IntDistribution(int(start), int(stop), log=log, step=int(step))
    raise bad(f"{type(sweep).__name__} is not a distribution", "interval, range or choice")
