"""The study's verdict (verdict.top > 0): its top configurations and the course settings retrained with
verdict.seeds seeds on the search's training part, scored on the task's eval_split, which the search never saw
(it selected on a held-out part of the training split, task.selection_size); the winner by mean goes to best-model/."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import statistics
import uuid
import zlib
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf
from optuna.trial import TrialState

from sweeper.results import significance
from sweeper.results.report import replace_whole
from sweeper.search import space
from sweeper.train.export import MARKER, export
from sweeper.train.metrics import trivial_value

log = logging.getLogger(__name__)
RUNS = "verdict_runs"  # study user attribute: run key -> its row, stored as each run ends (a resume skips it)
LABELS = "verdict_labels"  # study user attribute: the scored split's labels, for the test (significance.py)


def effective(cfg, values: dict, keys) -> dict:
    """A configuration's value of each of `keys` once applied to the config (keys it does not set: the config's)."""
    applied = space.apply(cfg, values)
    return {k: getattr(v := OmegaConf.select(applied, k), "value", v) for k in keys}


def candidates(study, top: int, cfg) -> list[dict]:
    """The `top` distinct configurations of the study's complete trials by value, then the course settings
    (search.reference) unless among them; each {"values", "label"}, values {config key: value}."""
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                    key=lambda t: (-t.value if study.direction.name == "MAXIMIZE" else t.value, t.number))
    reference = space.flatten(OmegaConf.to_container(cfg.search.reference, resolve=True))
    keys = sorted({*reference, *(k for t in trials for k in space.trial_values(t))})
    out, seen, ref = [], [], effective(cfg, reference, keys)
    for t in trials:
        values = space.trial_values(t)
        if len(out) < top and (full := effective(cfg, values, keys)) not in seen:
            seen.append(full)
            out.append({"values": values, "label": f"trial {t.number}" + (" (the course settings)" if full == ref
                                                                          else "")})
    if ref not in seen:
        out.append({"values": reference, "label": "the course settings"})
    return out


def is_reference(c: dict) -> bool:
    return "course settings" in c["label"]


def run_key(values: dict, seed: int) -> str:
    return ",".join(f"{k}={v!r}" for k, v in sorted(values.items())) + f",seed={seed}"


def describe(values: dict) -> str:
    return ", ".join(f"{k} {v:.2g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def run_verdict(study, cfg, study_dir: Path) -> dict:
    """Train the verdict's missing runs (each stored as it ends), test, and where the first seeds leave the question
    open, train the two finalists' further seeds (verdict.max_seeds) and test again; then store the verdict, write
    verdict.csv and replace best-model/ with the winner's first seed (the seed the search trained with: no pick on
    the scores)."""
    from sweeper.scale import distributed

    v = cfg.verdict
    chosen = candidates(study, v.top, cfg)
    seeds = list(range(cfg.seed, cfg.seed + v.seeds))
    runs = dict(study.user_attrs.get(RUNS) or {})
    missing = [(c, s) for c in chosen for s in seeds if run_key(c["values"], s) not in runs]
    if missing and cfg.get("worker", 0):  # workers of one study would each train every run
        log.info("study %s: the verdict runs in worker 0 (+worker=0), not in worker %d", cfg.study.name, cfg.worker)
        return {}
    if missing and distributed.world_size() > 1:
        log.warning("study %s: the verdict does not run in a data-parallel job (its ranks would wait on one "
                    "another); run the same command in one process to get it", cfg.study.name)
        return {}
    trainer = Runs(study, cfg, study_dir)
    runs = trainer.train(missing, seeds[0])
    verdict = conclude(study, cfg, chosen, {id(c): seeds for c in chosen}, runs)
    more = list(range(cfg.seed + v.seeds, cfg.seed + max(v.max_seeds, v.seeds)))
    if verdict["outcome"] == "noise" and more:  # the question is open: more seeds for the two finalists
        finalists = [c for c in chosen if c["values"] == verdict["winner"] or is_reference(c)]
        log.info("verdict %s: %s; %d more seeds for the two finalists", cfg.study.name, verdict["summary"], len(more))
        runs = trainer.train([(c, s) for c in finalists for s in more if run_key(c["values"], s) not in runs],
                             seeds[0])
        verdict = conclude(study, cfg, chosen, {id(c): seeds + more * (c in finalists) for c in chosen}, runs)
    trainer.release()
    return finish(study, cfg, study_dir, verdict, runs)


class Runs:
    """The verdict's training runs: each on the search's training part, scored on the unseen split, its metrics
    and predictions stored on the study as it ends (a resume skips it)."""

    def __init__(self, study, cfg, study_dir: Path):
        self.study, self.cfg, self.models, self._objective = study, cfg, study_dir / "verdict", None

    def train(self, missing: list, first_seed: int) -> dict:
        from sweeper.data.dataset import scored_on_unseen
        from sweeper.results.predict import predict
        from sweeper.study.objective import Objective, hparams
        from sweeper.train.loop import kept

        cfg, metric, split, trained = self.cfg, self.cfg.task.objective, self.cfg.task.eval_split, {}
        for c, seed in missing:
            if self._objective is None:
                self._objective = Objective(cfg, self.models.parent)
            objective = self._objective
            data, run_cfg = objective.data, space.apply(cfg, c["values"])
            hp = hparams(run_cfg)
            unseen = data.unseen[0]  # the task's eval_split, held back from the search (data/dataset.py)
            view, prefix = scored_on_unseen(data, hp.keep_best is not None)
            log.info("verdict %s: %s, seed %d, scored on %s", cfg.study.name, describe(c["values"]), seed, split)
            history = objective.fit(run_cfg, seed, on_epoch_end=lambda epoch, metrics: None,
                                    on_train_end=lambda model: trained.update(model=model), data=view)
            final = kept(history, hp)
            predictions = predict(trained["model"], unseen, data.tokenizer, cfg.train.eval_batch_size)
            row = {**c["values"], "label": c["label"], "seed": seed, "split": split,
                   **{m: final[prefix + m] for m in cfg.task.metrics},
                   "train_samples": int(history[-1].get("train_samples", 0)),
                   "train_seconds": sum(h["train_seconds"] for h in history), "predictions": predictions.tolist()}
            if seed == first_seed:  # kept until the verdict is known: any candidate may win
                export(trained["model"], data.tokenizer, data.label_names, self.models / model_dir(c["values"]),
                       {"study": cfg.study.name, "verdict": True, "params": c["values"], "seed": seed,
                        "value": row[metric], "objective": metric, "split": split})
            if LABELS not in self.study.user_attrs:
                self.study.set_user_attr(LABELS, [int(y) if float(y).is_integer() else float(y)
                                                  for y in unseen["labels"]])
            runs = {**(self.study.user_attrs.get(RUNS) or {}), run_key(c["values"], seed): row}  # others' kept
            self.study.set_user_attr(RUNS, runs)
            trained.clear()
            objective.release()
        return dict(self.study.user_attrs.get(RUNS) or {})

    def release(self) -> None:
        self._objective = None


def model_dir(values: dict) -> str:
    return f"config-{zlib.crc32(run_key(values, 0).encode()):08x}"


def conclude(study, cfg, chosen: list[dict], seeds: dict, runs: dict) -> dict:
    """The verdict from the stored runs: per configuration its scores, mean and std; the winner by mean; the test
    of the winner against the course settings and against the constant prediction (significance.py)."""
    v, metric, split = cfg.verdict, cfg.task.objective, cfg.task.eval_split
    maximize = study.direction.name == "MAXIMIZE"
    labels = study.user_attrs[LABELS]
    configs = []
    for c in chosen:
        rows = [runs[run_key(c["values"], s)] for s in seeds[id(c)]]
        values = [r[metric] for r in rows]
        m, s = mean_std(values)
        configs.append({"values": c["values"], "label": c["label"], "seeds": seeds[id(c)], "scores": values,
                        "mean": m, "std": s, "predictions": [r["predictions"] for r in rows]})
    winner = max(configs, key=lambda c: c["mean"] if maximize else -c["mean"])  # the first of ties: the search's rank
    reference = next(c for c in configs if is_reference(c))
    k = max(1, len(configs) - 1)  # the winner is the best of the search's configurations
    looks = 2 if v.max_seeds > v.seeds else 1  # a second look, with more seeds, is planned: both share the level
    trivial = trivial_value(labels, metric)
    above = significance.compare(metric, winner["scores"], [trivial],
                                 significance.example_variance(metric, labels, winner["predictions"], None),
                                 k, v.confidence, looks)
    versus = None if winner is reference else significance.compare(
        metric, winner["scores"], reference["scores"],
        significance.example_variance(metric, labels, winner["predictions"], reference["predictions"]),
        k, v.confidence, looks)
    outcome, line = sentence(metric, split, f"{describe(winner['values'])} ({winner['label']})", winner, reference,
                             trivial, above, versus, v.confidence, k)
    for c in configs:
        del c["predictions"]
    return {"summary": line, "outcome": outcome, "objective": metric, "split": split, "seeds": winner["seeds"],
            "winner": winner["values"], "mean": winner["mean"], "std": winner["std"], "trivial": trivial,
            "confidence": v.confidence, "p": None if versus is None else versus.p,
            "difference": None if versus is None else versus.difference, "configs": configs,
            "train_samples": sum(runs[run_key(c["values"], s)]["train_samples"] for c in chosen for s in seeds[id(c)])}


def sentence(metric: str, split: str, name: str, winner: dict, reference: dict, trivial: float,
             above: significance.Comparison, versus: significance.Comparison | None, confidence: float,
             k: int) -> tuple[str, str]:
    """The verdict in words, and which of its outcomes it is: `trivial` (the winner is not shown above the constant
    prediction), `reference` (the course settings have the best mean), `better` (the winner beats them at the
    confidence), `noise` (the difference is within the noise)."""
    n = len(winner["scores"])
    head = (f"verdict: {name}: {metric} {winner['mean']:.3f} +- {winner['std']:.3f} on {split} ({n} seeds; the "
            f"constant prediction scores {trivial:.3f})")
    level = f"{confidence:.0%} confidence, corrected for {k} configuration{'s' * (k > 1)}"
    if not above.better:
        return "trivial", head + (f", not shown above the constant prediction at {level} (p={above.p:.2f}): nothing "
                                  "here beats the constant prediction; not shown better")
    if versus is None:
        return "reference", head + ", the course settings win: no configuration of the search beats them"
    ref = f"the course settings ({reference['mean']:.3f} +- {reference['std']:.3f})"
    if versus.better:
        return "better", head + (f", beats {ref} by {versus.difference:+.3f} at {level} (p={versus.p:.4f}; at least "
                                 f"{versus.low:+.3f})")
    return "noise", head + (f", {versus.difference:+.3f} against {ref}: within the noise at {level} (p={versus.p:.2f};"
                            f" standard error {versus.seed_std:.3f} from the seeds, {versus.example_std:.3f} from the "
                            f"{len(winner['predictions'][0])} examples): not shown better")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def finish(study, cfg, study_dir: Path, verdict: dict, runs: dict) -> dict:
    """Store the verdict, write verdict.csv (every run, without its predictions) and adopt the winner's model."""
    rows = [{k: v for k, v in r.items() if k != "predictions"} for r in runs.values()]
    study_dir.mkdir(parents=True, exist_ok=True)
    replace_whole(study_dir / "verdict.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    source = study_dir / "verdict" / model_dir(verdict["winner"])
    if (source / MARKER).is_file():
        adopt(source, study_dir / "best-model", verdict["mean"])
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
