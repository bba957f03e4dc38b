"""The end of a multirun (`python -m sweeper -m ...`): one row per study its jobs ran, printed and written
to <out_dir>/summary.csv. A Hydra callback, configured under hydra.callbacks in conf/config.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from optuna.trial import TrialState

from sweeper.results.report import replace_whole
from sweeper.search import budget
from sweeper.search.space import trial_values


def study_row(study) -> dict:
    """Task, model, trial counts, the best trial's objective, metrics and parameters, training time."""
    trials = study.get_trials(deepcopy=False)
    attrs = study.user_attrs
    row = {"study": study.study_name, "task": name(attrs.get("task")), "model": name(attrs.get("model"))}
    row.update({column: sum(t.state == s for t in trials)
                for column, s in (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED),
                                  ("failed", TrialState.FAIL))})
    objective = (study.metric_names or ["objective"])[0]
    if row["complete"]:
        best = study.best_trial
        row.update({"objective": objective, "best": best.value, "best_trial": best.number})
        shown = [k for k in metrics(attrs.get("task")) if k in best.user_attrs and k != objective]
        row.update({k: best.user_attrs[k] for k in shown})
        row.update({f"best_{k}": v for k, v in trial_values(best).items()})
    # Wall time of every trial that ran here, failed ones included: what the study cost.
    row["train_minutes"] = round(sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                                     if t.datetime_complete and t.datetime_start) / 60, 2)
    row.update(budget.columns(study))  # training samples by trial state, evaluation, retrain, epochs spent
    if "retrain" in attrs:
        row.update({"retrain_mean": attrs["retrain"]["mean"], "retrain_std": attrs["retrain"]["std"]})
    if isinstance(attrs.get("verdict"), dict):  # the winner on data the search never saw (sweeper/results/verdict.py)
        v = attrs["verdict"]
        row.update({"verdict_mean": v["mean"], "verdict_std": v["std"], "verdict_trivial": v.get("trivial"),
                    "verdict_outcome": v.get("outcome"), **{f"verdict_{k}": x for k, x in v["winner"].items()}})
    return row


def write_summary(studies, path: Path) -> pd.DataFrame:
    table = pd.DataFrame([study_row(s) for s in studies])
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_whole(path, lambda tmp: table.to_csv(tmp, index=False))
    return table


class MultirunSummary(Callback):
    """Remembers each job's study as it ends; when the multirun ends, summarizes them all."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, str]] = {}  # study name -> (storage URL, out_dir)

    def on_job_end(self, config, job_return=None, **kwargs: Any) -> None:
        self.jobs[config.study.name] = (config.study.storage, config.out_dir)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        import optuna

        studies = []
        for name, (storage, _) in self.jobs.items():
            try:
                studies.append(optuna.load_study(study_name=name, storage=storage))
            except KeyError:  # the job stopped before creating it
                continue
        if not studies:
            return
        path = Path(next(iter(self.jobs.values()))[1]) / "summary.csv"
        table = write_summary(studies, path)
        with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 4):
            print(f"\nsummary of {len(studies)} studies ({path}):\n{table.to_string(index=False)}", flush=True)


def metrics(section) -> list[str]:
    """The task's metrics in a study's stored definition (CoLA: Matthews correlation and accuracy; STS-B:
    Pearson, Spearman, MSE); accuracy and F1 for a study that stored only the task's name."""
    return list(section.get("metrics") or []) if isinstance(section, dict) else ["accuracy", "f1"]


def name(section) -> str | None:
    """The name in a study's stored definition section (sweeper/study/definition.py), or a plain name."""
    return section.get("name") if isinstance(section, dict) else section
