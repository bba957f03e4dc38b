"""Screen before spending: each knob the fine-tuning recipes change, on its own, against the course settings.

    python bench/knobs.py [--tasks rte cola] [--variants ...] [--seeds 42 43 44]   # resumable, appends rows
    python bench/knobs.py --report-only

The protocol of bench/compute.py (the same training part: 80% of the training split, the rest held out for
selection; scored on the validation split, which no choice here saw): each variant is the course settings (lr 5e-5,
3 epochs, batch 8, linear decay, no warmup) with one change, trained with each seed. One row per (task, variant,
precision, seed) goes to --out as it ends, its predictions on the validation split to --predictions (for the paired
test of sweeper/results/significance.py); a rerun skips the rows there. Seeds run seed-major (every variant's first
seed before any second), so a lane stopped early has compared every variant once.
The report tests each variant against the course settings (one-sided, 95%, Bonferroni over the variants)."""
from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rows as rows_file  # noqa: E402  (bench/rows.py)
from compute import RUNS, compose, config_id, predictions_file, revalidate  # noqa: E402
from rows import read  # noqa: E402

# One change each from the course settings; the first is the yardstick. Sources: ../shared/notes/search-literature.md
VARIANTS = {
    "course": {},
    "long-keep-best": {"train.epochs": 10, "train.keep_best": True},  # ELECTRA's RTE, Mosbach's longer training
    "warmup": {"optimizer.warmup_ratio": 0.1},  # Mosbach, Zhang, ELECTRA
    "lr-1e-4": {"optimizer.lr": 1e-4},  # small models want higher rates (Turc et al.'s grid, ELECTRA)
    "layer-decay": {"optimizer.lr": 1e-4, "optimizer.layer_decay": 0.8},  # ELECTRA-small's pair
    "reinit-2": {"model.reinit_layers": 2},  # Zhang et al.
    "mean-pooling": {"model.pooling": "mean"},  # what all-MiniLM-L6-v2 was trained to produce
    "cosine": {"optimizer.schedule": "cosine"},
    "no-dropout": {"model.dropout.hidden": 0.0, "model.dropout.attention": 0.0},
    "clip-1": {"optimizer.max_grad_norm": 1.0},  # the Trainer's default
}
FIELDS = ["task", "variant", "precision", "seed", "run", "objective", "value", "kept_epoch", "train_size",
          "train_samples", "train_seconds"]


def run(args) -> None:
    from sweeper.study.objective import Objective

    glue = os.environ.get("GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))

    @functools.cache
    def objective(task: str) -> Objective:
        return Objective(compose(task, glue, args.override), RUNS / task / "objective")

    for seed in args.seeds:
        for task in args.tasks:
            for variant in args.variants:
                key = (task, variant, args.precision, str(seed))
                if any((r["task"], r["variant"], r["precision"], r["seed"]) == key for r in read(args.out)):
                    continue
                cfg, values = objective(task).cfg, VARIANTS[variant]
                result = revalidate(objective(task), values, seed,
                                    predictions_file(args.predictions, task, cfg, values, args.precision, seed))
                row = {"task": task, "variant": variant, "precision": args.precision, "seed": seed,
                       "run": config_id(cfg, values), **result}
                rows_file.append(args.out, FIELDS, row)
                print(row, flush=True)


def with_course(rows: list[dict], compute_rows: list[dict]) -> list[dict]:
    """The screen's rows and, for seeds it has not trained the course settings with, bench/compute.py's course rows of
    the same configuration (the same run digest: the same training, the same predictions' file)."""
    have = {(r["task"], r["precision"], r["seed"]) for r in rows if r["variant"] == "course"}
    runs = {(r["task"], r["precision"]): r["run"] for r in rows if r["variant"] == "course"}
    borrowed = [{**{k: r.get(k, "") for k in FIELDS}, "variant": "course"} for r in compute_rows
                if r["arm"] == "course" and r.get("run") and runs.get((r["task"], r["precision"])) == r["run"]
                and (r["task"], r["precision"], r["seed"]) not in have]
    return rows + borrowed


def table(rows: list[dict], predictions: Path, confidence: float = 0.95) -> list[str]:
    """Per task and precision, a Markdown row per variant: its mean +- std and the test against the course settings
    (one-sided, Bonferroni over the task's variants; a variant without predictions on every seed is not tested)."""
    from compute import versus

    lines = ["| task | variant | seeds | mean +- std | vs the course settings | p (one-sided) | better at 95% |",
             "|---|---|---|---|---|---|---|"]
    for task, precision in dict.fromkeys((r["task"], r["precision"]) for r in rows):
        by = {}
        for r in rows:
            if (r["task"], r["precision"]) == (task, precision):
                by.setdefault(r["variant"], []).append(r)
        course, k = by.get("course"), max(1, len(by) - 1)
        for variant in [v for v in VARIANTS if v in by]:
            rs = by[variant]
            seeds = {r["seed"] for r in rs}
            paired = [r for r in course or [] if r["seed"] in seeds]  # the course settings on the variant's seeds
            values = [float(r["value"]) for r in rs]
            m, s = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            line = f"| {task} ({precision}) | {variant} | {len(rs)} | {m:.4f} +- {s:.4f} ({rs[0]['objective']}) |"
            if not paired or variant == "course":
                line += " | | |"
            elif min(len(rs), len(paired)) < 2:  # one seed has no seed noise to test against: the difference only
                line += f" {m - statistics.fmean(float(r['value']) for r in paired):+.4f} | (1 seed) | |"
            else:
                test = versus(rs, paired, predictions, k, confidence)
                line += (" | (no predictions) | |" if test is None else
                         f" {test.difference:+.4f} | (not above) | no |" if math.isnan(test.p) else
                         f" {test.difference:+.4f} | {test.p:.3f} | {'**yes**' if test.better else 'no'} |")
            lines.append(line)
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["rte", "cola"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "knobs.csv")
    p.add_argument("--predictions", type=Path, default=ROOT / "bench" / "predictions")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every run (tests: model=tiny)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    args.override = [f"train.precision={'no' if args.precision == 'fp32' else args.precision}",
                     "train.evals_per_epoch=1", *args.override]
    if not args.report_only:
        run(args)
    print("\n".join(table(with_course(read(args.out), read(ROOT / "bench" / "compute.csv")), args.predictions)))


if __name__ == "__main__":
    main()
