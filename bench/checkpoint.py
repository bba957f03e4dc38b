"""The cost of a checkpoint within an epoch (train.checkpoint_minutes), on one trial's training in one process.

    python bench/checkpoint.py [--train-samples 400] [--model minilm] [--batch-size 16] [--every-s 3]

Trains the same trial (MRPC, the first --train-samples pairs, lr 5e-5, one epoch) three times through the CLI's own
Objective.fit, with its checkpoint directory: checkpoints at the epoch's end only, then also one within the epoch
every --every-s seconds of training, then at the end only again. Prints each save's seconds and size, the arms'
wall times, and what one checkpoint costs as a share of a whole MRPC epoch (3,668 pairs at the measured speed) and
of the default interval (10 minutes). The last line is one JSON object with every figure."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from sweeper.config import CONF_DIR, register  # noqa: E402
from sweeper.study.objective import Objective  # noqa: E402
from sweeper.train import disk, loop  # noqa: E402
from sweeper.train.loop import Hparams  # noqa: E402

MRPC_TRAIN = 3668  # pairs in MRPC's training split


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train-samples", type=int, default=400)
    p.add_argument("--model", default="minilm")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--every-s", type=float, default=3.0, help="training seconds between checkpoints within the epoch")
    p.add_argument("--out", default="/tmp/bench-checkpoint", help="where checkpoints are written (out_dir's disk)")
    args = p.parse_args()
    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={args.model}", f"task.max_train_samples={args.train_samples}",
                                           "train.progress=false", f"out_dir={args.out}", "train.evals_per_epoch=1"])
    objective = Objective(cfg, Path(args.out) / "study")
    hp = Hparams(lr=5e-5, epochs=1, batch_size=args.batch_size)
    saves: list[tuple[float, int]] = []
    save = loop.save_checkpoint

    def timed(accelerator, trial, history, needed=0, within=None):
        began = time.perf_counter()
        save(accelerator, trial, history, needed, within)
        if within is not None:  # the epoch-end checkpoint is there in every arm
            newest = max(trial.glob("epoch-*"), key=os.path.getmtime)
            saves.append((time.perf_counter() - began, disk.dir_bytes(newest)))

    loop.save_checkpoint = timed
    rows = []
    for minutes in (None, args.every_s / 60, None):  # the end-only arm first and last: one-off costs, drift
        cfg.train.checkpoint_minutes = minutes
        checkpoint = Path(args.out) / "trial"
        shutil.rmtree(checkpoint, ignore_errors=True)
        before = len(saves)
        wall = time.perf_counter()
        history = objective.fit(hp, cfg.seed, on_epoch_end=lambda e, m: None, checkpoint=checkpoint)
        wall = time.perf_counter() - wall
        objective.release()
        rows.append({"checkpoint_minutes": minutes, "wall_s": round(wall, 2), "within": len(saves) - before,
                     "train_seconds": round(history[-1]["train_seconds"], 2),
                     "samples_per_s": round(history[-1]["samples_per_s"], 2)})
    shutil.rmtree(args.out, ignore_errors=True)
    seconds = [s for s, _ in saves]
    per = statistics.median(seconds)
    speed = statistics.mean([rows[0]["samples_per_s"], rows[2]["samples_per_s"]])
    epoch_s = MRPC_TRAIN / speed
    for r in rows:
        print(f"checkpoint_minutes={r['checkpoint_minutes']}: {r['within']} checkpoints within the epoch, "
              f"{r['wall_s']} s wall, {r['train_seconds']} s training, {r['samples_per_s']} samples/s", flush=True)
    print(f"one checkpoint within an epoch: {per:.2f} s (median of {len(seconds)}: "
          f"{', '.join(f'{s:.2f}' for s in seconds)}), {saves[0][1] / 2**20:.0f} MB")
    print(f"an MRPC epoch here ({MRPC_TRAIN} pairs at {speed:.1f} samples/s, batch {args.batch_size}): "
          f"{epoch_s:.0f} s; "
          f"one checkpoint = {100 * per / epoch_s:.2f}% of it; at the default interval (10 min of training) "
          f"{100 * per / 600:.2f}% of the training time")
    print(json.dumps({"model": args.model, "batch_size": args.batch_size, "train_samples": args.train_samples,
                      "arms": rows, "checkpoint_s": seconds, "checkpoint_bytes": saves[0][1],
                      "mrpc_epoch_s": round(epoch_s, 1), "share_of_mrpc_epoch": round(per / epoch_s, 5),
                      "share_at_10_min": round(per / 600, 5)}))


if __name__ == "__main__":
    main()
