"""The study's verdict (verdict.top > 0): its top configurations and the course settings retrained with
verdict.seeds seeds on the search's training part, scored on the task's eval_split, which the search never saw
(it selected on a held-out part of the training split, task.selection_size); the winner by mean goes to best-model/."""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import statistics
import uuid
import zlib
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from sweeper.results.report import replace_whole
from sweeper.train.export import MARKER, export

log = logging.getLogger(__name__)
PARAMS = ("lr", "epochs", "batch_size")
RUNS = "verdict_runs"  # study user attribute: run key -> its row, stored as each run ends (a resume skips it)


def candidates(study, top: int, reference: dict) -> list[dict]:
    """The `top` distinct configurations of the study's complete trials by value, then the course settings
    unless among them; each {"params", "label"}."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE
              and set(PARAMS) <= set(t.params)]
    maximize = study.direction.name == "MAXIMIZE"
    trials.sort(key=lambda t: (-t.value if maximize else t.value, t.number))
    out: list[dict] = []
    for t in trials:
        params = {k: t.params[k] for k in PARAMS}
        if len(out) < top and params not in [c["params"] for c in out]:
            out.append({"params": params, "label": f"trial {t.number}"})
    ref = {k: reference[k] for k in PARAMS}
    for c in out:
        if c["params"] == ref:
            c["label"] += " (the course settings)"
    if ref not in [c["params"] for c in out]:
        out.append({"params": ref, "label": "the course settings"})
    return out


def run_key(params: dict, seed: int) -> str:
    return f"lr={params['lr']!r},epochs={params['epochs']},batch_size={params['batch_size']},seed={seed}"


def describe(params: dict) -> str:
    return f"lr {params['lr']:.2g}, {params['epochs']} epochs, batch {params['batch_size']}"


def noise_line(metric: str, maximize: bool, winner: str, values: list[float], reference: list[float],
               split: str, winner_is_reference: bool = False) -> str:
    """The verdict in words. "More than the seed noise": the winner's mean beats the course settings' mean
    (in the metric's direction) by more than the pooled std, sqrt((std_w^2 + std_r^2) / 2), of the two."""
    m, s = mean_std(values)
    head = f"verdict: {winner}: {metric} {m:.3f} +- {s:.3f} on {split} ({len(values)} seeds)"
    if winner_is_reference:
        return head + ", the course settings win: no configuration of the search beats them"
    mr, sr = mean_std(reference)
    pooled, diff = math.sqrt((s * s + sr * sr) / 2), (m - mr) if maximize else (mr - m)
    versus = f"the course settings ({mr:.3f} +- {sr:.3f}) by {abs(diff):.3f}"
    if diff > pooled:
        return head + f", beats {versus}, more than the seed noise (pooled std {pooled:.3f})"
    return head + f", {'beats' if diff >= 0 else 'trails'} {versus}, within the seed noise (pooled std " \
                  f"{pooled:.3f}): not shown better"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_verdict(study, cfg, study_dir: Path) -> dict:
    """Train the verdict's missing runs (each stored as it ends), then store the verdict, write verdict.csv and
    replace best-model/ with the winner's first seed (the seed the search trained with: no pick on the scores)."""
    from sweeper.scale import distributed
    from sweeper.study.objective import Objective
    from sweeper.train.loop import Hparams

    v, metric, split = cfg.verdict, cfg.task.objective, cfg.task.eval_split
    chosen = candidates(study, v.top, dict(cfg.search.reference))
    seeds = list(range(cfg.seed, cfg.seed + v.seeds))
    runs = dict(study.user_attrs.get(RUNS) or {})
    missing = [(c, s) for c in chosen for s in seeds if run_key(c["params"], s) not in runs]
    models = study_dir / "verdict"
    if missing and cfg.get("worker", 0):  # workers of one study would each train every run
        log.info("study %s: the verdict runs in worker 0 (+worker=0), not in worker %d", cfg.study.name, cfg.worker)
        return {}
    if missing and distributed.world_size() > 1:
        log.warning("study %s: the verdict does not run in a data-parallel job (its ranks would wait on one "
                    "another); run the same command in one process to get it", cfg.study.name)
        return {}
    objective, trained = Objective(cfg, study_dir) if missing else None, {}
    for c, seed in missing:
        data = objective.data
        unseen, lengths = data.unseen  # the task's eval_split, held back from the search (sweeper/data/dataset.py)
        view = type(data)(**{**data.__dict__, "eval": unseen, "eval_lengths": lengths})
        hp = Hparams(**c["params"])
        log.info("verdict %s: %s, seed %d, scored on %s", cfg.study.name, describe(c["params"]), seed, split)
        history = objective.fit(hp, seed, on_epoch_end=lambda epoch, metrics: None,
                                on_train_end=lambda model: trained.update(model=model), data=view)
        row = {**c["params"], "label": c["label"], "seed": seed, "split": split,
               **{m: history[-1][m] for m in cfg.task.metrics},
               "train_samples": int(history[-1].get("train_samples", 0)),
               "train_seconds": sum(h["train_seconds"] for h in history)}
        if seed == seeds[0]:  # kept until the verdict is known: any candidate may win
            export(trained["model"], data.tokenizer, data.label_names, models / model_dir(c["params"]),
                   {"study": cfg.study.name, "verdict": True, "params": c["params"], "seed": seed,
                    "value": row[metric], "objective": metric, "split": split})
        runs = {**(study.user_attrs.get(RUNS) or {}), **runs, run_key(c["params"], seed): row}  # others' kept
        study.set_user_attr(RUNS, runs)
        trained.clear()
        objective.release()
    return conclude(study, cfg, study_dir, chosen, seeds, runs)


def model_dir(params: dict) -> str:
    return f"config-{zlib.crc32(run_key(params, 0).encode()):08x}"


def conclude(study, cfg, study_dir: Path, chosen: list[dict], seeds: list[int], runs: dict) -> dict:
    """The verdict from the stored runs: per configuration its scores, mean and std; the winner by mean."""
    metric, split = cfg.task.objective, cfg.task.eval_split
    maximize = study.direction.name == "MAXIMIZE"
    configs = []
    for c in chosen:
        values = [runs[run_key(c["params"], s)][metric] for s in seeds]
        m, s = mean_std(values)
        configs.append({**c, "values": values, "mean": m, "std": s})
    winner = max(configs, key=lambda c: c["mean"] if maximize else -c["mean"])  # the first of ties: the search's rank
    reference = next(c for c in configs if "course settings" in c["label"])
    line = noise_line(metric, maximize, f"{describe(winner['params'])} ({winner['label']})", winner["values"],
                      reference["values"], split, winner_is_reference=winner is reference)
    verdict = {"summary": line, "objective": metric, "split": split, "seeds": seeds, "winner": winner["params"],
               "mean": winner["mean"], "std": winner["std"], "configs": configs,
               "train_samples": sum(runs[run_key(c["params"], s)]["train_samples"] for c in chosen for s in seeds)}
    rows = [runs[run_key(c["params"], s)] for c in chosen for s in seeds]
    replace_whole(study_dir / "verdict.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    source = study_dir / "verdict" / model_dir(winner["params"])
    if (source / MARKER).is_file():
        adopt(source, study_dir / "best-model", winner["mean"])
    else:  # removed by hand since its run: the verdict stands, best-model/ stays the search's
        log.warning("verdict %s: the winner's model %s is gone; best-model/ stays the search's best", cfg.study.name,
                    source)
    study.set_user_attr("verdict", verdict)
    return verdict


def adopt(source: Path, target: Path, mean: float) -> None:
    """A copy of the winner's model becomes `target`, whole or not at all (as export's rename), its marker
    naming the verdict; a search trial of a resumed study may replace it, and the verdict then runs again."""
    fresh = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(source, fresh)
        marker = json.loads((fresh / MARKER).read_text())
        (fresh / MARKER).write_text(json.dumps({**marker, "mean": mean}))
        with open(target.with_name(f"{target.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
            if target.exists():
                os.rename(target, old)
            os.rename(fresh, target)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
