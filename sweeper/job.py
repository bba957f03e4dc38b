"""One job of the command line (one study), start to end: its search (sweeper/study/run.py), then the verdict on
data the search never saw where asked (sweeper/results/verdict.py), then its summary (sweeper/results/report.py)."""
from __future__ import annotations

import logging

from optuna.trial import TrialState

from sweeper.results.report import summarize
from sweeper.study.run import count, search
from sweeper.train import disk

log = logging.getLogger(__name__)


def run_study(cfg) -> float | None:
    """Run what the study is missing, judge and summarize it; returns the best value."""
    study, study_dir = search(cfg)
    verdict = {}
    if cfg.verdict.top and count(study.get_trials(deepcopy=False), [TrialState.COMPLETE]):
        from sweeper.results.verdict import run_verdict

        # Once the search stopped (its target or its budget), before the summary, whose compute line and report
        # then count it: an interrupted verdict resumes from its stored runs.
        verdict = run_verdict(study, cfg, study_dir)
    with disk.writing(study_dir, 0, "the summary"):  # a full disk here too ends in one line, exit 4
        best = summarize(study, cfg, study_dir)
    if verdict:  # the study's last word
        log.info("%s (per run: %s)", verdict["summary"], study_dir / "verdict.csv")
    return best
