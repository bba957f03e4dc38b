"""Search quality per hour: sweeper against transformers' Trainer.hyperparameter_search, in one process.

    make bench-search      # or: python bench/search.py [--train-samples 1000|all] [--seeds 0 1] [--arms ...]

Every arm searches the same space (lr log-uniform 1e-5..1e-4, epochs 1-3, batch 8/16/32) on the same
tokenized MRPC data (the first --train-samples of the seed-42 shuffle; full validation set) from the
same template weights, with a TPE sampler seeded alike:
- trainer:   Trainer.hyperparameter_search(backend="optuna"), its defaults (fp32, evaluation at the end of
             each trial, so nothing to prune), --peer-trials trials. Its wall time is the others' budget.
- sweeper:   a real sweeper study with its defaults (pruner=plateau), trials until that budget is spent.
- no-prune:  the same with pruner=none.
- median:    the same with Optuna's MedianPruner (sweeper's default before the plateau pruner).
Prints each arm's anytime curve (best F1 after each finished trial, with wall and CPU seconds), then the
time each arm first reached the peer's best F1, and its best F1 within the peer's wall time. CPU seconds
(all threads of this process) are printed beside wall seconds: they barely move when another process
shares the machine, wall seconds do. The last line is one JSON object with every figure."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from sweeper.config import CONF_DIR, register  # noqa: E402
from sweeper.study.objective import Objective  # noqa: E402
from sweeper.study.run import load_study, run_trials  # noqa: E402
from sweeper.study.storage import open_storage  # noqa: E402
from sweeper.train.metrics import compute_metrics  # noqa: E402
from sweeper.train.model import fresh_model  # noqa: E402

ARMS = {"sweeper": "plateau", "no-prune": "none", "median": "median"}  # sweeper arms -> pruner config
MAX_TRIALS = 60


class Clock:
    """Wall and CPU seconds since the arm started."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def point(clock: Clock, best: float | None, trial: int, state: str, value: float | None) -> dict:
    wall, cpu = clock.read()
    return {"trial": trial, "state": state, "value": value, "best": best, "wall_s": wall, "cpu_s": cpu}


def peer(objective: Objective, n_trials: int, seed: int, tmp: str) -> list[dict]:
    """Trainer.hyperparameter_search with the optuna backend, as its documentation shows it."""
    curve, clock = [], Clock()

    class Record(TrainerCallback):  # the search evaluates once, after training: one point per trial
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            best = max([p["value"] for p in curve] + [metrics["eval_f1"]])
            curve.append(point(clock, best, len(curve), "COMPLETE", metrics["eval_f1"]))

    def metrics(p):
        return compute_metrics(p.label_ids, np.argmax(p.predictions, axis=-1), ["accuracy", "f1"])

    def hp_space(trial):
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-4, log=True),
                "num_train_epochs": trial.suggest_int("num_train_epochs", 1, 3),
                "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [8, 16, 32])}

    data = objective.data
    args = TrainingArguments(output_dir=f"{tmp}/trainer", eval_strategy="no", save_strategy="no", report_to="none",
                             logging_strategy="no", disable_tqdm=True, seed=42,
                             use_cpu=not torch.cuda.is_available())  # on a GPU where there is one, as sweeper
    trainer = Trainer(model_init=lambda trial=None: fresh_model(objective.template), args=args,
                      train_dataset=data.train, eval_dataset=data.eval, processing_class=data.tokenizer,
                      data_collator=DataCollatorWithPadding(data.tokenizer), compute_metrics=metrics,
                      callbacks=[Record()])
    trainer.hyperparameter_search(direction="maximize", backend="optuna", hp_space=hp_space, n_trials=n_trials,
                                  compute_objective=lambda m: m["eval_f1"],
                                  sampler=optuna.samplers.TPESampler(seed=seed))
    return curve


def sweeper_arm(cfg, objective: Objective, budget_s: float) -> list[dict]:
    """A real sweeper study, one more trial at a time until the budget is spent."""
    study = load_study(open_storage(cfg.study), cfg)
    curve, clock = [], Clock()
    while clock.read()[0] < budget_s and len(curve) < MAX_TRIALS:
        cfg.study.n_trials = len(curve) + 1
        run_trials(study, objective, cfg, objective.checkpoint_root)
        trials = [t for t in study.trials if t.state.is_finished()]
        last, complete = trials[-1], [t.value for t in trials if t.value is not None]
        curve.append(point(clock, max(complete, default=None), last.number, last.state.name,
                           last.intermediate_values.get(last.last_step) if last.value is None else last.value))
    return curve


def reached(curve: list[dict], target: float) -> dict | None:
    return next((p for p in curve if p["best"] is not None and p["best"] >= target - 1e-9), None)


def best_within(curve: list[dict], wall_s: float):
    return max((p["best"] for p in curve if p["wall_s"] <= wall_s and p["best"] is not None), default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", default="1000", help="MRPC training pairs, or 'all' (3,668)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampler seeds, one run of every arm each")
    parser.add_argument("--peer-trials", type=int, default=6)
    parser.add_argument("--arms", nargs="+", default=["sweeper", "no-prune"], choices=list(ARMS))
    parser.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR", str(ROOT.parent / "shared/data/glue")))
    args = parser.parse_args()
    samples = "null" if args.train_samples == "all" else args.train_samples
    results = []
    with tempfile.TemporaryDirectory(prefix="sweeper-search-") as tmp:
        register()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            base = ["task=mrpc", "model=minilm", f"data_dir={args.glue_dir}", f"out_dir={tmp}",
                    f"task.max_train_samples={samples}", "train.progress=false", "study.keep_checkpoints=none"]
            # One study name for every arm of a seed (the sampler's seed depends on it), one storage per arm:
            # the arms draw the same start-up proposals and differ only in their pruner.
            cfgs = {(arm, seed): compose("config", overrides=[*base, f"pruner={ARMS[arm]}", f"seed={seed}",
                                                                f"study.name=mrpc-{seed}",
                                                                f"study.storage=sqlite:///{tmp}/{arm}.db"])
                    for arm in args.arms for seed in args.seeds}
        first = next(iter(cfgs.values()))
        objective = Objective(first, Path(tmp) / "objective")  # tokenized data and weights, shared by every arm
        for seed in args.seeds:
            run = {"seed": seed, "arms": {"trainer": peer(objective, args.peer_trials, seed, tmp)}}
            budget = run["arms"]["trainer"][-1]["wall_s"]
            for arm in args.arms:
                objective.cfg = cfgs[arm, seed]  # the arm's pruner and seed; data and template are shared
                objective.checkpoint_root = Path(tmp) / arm / f"mrpc-{seed}" / "checkpoints"
                objective.best_model = Path(tmp) / arm / f"mrpc-{seed}" / "best-model"
                run["arms"][arm] = sweeper_arm(cfgs[arm, seed], objective, budget)
            summarize(run, budget)
            results.append(run)
    print(json.dumps({"train_samples": args.train_samples, "runs": results}))


def summarize(run: dict, budget: float) -> None:
    target = max(p["best"] for p in run["arms"]["trainer"])
    print(f"\nseed {run['seed']}: peer best F1 {target:.4f} after {budget:.0f} s wall")
    for arm, curve in run["arms"].items():
        print(f"  {arm}: " + ", ".join(f"#{p['trial']} {p['state'][0]} {p['value'] or 0:.3f}->"
                                       f"{p['best'] or 0:.3f} @{p['wall_s']:.0f}s/{p['cpu_s']:.0f}cpu"
                                       for p in curve))
    print(f"  {'arm':9s} {'trials':>6s} {'best F1':>8s} {'best in peer time':>18s} {'reaches peer best at':>22s}")
    for arm, curve in run["arms"].items():
        hit = reached(curve, target)
        run.setdefault("summary", {})[arm] = summary = {
            "trials": len(curve), "best": curve[-1]["best"], "best_within_peer_time": best_within(curve, budget),
            "reach_wall_s": hit and hit["wall_s"], "reach_cpu_s": hit and hit["cpu_s"],
            "reach_fraction_of_peer": hit and hit["wall_s"] / budget}
        when = (f"{hit['wall_s']:.0f} s ({summary['reach_fraction_of_peer']:.2f}x), {hit['cpu_s']:.0f} cpu-s"
                if hit else "never")
        print(f"  {arm:9s} {len(curve):6d} {summary['best'] or 0:8.4f} {summary['best_within_peer_time'] or 0:18.4f} "
              f"{when:>22s}")


if __name__ == "__main__":
    main()
