"""Predictions -> metrics, computed locally with scikit-learn and scipy (evaluate.load needs the network),
and which way each figure a study can optimize is better."""
from __future__ import annotations


def _f1(y, p):
    from sklearn.metrics import f1_score

    # F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP.
    return f1_score(y, p, pos_label=1, average="binary", zero_division=0)


def _sklearn(name):
    def metric(y, p):
        import sklearn.metrics

        return getattr(sklearn.metrics, name)(y, p)
    return metric


def _scipy(name):
    def metric(y, p):
        import numpy as np
        import scipy.stats

        # A constant prediction (an untrained regressor) has no correlation: 0, not NaN, so the pruner can rank it.
        if np.ptp(p) == 0 or np.ptp(y) == 0:
            return 0.0
        return getattr(scipy.stats, name)(y, p)[0]
    return metric


# name -> (function of labels and predictions, direction). GLUE's: CoLA matthews_correlation, STS-B
# pearson/spearman, MRPC and QQP f1/accuracy, the rest accuracy.
METRICS = {
    "accuracy": (_sklearn("accuracy_score"), "maximize"),
    "f1": (_f1, "maximize"),
    "matthews_correlation": (_sklearn("matthews_corrcoef"), "maximize"),
    "pearson": (_scipy("pearsonr"), "maximize"),
    "spearman": (_scipy("spearmanr"), "maximize"),
    "mse": (_sklearn("mean_squared_error"), "minimize"),
    "mae": (_sklearn("mean_absolute_error"), "minimize"),
}
REGRESSION = {"pearson", "spearman", "mse", "mae"}  # the others need class predictions
# What the loop measures besides the task's metrics, each epoch; total_train_seconds sums the epochs so far.
FIGURES = {"loss": "minimize", "train_seconds": "minimize", "total_train_seconds": "minimize",
           "eval_seconds": "minimize", "samples_per_s": "maximize", "padded_fraction": "minimize"}


def compute_metrics(labels, predictions, names) -> dict[str, float]:
    return {name: float(METRICS[name][0](labels, predictions)) for name in names}


def objectives(task, study) -> list[str]:
    """What the study optimizes: study.objectives, or the task's objective alone."""
    return list(study.objectives) or [task.objective]


def measured(task) -> list[str]:
    """Every figure a trial stores: the task's metrics, those of its extra evaluation splits, the loop's."""
    return [*task.metrics, *(f"{s}_{m}" for s in task.extra_eval_splits for m in task.metrics), *FIGURES]


def direction(name: str) -> str:
    """maximize or minimize; a metric of an extra evaluation split goes the way of the metric."""
    if name in FIGURES:
        return FIGURES[name]
    for metric, (_, way) in METRICS.items():
        if name == metric or name.endswith("_" + metric):
            return way
    raise KeyError(name)


def improves(name: str, new: float, old: float) -> bool:
    """Whether `new` beats `old` as a value of `name`, in that figure's direction (mse, loss: lower)."""
    return new < old if direction(name) == "minimize" else new > old


def trivial_value(labels, objective: str) -> float | None:
    """The objective of the best constant prediction (MRPC F1: 0.812, everything "equivalent"): what a
    classifier that has learned nothing yet scores, and so no evidence for or against its hyperparameters.
    None for an objective that is not a task metric of the evaluation split (loss, seconds: no plateau)."""
    import numpy as np

    if objective not in METRICS:
        return None

    labels = np.asarray(labels)
    return max(compute_metrics(labels, np.full_like(labels, c), [objective])[objective] for c in np.unique(labels))
