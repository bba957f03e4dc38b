"""Trials per hour on this machine: one worker using every core against several workers with a share each.

    python bench/workers.py                     # MiniLM, 2 trials of 800 MRPC pairs, 1 epoch, batch 8
    python bench/workers.py --model tiny --trials 4 --train-samples 200    # a quick look

Same study settings and the same trials for both arms (the search space is pinned to one point, so every
trial costs the same): arm A runs one worker with train.threads=<cores>; arm B runs <cores> workers with
train.threads=1 on one study. Each arm starts the real CLI on a fresh SQLite study and is timed from start
to the last worker's exit (process start, tokenizing and model loading included, as in a real sweep).
Prints trials/hour per arm and B/A; the last line is one JSON object. Run it on a quiet machine."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def arm(workers: int, threads: int, args, tmp: Path) -> float:
    """Seconds for `workers` processes with `threads` threads each to finish args.trials trials."""
    out = tmp / f"w{workers}t{threads}"
    command = [sys.executable, "-m", "sweeper", f"model={args.model}", "task=mrpc", f"out_dir={out}",
               f"task.max_train_samples={args.train_samples}", f"task.max_eval_samples={args.eval_samples}",
               f"study.n_trials={args.trials}", f"train.threads={threads}", "train.progress=false",
               "search.space.train.epochs=1", f"search.space.train.batch_size={args.batch_size}",
               "search.space.optimizer.lr=5e-5", f"search.reference.train.batch_size={args.batch_size}",
               "search.reference.train.epochs=1", "pruner=none", "study.keep_checkpoints=none"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(workers)]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - start
    for p, e in zip(procs, errors, strict=True):
        if p.returncode != 0:
            sys.exit(f"error: a worker of the {workers}x{threads} arm exited {p.returncode}: {e[-1500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--train-samples", type=int, default=800)
    parser.add_argument("--eval-samples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # studies and checkpoints: gone afterwards
        one = arm(1, args.cores, args, Path(tmp))
        many = arm(args.cores, 1, args, Path(tmp))
    rates = {"one_worker_all_threads": 3600 * args.trials / one, "workers_one_thread_each": 3600 * args.trials / many}
    print(f"1 worker x {args.cores} threads: {one:.1f} s for {args.trials} trials = "
          f"{rates['one_worker_all_threads']:.1f} trials/h")
    print(f"{args.cores} workers x 1 thread: {many:.1f} s for {args.trials} trials = "
          f"{rates['workers_one_thread_each']:.1f} trials/h")
    ratio = rates["workers_one_thread_each"] / rates["one_worker_all_threads"]
    print(f"ratio (workers / one worker): {ratio:.2f}")
    print(json.dumps({**vars(args), "seconds": {"one": one, "many": many}, "trials_per_hour": rates, "ratio": ratio}))


if __name__ == "__main__":
    main()
