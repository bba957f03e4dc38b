"""The end of a study: counts, best value and parameters, every trial as CSV, the dashboard command."""
from __future__ import annotations

import logging
from pathlib import Path

from optuna.trial import TrialState

log = logging.getLogger(__name__)


def summarize(study, study_cfg, study_dir: Path) -> float | None:
    """Log the study's outcome (a multi-objective study: its Pareto front), write its trials to
    <study_dir>/trials.csv (with a `pareto` column when multi-objective); returns the best value."""
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    log.info("study %s: %d complete, %d pruned, %d failed (study.n_trials=%d finished wanted)",
             study_cfg.name, n[TrialState.COMPLETE], n[TrialState.PRUNED], n[TrialState.FAIL], study_cfg.n_trials)
    best = None
    multi = len(study.directions) > 1
    if n[TrialState.COMPLETE] and not multi:
        best = study.best_trial
        log.info("best value %.4f (trial %d), params %s", best.value, best.number, best.params)
    front = {t.number: t for t in study.best_trials} if n[TrialState.COMPLETE] and multi else {}
    if multi:
        names = study.metric_names or [f"values_{i}" for i in range(len(study.directions))]
        log.info("Pareto front (%s): %d trials", ", ".join(f"{m} {d.name.lower()}" for m, d in
                                                           zip(names, study.directions, strict=True)), len(front))
        for t in sorted(front.values(), key=lambda t: t.number):
            log.info("  trial %d: %s, params %s", t.number,
                     ", ".join(f"{m}={v:.4g}" for m, v in zip(names, t.values, strict=True)), t.params)
    study_dir.mkdir(parents=True, exist_ok=True)
    csv = study_dir / "trials.csv"
    table = study.trials_dataframe()
    if multi:
        table["pareto"] = table["number"].isin(list(front))
    table.to_csv(csv, index=False)
    log.info("trials: %s", csv)
    log.info("dashboard: optuna-dashboard %s", study_cfg.storage)
    return None if best is None else best.value
