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
