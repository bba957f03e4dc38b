"""The end of a study: counts, best value and parameters, every trial as CSV, the dashboard command."""
from __future__ import annotations

import logging
from pathlib import Path

from optuna.trial import TrialState

from sweeper.definition import write_csv

log = logging.getLogger(__name__)


def summarize(study, study_cfg, study_dir: Path) -> float | None:
    """Log the study's outcome, write its trials to <study_dir>/trials.csv; returns the best value."""
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    log.info("study %s: %d complete, %d pruned, %d failed (study.n_trials=%d finished wanted)",
             study_cfg.name, n[TrialState.COMPLETE], n[TrialState.PRUNED], n[TrialState.FAIL], study_cfg.n_trials)
    best = None
    if n[TrialState.COMPLETE]:
        best = study.best_trial
        log.info("best value %.4f (trial %d), params %s", best.value, best.number, best.params)
    study_dir.mkdir(parents=True, exist_ok=True)
    csv = study_dir / "trials.csv"
    study.trials_dataframe().to_csv(csv, index=False)
    log.info("trials: %s", csv)
    write_csv(study.user_attrs, study_dir / "study.csv")  # its definition, versions, accepted changes
    log.info("dashboard: optuna-dashboard %s", study_cfg.storage)
    return None if best is None else best.value
