"""What a selection split costs (task.selection_size): the course settings (lr 5e-5, 3 epochs, batch 8) trained on
the whole training set and on what is left after holding out a share for the search, each with several seeds, all
scored on the task's whole validation split.

    python bench/selection.py [--task mrpc] [--sizes 0 0.2] [--seeds 42 43 44] [--out bench/selection.csv]

One row per (task, selection_size, seed) is appended to --out as it finishes; a rerun skips the rows already there,
so the benchmark can stop and go on across sessions. Prints each arm's mean +- std and the difference of means
against the pooled standard deviation (the verdict's rule for "more than the seed noise")."""
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
from hydra import compose, initialize_config_dir  # noqa: E402

from sweeper.config import CONF_DIR, register  # noqa: E402
from sweeper.search.space import apply  # noqa: E402
from sweeper.study.objective import Objective  # noqa: E402

FIELDS = ["task", "selection_size", "seed", "train_size", "objective", "value", "train_seconds"]


def done(out: Path) -> dict[tuple, dict]:
    return {(r["task"], float(r["selection_size"]), int(r["seed"])): r for r in rows_file.read(out)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="mrpc")
    p.add_argument("--model", default="minilm")
    p.add_argument("--sizes", type=float, nargs="+", default=[0.0, 0.2])
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "selection.csv")
    args = p.parse_args()
    glue = os.environ.get("GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))
    register()
    rows = done(args.out)
    for size in args.sizes:
        todo = [s for s in args.seeds if (args.task, size, s) not in rows]
        if not todo:
            continue
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[
                f"task={args.task}", f"model={args.model}", f"data_dir={glue}", "train.progress=false",
                "out_dir=/tmp/bench-selection", *([f"task.selection_size={size}"] if size else [])])
        objective = Objective(cfg, Path(cfg.out_dir) / "study")
        data = objective.data
        if data.unseen is not None:  # score on the validation split, as the verdict does
            data = type(data)(**{**data.__dict__, "eval": data.unseen[0], "eval_lengths": data.unseen[1]})
        name = cfg.task.objective
        for seed in todo:
            history = objective.fit(apply(cfg, {"optimizer.lr": 5e-5, "train.epochs": 3, "train.batch_size": 8}), seed,
                                    on_epoch_end=lambda epoch, metrics: None, data=data)
            objective.release()
            row = {"task": args.task, "selection_size": size, "seed": seed, "train_size": len(data.train),
                   "objective": name, "value": round(history[-1][name], 4),
                   "train_seconds": round(sum(h["train_seconds"] for h in history), 1)}
            rows_file.append(args.out, FIELDS, row)
            rows[(args.task, size, seed)] = row
            print(row, flush=True)
    arms = {}
    for (task, size, _), r in sorted(rows.items()):
        if task == args.task:
            arms.setdefault(size, []).append(float(r["value"]))
    for size, values in arms.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{args.task} selection_size={size:g}: {statistics.fmean(values):.4f} +- {std:.4f} "
              f"({len(values)} seeds: {', '.join(f'{v:.4f}' for v in values)})")
    if len(arms) == 2 and all(len(v) > 1 for v in arms.values()):
        (a, x), (b, y) = arms.items()
        pooled = ((statistics.variance(x) + statistics.variance(y)) / 2) ** 0.5
        print(f"difference {statistics.fmean(x) - statistics.fmean(y):+.4f} (size {a:g} - size {b:g}); "
              f"pooled std {pooled:.4f}")


if __name__ == "__main__":
    main()
