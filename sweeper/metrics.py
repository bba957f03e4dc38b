"""Predictions -> metrics, computed locally with scikit-learn (evaluate.load needs the network)."""
from __future__ import annotations

from sklearn.metrics import accuracy_score, f1_score

METRICS = {
    "accuracy": accuracy_score,
    # F1 of the positive class (label 1), as GLUE reports it for MRPC and QQP.
    "f1": lambda y, p: f1_score(y, p, pos_label=1, average="binary", zero_division=0),
}


def compute_metrics(labels, predictions, names) -> dict[str, float]:
    return {name: float(METRICS[name](labels, predictions)) for name in names}


def trivial_value(labels, objective: str) -> float:
    """The objective of the best constant prediction (MRPC F1: 0.812, everything "equivalent"): what a
    model that has learned nothing yet scores, and so no evidence for or against its hyperparameters."""
    import numpy as np

    labels = np.asarray(labels)
    return max(compute_metrics(labels, np.full_like(labels, c), [objective])[objective] for c in np.unique(labels))
