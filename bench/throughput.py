"""Training throughput of a sweeper trial against the Hugging Face course's loop, in one process.

    make bench                       # or: python bench/throughput.py [--epochs 3] [--batch-sizes 8 32]

Both loops get the same model (one template, so the same classifier head), the same tokenized MRPC
data, seed and hyperparameters (AdamW lr 5e-5, linear decay). The reference is the course's "A full
training" loop as written (fp32, shuffled batches, torch.optim.AdamW); sweeper's runs as a real trial
of a real Optuna study (SQLite in a temp dir), checkpoints and storage writes included. The first
batch size runs --epochs epochs (accuracy/F1 comparison), the others one epoch (throughput).
Prints per run: samples/s, padded-token fraction, validation accuracy and F1, model FLOP/s and MFU
against a matmul peak measured here; per batch size the speed ratio; sweeper's per-trial overhead.
The last line is one JSON object with every figure."""
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

import optuna  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import DataCollatorWithPadding, get_scheduler  # noqa: E402

from sweeper.config import CONF_DIR, register  # noqa: E402
from sweeper.study.objective import Objective  # noqa: E402
from sweeper.study.storage import open_storage  # noqa: E402
from sweeper.train import checkpoints  # noqa: E402
from sweeper.train.metrics import compute_metrics  # noqa: E402
from sweeper.train.model import fresh_model  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 20) -> float:
    """FLOP/s of an n x n matmul on this machine: the ceiling MFU is measured against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def train_flops(model, lengths) -> float:
    """Model FLOPs to train on sequences of these (unpadded) lengths: 6 per non-embedding parameter
    per token, plus attention scores and mixing (12 * layers * hidden * length^2 per sequence)."""
    c = model.config
    dense = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    return sum(6 * dense * s + 12 * c.num_hidden_layers * c.hidden_size * s * s for s in lengths)


def reference_loop(template, data, batch_size: int, epochs: int, seed: int) -> dict:
    """The course's loop: fp32, DataLoader(shuffle=True), AdamW, linear schedule, then evaluation."""
    torch.manual_seed(seed)
    collator = DataCollatorWithPadding(data.tokenizer)
    train_dataloader = DataLoader(data.train, shuffle=True, batch_size=batch_size, collate_fn=collator)
    eval_dataloader = DataLoader(data.eval, batch_size=8, collate_fn=collator)
    model = fresh_model(template)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    num_training_steps = epochs * len(train_dataloader)
    lr_scheduler = get_scheduler("linear", optimizer=optimizer, num_warmup_steps=0,
                                 num_training_steps=num_training_steps)
    model.train()
    real = padded = 0
    start = time.perf_counter()
    for epoch in range(epochs):  # noqa: B007 (the course's loop, as written)
        for batch in train_dataloader:
            outputs = model(**batch)
            outputs.loss.backward()
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    seconds = time.perf_counter() - start
    model.eval()
    predictions, labels = [], []
    with torch.no_grad():
        for batch in eval_dataloader:
            predictions.append(model(**batch).logits.argmax(dim=-1))
            labels.append(batch["labels"])
    metrics = compute_metrics(torch.cat(labels).numpy(), torch.cat(predictions).numpy(), ["accuracy", "f1"])
    return {**metrics, "samples_per_s": epochs * len(data.train) / seconds, "train_seconds": seconds,
            "padded_fraction": 1 - real / padded, "precision": "fp32"}


def sweeper_trial(objective: Objective, study: optuna.Study, batch_size: int, epochs: int) -> dict:
    """One real trial: enqueued with these hyperparameters, run through study.optimize."""
    study.enqueue_trial({"optimizer.lr": 5e-5, "train.epochs": epochs, "train.batch_size": batch_size})
    study.optimize(objective, n_trials=1)
    trial = study.trials[-1]
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    # User attributes hold the last epoch's figures; the checkpoint's history holds every epoch's.
    checkpoint = checkpoints.latest(checkpoints.trial_dir(objective.checkpoint_root, trial.number))
    history = checkpoints.read_progress(checkpoint)["history"]
    train_seconds = sum(h["train_seconds"] for h in history)
    steps = train_seconds + sum(h["eval_seconds"] for h in history)
    last = trial.user_attrs
    return {"accuracy": last["accuracy"], "f1": last["f1"], "train_seconds": train_seconds,
            "samples_per_s": epochs * len(objective.data.train) / train_seconds,
            "padded_fraction": last["padded_fraction"], "precision": objective.precision,
            "trial_seconds": seconds, "overhead_share": (seconds - steps) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs at the first batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--glue-dir", default=os.environ.get("GLUE_DIR", str(ROOT.parent / "shared/data/glue")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sweeper-bench-") as tmp:  # ~260 MB of checkpoints per trial
        print(json.dumps(measure(args, tmp)))


def measure(args, tmp: str) -> dict:
    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "task=mrpc", "model=minilm", f"data_dir={args.glue_dir}", f"out_dir={tmp}", "train.progress=false",
            "study.keep_checkpoints=all"])
    setup = time.perf_counter()
    objective = Objective(cfg, Path(tmp) / "bench")  # tokenizes and reads the weights once, as a study does
    setup = time.perf_counter() - setup
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
          f"study setup (tokenize, read weights) {setup:.1f} s")
    lengths = objective.data.train_lengths.tolist()
    study = optuna.create_study(storage=open_storage(cfg.study), study_name="bench", direction="maximize")
    results = {"peak_gflops": {k: v / 1e9 for k, v in peaks.items()}, "runs": []}
    loops = {"reference": lambda bs, ep: reference_loop(objective.template, objective.data, bs, ep, cfg.seed),
             "sweeper": lambda bs, ep: sweeper_trial(objective, study, bs, ep)}
    for i, batch_size in enumerate(args.batch_sizes):
        epochs = args.epochs if i == 0 else 1
        pair = {}
        for name, run in loops.items():
            r = run(batch_size, epochs)
            flops = train_flops(objective.template, lengths) * epochs / r["train_seconds"]
            peak = peaks["bf16" if r["precision"] == "bf16" else "fp32"]
            r.update(batch_size=batch_size, epochs=epochs, loop=name, model_gflops=flops / 1e9, mfu=flops / peak)
            print(f"{name:9s} batch {batch_size:2d} x {epochs} epochs: {r['samples_per_s']:6.1f} samples/s, "
                  f"padding {r['padded_fraction']:.1%}, acc {r['accuracy']:.3f} F1 {r['f1']:.3f}, "
                  f"{flops / 1e9:.0f} GFLOP/s = {r['mfu']:.1%} of the {r['precision']} matmul peak"
                  + (f"; trial overhead {r['overhead_share']:.1%} of {r['trial_seconds']:.0f} s"
                     if name == "sweeper" else ""))
            pair[name] = r
            results["runs"].append(r)
        ratio = pair["sweeper"]["samples_per_s"] / pair["reference"]["samples_per_s"]
        results[f"speedup_batch{batch_size}"] = ratio
        print(f"speed-up at batch {batch_size}: {ratio:.2f}x")
    return results


if __name__ == "__main__":
    main()
