"""Is one configuration better than another, or than the constant prediction? A one-sided test on the difference
of their mean scores over seeds, whose variance has both sources of noise:

- the seeds': each side's sample variance over its runs, s^2 / n (training randomness: initialisation, data order);
- the evaluation set's: a paired bootstrap over its examples (Efron & Tibshirani 1993; Koehn 2004) of the
  difference of the two sides' mean scores, each run's predictions resampled with the same examples. The two
  sides are scored on the same examples, so their sampling errors partly cancel; F1 and MCC are not means of
  per-example scores, so no closed form serves every metric.

The statistic is the difference over the square root of their sum, referred to Student's t with Welch-Satterthwaite
degrees of freedom of the seed part (scipy.stats.t; normal where the seeds agree exactly). Bonferroni: a winner
chosen as the best of k configurations is tested at (1 - confidence) / k, which bounds the chance that any of k
equal configurations would be called better; `looks` more for a test repeated after adding seeds."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from sweeper.train.metrics import compute_metrics, direction

BOOTSTRAP = 1000  # resamples of the evaluation set: the variance's relative error is about sqrt(2 / 1000) = 4%


@dataclass
class Comparison:
    difference: float  # mean(a) - mean(b), in the metric's better direction (> 0: a is better)
    low: float  # the one-sided lower confidence bound of the difference, at the corrected level
    p: float  # one-sided p-value of "a is no better than b"
    alpha: float  # the corrected level the p-value is held against
    seed_std: float  # the standard error of the difference from the seeds alone
    example_std: float  # ... from the evaluation set alone

    @property
    def better(self) -> bool:
        return self.p < self.alpha


def example_variance(metric: str, labels, a: list, b: list | None, seed: int = 0) -> float:
    """The bootstrap variance, over the evaluation set's examples, of mean_runs metric(a) - mean_runs metric(b):
    `a` and `b` are lists of per-run predictions on `labels`' examples (b None: the best constant prediction)."""
    labels = np.asarray(labels)
    a = [np.asarray(p) for p in a]
    b = [np.asarray(p) for p in b] if b is not None else [constant(metric, labels)]
    idx = np.random.default_rng(seed).integers(0, len(labels), (BOOTSTRAP, len(labels)))
    y = labels[idx]

    def mean_score(runs) -> np.ndarray:  # per resample, the runs' mean score
        return np.mean([resampled(metric, y, p[idx]) for p in runs], axis=0)

    return float(np.var(mean_score(a) - mean_score(b), ddof=1))


def resampled(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The metric of each row of (resamples, examples) labels and predictions: vectorized for accuracy and for binary
    F1 and MCC (as scikit-learn computes them, 0 where undefined), else scikit-learn's per row."""
    if metric == "accuracy":
        return (y == p).mean(axis=1)
    if metric in ("f1", "matthews_correlation") and set(np.unique(y)) | set(np.unique(p)) <= {0, 1}:
        tp, tn = ((p == 1) & (y == 1)).sum(1), ((p == 0) & (y == 0)).sum(1)
        fp, fn = ((p == 1) & (y == 0)).sum(1), ((p == 0) & (y == 1)).sum(1)
        if metric == "f1":
            den = 2 * tp + fp + fn
            return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)
        den = np.sqrt((tp + fp).astype(float) * (tp + fn) * (tn + fp) * (tn + fn))
        return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)
    return np.array([compute_metrics(yi, pi, [metric])[metric] for yi, pi in zip(y, p, strict=True)])


def constant(metric: str, labels) -> np.ndarray:
    """The constant prediction that scores best on `labels` (train/metrics.py's trivial value)."""
    labels = np.asarray(labels)
    scores = {c: compute_metrics(labels, np.full_like(labels, c), [metric])[metric] for c in np.unique(labels)}
    best = max(scores, key=scores.get) if direction(metric) == "maximize" else min(scores, key=scores.get)
    return np.full_like(labels, best)


def compare(metric: str, a: list[float], b: list[float], example_var: float, k: int = 1,
            confidence: float = 0.95, looks: int = 1) -> Comparison:
    """Whether scores `a` (runs of one configuration) beat `b` (another's; [value] for the constant prediction,
    which has no seed noise) at `confidence`, for a winner chosen among `k` configurations, at the last of `looks`
    tests of the same question."""
    from scipy import stats

    sign = 1 if direction(metric) == "maximize" else -1
    diff = sign * (statistics.fmean(a) - statistics.fmean(b))
    va = statistics.variance(a) / len(a) if len(a) > 1 else 0.0
    vb = statistics.variance(b) / len(b) if len(b) > 1 else 0.0
    total = va + vb + example_var
    alpha = (1 - confidence) / (k * looks)
    if total == 0:  # nothing varies: a difference is certain, none is none
        return Comparison(diff, diff, 0.0 if diff > 0 else 1.0, alpha, 0.0, 0.0)
    seeds = va ** 2 / (len(a) - 1) if len(a) > 1 else 0.0
    seeds += vb ** 2 / (len(b) - 1) if len(b) > 1 else 0.0
    df = total ** 2 / seeds if seeds > 0 else math.inf
    se = math.sqrt(total)
    p = float(stats.t.sf(diff / se, df))
    low = diff - float(stats.t.ppf(1 - alpha, df)) * se
    return Comparison(diff, low, p, alpha, math.sqrt(va + vb), math.sqrt(example_var))
