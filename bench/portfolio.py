"""Measure start-up configurations across the GLUE tasks here, to choose the portfolio a new study starts from
(conf/search/default.yaml, search.portfolio).

    python bench/portfolio.py [--tasks mrpc rte cola sst2] [--train 1000] [--select 400] [--seed 42]

Each candidate is trained on --train examples of a task's training split and scored on --select other training
examples (a selection split, as task.selection_size holds out): no validation example is ever used here, so the
search benchmark (bench/compute.py), which scores on the validation splits, is not chosen on its own test data.
One row per (task, candidate) is appended to --out as it finishes; a rerun skips the rows already there. Prints
the table: per task each candidate's score and its gap to the task's best; then candidates by mean rank, and the
--keep best as the portfolio, in the YAML search.portfolio takes."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rows as rows_file  # noqa: E402  (bench/rows.py)

FIELDS = ["task", "lr", "epochs", "batch_size", "seed", "train_size", "select_size", "objective", "value",
          "train_samples", "train_seconds"]
# Around the course settings, towards what small BERTs are usually tuned to (higher rates, larger batches).
CANDIDATES = [(5e-5, 3, 8), (3e-5, 3, 8), (1e-4, 3, 16), (1e-4, 3, 32), (2e-4, 3, 32), (2e-4, 3, 16), (1e-4, 2, 8)]


def key(task: str, lr: float, epochs: int, batch_size: int) -> tuple:
    return task, float(lr), int(epochs), int(batch_size)


def done(out: Path) -> dict[tuple, dict]:
    return {key(r["task"], r["lr"], r["epochs"], r["batch_size"]): r for r in rows_file.read(out)}


def measure(args, rows: dict) -> None:
    # Here, not at the top: the docs build reads the table (rank) without loading torch.
    from hydra import compose, initialize_config_dir

    from sweeper.config import CONF_DIR, register
    from sweeper.search.space import apply
    from sweeper.study.objective import Objective

    glue = os.environ.get("GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))
    register()
    for task in args.tasks:
        todo = [c for c in CANDIDATES if key(task, *c) not in rows]
        if not todo:
            continue
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[
                f"task={task}", f"model={args.model}", f"data_dir={glue}", "train.progress=false",
                "out_dir=/tmp/bench-portfolio", f"task.max_train_samples={args.train + args.select}",
                f"task.selection_size={args.select}", f"seed={args.seed}"])
        objective = Objective(cfg, Path(cfg.out_dir) / task)
        name = cfg.task.objective
        for lr, epochs, batch_size in todo:
            values = {"optimizer.lr": lr, "train.epochs": epochs, "train.batch_size": batch_size}
            history = objective.fit(apply(cfg, values), args.seed,
                                    on_epoch_end=lambda epoch, metrics: None)
            objective.release()
            row = {"task": task, "lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": args.seed,
                   "train_size": len(objective.data.train), "select_size": len(objective.data.eval),
                   "objective": name, "value": round(history[-1][name], 4),
                   "train_samples": int(history[-1].get("train_samples", 0)),
                   "train_seconds": round(sum(h["train_seconds"] for h in history), 1)}
            rows_file.append(args.out, FIELDS, row)
            rows[key(task, lr, epochs, batch_size)] = row
            print(row, flush=True)


def rank(rows: dict, tasks: list[str]) -> list[dict]:
    """Candidates measured on every task, by mean rank (1 = best on a task; ties share the better rank), then by
    the mean gap to each task's best value."""
    out = []
    complete = [c for c in CANDIDATES if all(key(t, *c) in rows for t in tasks)]
    for c in complete:
        ranks, gaps = [], []
        for t in tasks:
            values = [float(rows[key(t, *o)]["value"]) for o in complete]
            mine = float(rows[key(t, *c)]["value"])
            ranks.append(1 + sum(v > mine for v in values))
            gaps.append(max(values) - mine)
        out.append({"params": c, "ranks": ranks, "gaps": gaps, "mean_rank": statistics.fmean(ranks),
                    "mean_gap": statistics.fmean(gaps)})
    return sorted(out, key=lambda r: (r["mean_rank"], r["mean_gap"]))


def table(rows: dict, tasks: list[str]) -> list[str]:
    """The ranked candidates as a Markdown table: each task's value and rank, the mean rank and gap (docs too)."""
    lines = ["| lr | epochs | batch | " + " | ".join(tasks) + " | mean rank | mean gap to best |",
             "|---|---|---|" + "---|" * len(tasks) + "---|---|"]
    for r in rank(rows, tasks):
        lr, epochs, batch_size = r["params"]
        cells = [f"{float(rows[key(t, *r['params'])]['value']):.3f} ({k})"
                 for t, k in zip(tasks, r["ranks"], strict=True)]
        lines.append(f"| {lr:g} | {epochs} | {batch_size} | " + " | ".join(cells) +
                     f" | {r['mean_rank']:.1f} | {r['mean_gap']:.3f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", nargs="+", default=["mrpc", "rte", "cola", "sst2"])
    p.add_argument("--model", default="minilm")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--select", type=int, default=400)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "portfolio.csv")
    p.add_argument("--table-only", action="store_true", help="print the table of the rows there, train nothing")
    args = p.parse_args()
    rows = done(args.out)
    if not args.table_only:
        measure(args, rows)
    ranked = rank(rows, args.tasks)
    print("\n".join(table(rows, args.tasks)))
    print("portfolio:")
    for r in ranked[:args.keep]:
        lr, epochs, batch_size = r["params"]
        print(f"  - {{lr: {lr:g}, epochs: {epochs}, batch_size: {batch_size}}}")


if __name__ == "__main__":
    main()
