"""The end of a study: counts, best value and parameters, every trial as CSV, the configuration that
reproduces the best trial (best.yaml), a self-contained HTML report, the dashboard command."""
from __future__ import annotations

import html
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweeper.results.plots import figures
from sweeper.search import budget
from sweeper.search.space import trial_values
from sweeper.study import faults
from sweeper.study.artifacts import artifact_dir, attach_report
from sweeper.study.definition import write_csv
from sweeper.study.patience import shown
from sweeper.study.run import budget_spent

log = logging.getLogger(__name__)


def summarize(study, cfg, study_dir: Path) -> float | None:
    """Log the study's outcome (a multi-objective study: its Pareto front) and write trials.csv (with a
    `pareto` column when multi-objective), best.yaml and report.html; returns the best value."""
    study_cfg = cfg.study
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    causes = faults.by_cause(trials)
    why = f" ({causes[faults.MACHINE]} by the machine, retried; {causes[faults.TRIAL]} by the trial itself)"
    log.info("study %s: %d complete, %d pruned, %d failed%s; %s", study_cfg.name, n[TrialState.COMPLETE],
             n[TrialState.PRUNED], n[TrialState.FAIL], why if n[TrialState.FAIL] else "",
             stopped_by(study, cfg, n[TrialState.COMPLETE] + n[TrialState.PRUNED]))
    log.info("compute: %s", budget.describe(study))
    best = None
    multi = len(study.directions) > 1
    study_dir.mkdir(parents=True, exist_ok=True)
    if n[TrialState.COMPLETE] and not multi:
        best = study.best_trial
        log.info("best value %.4f (trial %d), params %s", best.value, best.number, best.params)
        if (study_dir / "best-model").is_dir():
            log.info("best model: %s", study_dir / "best-model")
    front = {t.number: t for t in study.best_trials} if n[TrialState.COMPLETE] and multi else {}
    if multi:
        names = study.metric_names or [f"values_{i}" for i in range(len(study.directions))]
        log.info("Pareto front (%s): %d trials", ", ".join(f"{m} {d.name.lower()}" for m, d in
                                                           zip(names, study.directions, strict=True)), len(front))
        for t in sorted(front.values(), key=lambda t: t.number):
            log.info("  trial %d: %s, params %s", t.number,
                     ", ".join(f"{m}={v:.4g}" for m, v in zip(names, t.values, strict=True)), t.params)
    if best is not None:
        log.info("best config: %s (python -m sweeper +%s=best)", write_best_config(cfg, best, study_dir),
                 study_cfg.name)
    table = trials_frame(study)
    if multi:
        table["pareto"] = table["number"].isin(list(front))
    log.info("trials: %s", replace_whole(study_dir / "trials.csv", lambda tmp: table.to_csv(tmp, index=False)))
    # its definition, versions, accepted changes
    replace_whole(study_dir / "study.csv", lambda tmp: write_csv(study.user_attrs, tmp))
    report = write_report(study, study_dir / "report.html")
    log.info("report: %s", report)
    attach_report(study_cfg.artifacts, study, report)
    store_dir = artifact_dir(study_cfg.artifacts)
    log.info("dashboard: optuna-dashboard %s%s", shown(study_cfg.storage),  # give it the password as sweeper got it
             f" --artifact-dir {store_dir}" if store_dir else "")
    return None if best is None else best.value


def stopped_by(study, cfg, finished: int) -> str:
    """What ended the search, in words: its budget (study.n_trials then only a cap it never reached) or its trial
    target."""
    target = cfg.study.n_trials
    if finished >= target:
        return f"stopped at its target, study.n_trials={target} finished trials"
    spent = budget_spent(study, cfg)
    if spent:
        return f"stopped by its budget: {spent} (study.n_trials={target} is only a cap)"
    return f"{finished} of study.n_trials={target} finished; the same command goes on"


def replace_whole(path: Path, write: Callable[[Path], object]) -> Path:
    """write(tmp) under a temporary name of this writer's own beside `path`, then rename it over `path`: a
    reader never sees half a file, and workers of one study summarizing at the same moment each replace
    it whole (with one shared temporary name, one worker's rename found the other's file gone)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def trials_frame(study):
    """Optuna's trials table; the objective's column keeps its name `value` once the study names its
    metric (Optuna would call it `value_f1`), so readers of trials.csv need not know the metric.
    `fail_cause` says whose fault a failed trial was: `machine` (retried, not counted) or `trial`."""
    names = study.metric_names or []
    table = study.trials_dataframe().rename(columns={f"value_{n}": "value" for n in names[:1]})
    trials = study.get_trials(deepcopy=False)
    retried = faults.retried_numbers(trials)
    causes = {t.number: faults.failure_cause(t, retried) for t in trials}
    table = table.drop(columns=[f"user_attrs_{faults.CAUSE}"], errors="ignore")
    if len(table):
        table[faults.CAUSE] = table["number"].map(causes)
    return table


def best_overrides(cfg, values: dict) -> list[str]:
    """Command-line overrides that rerun exactly the configuration `values` ({config key: value}, a trial's) on this
    study's task, model and data: each value a fixed entry of the space, which then searches nothing."""
    task = cfg.task
    return [f"task={task.name}", f"model={cfg.model.name}", f"optimizer={cfg.optimizer.name}",
            f"task.max_train_samples={null(task.max_train_samples)}",
            f"task.max_eval_samples={null(task.max_eval_samples)}", f"seed={cfg.seed}",
            *([f"task.selection_size={task.selection_size:g}"] if task.get("selection_size") is not None else []),
            *[f"search.space.{k}={null(v)}" for k, v in values.items()], "search.custom=null",
            "search.enqueue_portfolio=false", "study.n_trials=1", f"study.name={cfg.study.name}-best"]


def null(value) -> str:
    """A value as an override writes it (repr keeps a float's every digit)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def write_best_config(cfg, best, study_dir: Path) -> Path:
    """best.yaml: a Hydra config (`+<study>=best`, found through hydra.searchpath) whose values are the
    overrides of best_overrides; the same overrides are in its header, for a command line."""
    overrides = best_overrides(cfg, trial_values(best))
    groups = [o.split("=", 1) for o in overrides[:3]]
    values = OmegaConf.from_dotlist(overrides[3:])
    head = (f"# @package _global_\n# {cfg.study.name}: trial {best.number}, {cfg.task.objective}={best.value:.4f}; "
            f"rerun it as a one-trial study {cfg.study.name}-best:\n#   python -m sweeper +{cfg.study.name}=best\n"
            f"#   python -m sweeper {' '.join(overrides)}\n")
    defaults = "defaults:\n" + "".join(f"  - override /{g}: {v}\n" for g, v in groups)
    text = head + defaults + OmegaConf.to_yaml(values)
    return replace_whole(study_dir / "best.yaml", lambda tmp: tmp.write_text(text))


def header(study) -> str:
    """The page's first lines: which task, model and data, what is optimized, and how it went."""
    attrs = study.user_attrs

    def section(name: str) -> dict:  # a stored definition section; a bare name in studies made before them
        value = attrs.get(name)
        return value if isinstance(value, dict) else {"name": value} if value else {}

    task, model, data = section("task"), section("model"), section("data")
    trials = study.get_trials(deepcopy=False)
    n = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    sizes = [f"{attrs[k]:,} {what} examples ({task[split]} split)" for k, what, split in
             (("train_size", "training", "train_split"), ("eval_size", "evaluation", "eval_split"))
             if isinstance(attrs.get(k), int) and split in task]
    rows = [("task", f"{task.get('name', '?')} ({task.get('dataset') or 'GLUE'}"
                     f"{', ' + data['content'] if data.get('content') else ''})"),
            ("model", f"{model.get('name', '?')}{' (' + str(model['path']) + ')' if model.get('path') else ''}"),
            ("data", ", ".join(sizes) or "not recorded"),
            ("objective", ", ".join(f"{m} ({d.name.lower()})" for m, d in zip(names, study.directions, strict=True))),
            ("trials", f"{n[TrialState.COMPLETE]} complete, {n[TrialState.PRUNED]} pruned, "
                       f"{n[TrialState.FAIL]} failed"),
            ("compute", budget.describe(study))]
    if n[TrialState.COMPLETE] and len(study.directions) == 1:
        best = study.best_trial
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        rows.append(("best", f"{names[0]} {best.value:.4f} (trial {best.number}: {params})"))
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h1>{html.escape(study.study_name)}</h1><table class='head'>{cells}</table>"


def write_report(study, path: Path) -> Path:
    """report.html: plotly.js inlined once, so the page opens offline; what the study is (header), plots, then
    the trials table."""
    from plotly.offline import get_plotlyjs

    attrs = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in study.user_attrs.items() if not isinstance(v, (dict, list)))
    parts = [header(study), f"<h2>Attributes</h2><table>{attrs}</table>"]
    for title, fig in figures(study):
        body = f"<p>{html.escape(fig)}</p>" if isinstance(fig, str) else fig.to_html(
            full_html=False, include_plotlyjs=False)
        anchor = title.split(" (")[0].lower().replace(" ", "-")  # report.html#learning-curves
        parts.append(f"<h2 id='{anchor}'>{html.escape(title)}</h2>{body}")
    table = trials_frame(study).drop(columns=["system_attrs"], errors="ignore")
    parts.append(f"<h2>Trials</h2>{table.to_html(index=False, na_rep='')}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(study.study_name)}</title>"
            f"<script>{get_plotlyjs()}</script><style>body{{font-family:sans-serif;margin:2em}}"
            f"table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
    return replace_whole(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
