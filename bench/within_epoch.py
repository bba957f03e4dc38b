"""The cost of evaluating within epochs (train.evals_per_epoch), in one process on one trial's training.

    python bench/within_epoch.py [--train-samples 200] [--model minilm] [--epochs 1] [--batch-size 16]

Trains the same trial (MRPC, the first --train-samples pairs of the seed-42 shuffle, the whole validation split,
lr 5e-5) once per arm from the same template: k=1 (today's one evaluation per epoch), then k=4 with the default
evaluation subset (train.eval_subset=512) and with 128 examples, then k=1 again. Prints wall and CPU seconds,
evaluated samples, and each arm's ratio to the first k=1. The last line is one JSON object with every figure."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from sweeper.config import CONF_DIR, register  # noqa: E402
from sweeper.search.space import apply  # noqa: E402
from sweeper.study.objective import Objective  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-samples", type=int, default=200)
    p.add_argument("--model", default="minilm")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={args.model}", f"task.max_train_samples={args.train_samples}",
                                           "train.progress=false", "out_dir=/tmp/bench-within-epoch"])
    objective = Objective(cfg, Path(cfg.out_dir) / "study")
    course = {"optimizer.lr": 5e-5, "train.epochs": args.epochs, "train.batch_size": args.batch_size}
    rows = []
    # k=1 first and last: the first run of a process pays one-off costs (kernels, allocations), and the machine
    # may drift; compare the k=4 arms with both.
    for k, subset in ((1, 512), (4, 512), (4, 128), (1, 512)):
        cfg.train.evals_per_epoch, cfg.train.eval_subset = k, subset
        reports = []
        wall, cpu = time.perf_counter(), time.process_time()
        history = objective.fit(apply(cfg, course), cfg.seed, on_epoch_end=lambda e, m, r=reports: r.append(m),
                                on_evaluate=lambda step, m, r=reports: r.append(m))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        objective.release()
        rows.append({"evals_per_epoch": k, "eval_subset": subset, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                     "reports": len(reports), "train_samples": history[-1]["train_samples"],
                     "evaluated_samples": history[-1]["evaluated_samples"], "f1": round(history[-1]["f1"], 4)})
    base = rows[0]
    for r in rows:
        r.update(wall_ratio=round(r["wall_s"] / base["wall_s"], 2), cpu_ratio=round(r["cpu_s"] / base["cpu_s"], 2))
        print(f"k={r['evals_per_epoch']} subset={r['eval_subset']}: {r['reports']} reports, {r['wall_s']} s wall "
              f"({r['wall_ratio']}x), {r['cpu_s']} s CPU ({r['cpu_ratio']}x), trained {r['train_samples']}, "
              f"evaluated {r['evaluated_samples']}, final f1 {r['f1']}", flush=True)
    print(json.dumps({"train_samples": args.train_samples, "model": args.model, "epochs": args.epochs,
                      "batch_size": args.batch_size, "arms": rows}))


if __name__ == "__main__":
    main()
