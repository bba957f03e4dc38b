"""The Accelerate training loop of one trial: train, evaluate and checkpoint each epoch, then call
`on_epoch_end(epoch, metrics)`. It knows nothing of Optuna; only this module touches the Accelerator."""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed

from sweeper.train import checkpoints, disk, fastpath
from sweeper.train.epoch import STOP, Partial, Preempted, rng_state, train_epoch
from sweeper.train.metrics import compute_metrics
from sweeper.train.optim import make_optimizer, make_scheduler

log = logging.getLogger(__name__)
_accelerator: Accelerator | None = None


@dataclass
class Hparams:
    """What one training run does: a trial's configuration as the loop needs it (sweeper/study/objective.py)."""
    lr: float
    epochs: int
    batch_size: int
    schedule: str = "linear"  # after warmup: linear or cosine decay to zero, or constant (train/optim.py)
    warmup_ratio: float = 0.0
    layer_decay: float = 1.0  # each layer's lr is this times the one above's; 1.0 = one lr
    max_grad_norm: float | None = None  # gradient clipping; None = none
    keep_best: str | None = None  # a metric: the run ends with its best epoch's weights and metrics, not the last
    maximize: bool = True  # keep_best's direction


def kept(history: list[dict], hp: Hparams) -> dict:
    """The epoch a run ends with: its last, or with hp.keep_best the best by that metric (the first of ties)."""
    if hp.keep_best is None or not history:
        return history[-1]
    sign = 1 if hp.maximize else -1
    return max(history, key=lambda h: (sign * h[hp.keep_best], -h["epoch"]))


def resolve_precision(requested: str) -> str:
    """`auto` is bf16 where the hardware computes it natively (CUDA with bf16, CPUs with
    AVX512-BF16/AMX), fp16 on older GPUs, else fp32 ("no")."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "no"


def get_accelerator(precision: str) -> Accelerator:
    """The process's one Accelerator; trials share it and free their objects from it when done."""
    global _accelerator
    if _accelerator is None or _accelerator.mixed_precision != precision:
        logging.getLogger("accelerate").setLevel(logging.WARNING)  # a line per checkpoint file otherwise
        AcceleratorState._reset_state(reset_partial_state=True)
        _accelerator = Accelerator(mixed_precision=precision)
    return _accelerator


def pad_multiple(precision: str) -> int | None:
    """Tensor cores (and AMX tiles) want sequence lengths in multiples of 8 under mixed precision."""
    return None if precision == "no" else 8


def train(model, train_dl, eval_dl, hp: Hparams, *, optimizer_fn, precision: str, metric_names, seed: int,
          on_epoch_end: Callable[[int, dict], None],
          checkpoint: Path | None = None, resume: Path | None = None, log_every: int = 50,
          progress: bool = True, cpu_fastpath: bool = True, compile_model: bool = False,
          on_train_end: Callable[[torch.nn.Module], None] | None = None, regression: bool = False,
          extra_eval: dict | None = None, on_log: Callable[[dict, int], None] | None = None,
          evals_per_epoch: int = 1, on_evaluate: Callable[[int, dict], None] | None = None,
          subset_dl=None, pause: Callable[[float], str | None] | None = None) -> list[dict]:
    """Train `model` for hp.epochs and return the per-epoch metrics. With `checkpoint`, the state after
    each epoch is saved under it; with `resume`, training continues from that saved state. `extra_eval`
    ({split: dataloader}) is evaluated too, its metrics named <split>_<metric>. After the last epoch, the
    main process hands the trained (unwrapped) model to `on_train_end`, e.g. to export it, and passes the loss
    at each read-back and every epoch's metrics to `on_log(values, step)`, step = training samples seen. Each
    epoch's metrics include `train_samples` and `evaluated_samples`: what this call computed so far. With
    `on_evaluate` and evals_per_epoch k > 1, the model is also evaluated on `subset_dl` (default: eval_dl) k - 1
    times within each epoch, after evenly spaced batches, and `on_evaluate(step, metrics)` called, step = the
    epoch's samples by the share of its batches done. With `checkpoint` and `pause` (sweeper/train/epoch.py),
    the state is also saved within an epoch when `pause` says so, and training stops there on STOP (Preempted);
    a `resume` from such a checkpoint continues at the next batch."""
    accelerator = get_accelerator(precision)
    set_seed(seed)
    sampler = train_dl.batch_sampler  # kept: prepare() may wrap it, set_epoch must reach it
    if cpu_fastpath and accelerator.device.type == "cpu" and accelerator.num_processes == 1:
        fastpath.apply(model)
    optimizer = make_optimizer(optimizer_fn, model, hp.lr, hp.layer_decay, accelerator.device)
    scheduler = make_scheduler(optimizer, hp.schedule, hp.warmup_ratio, hp.epochs * len(train_dl))
    if compile_model:
        model = torch.compile(model, dynamic=True)
    model, optimizer, train_dl, eval_dl, scheduler = accelerator.prepare(
        model, optimizer, train_dl, eval_dl, scheduler)
    extra_eval = {split: accelerator.prepare(dl) for split, dl in (extra_eval or {}).items()}
    subset_dl = eval_dl if subset_dl is None else accelerator.prepare(subset_dl)
    on_log = on_log if accelerator.is_main_process else None
    epoch_samples = len(train_dl.dataset)  # the whole training set, however many processes share it
    # What this call computed (a resumed run: since its checkpoint), for a compute budget (sweeper/search/budget.py).
    spent = {"train_samples": 0, "evaluated_samples": 0}
    try:
        history, start, partial, rng = [], 0, None, None
        best = None  # the kept epoch's weights (hp.keep_best), while that is not the last epoch
        if resume is not None:
            accelerator.load_state(str(resume))
            progress = checkpoints.read_progress(resume)
            history, start = progress["history"], len(progress["history"])
            if "within" in progress:  # saved within epoch `start`: its RNG, for the step after the saved one
                partial, rng = Partial(**progress["within"]), rng_state()
            log.info("resuming from %s after epoch %d%s", resume, start - 1,
                     f", batch {partial.step} of epoch {start}" if partial else "")
            if history and kept(history, hp) is not history[-1]:
                best = checkpoints.best_weights(checkpoint or resume.parent)
        for epoch in range(start, hp.epochs):
            train_dl.set_epoch(epoch)  # Accelerate re-sets the sampler's epoch from its own counter,
            sampler.set_epoch(epoch)   # which restarts at 0 on resume; ours may sit under a shard
            n_batches = len(train_dl)
            begun = partial if epoch == start else None  # an epoch resumed within: its first batches were trained
            # This call's compute excludes the resumed epoch's batches trained before the checkpoint.
            trained = spent["train_samples"] - (begun.samples * accelerator.num_processes if begun else 0)

            def within(samples: int, share: float, epoch=epoch, trained=trained) -> None:
                """An evaluation within the epoch, `samples` into it (all processes), after `share` of its
                batches: on the subset. Its step is that share of the epoch's samples, not `samples`: the one
                short batch (the set's remainder) lands wherever the shuffle or length grouping put it, and
                before the first evaluation it moved that report below its rung (RTE at batch 32: 648 samples,
                0.325 epochs, judged at 0.66 instead). `samples` is what the compute budget counts."""
                metrics = evaluate(accelerator, model, subset_dl, metric_names, regression)
                model.train()
                spent.update(train_samples=trained + samples,
                             evaluated_samples=spent["evaluated_samples"] + metrics["eval_samples"])
                on_evaluate(epoch * epoch_samples + round(share * epoch_samples), {**metrics, **spent, "epoch": epoch})

            def save_within(p: Partial, epoch=epoch, n_batches=n_batches) -> None:
                save_checkpoint(accelerator, checkpoint, history, checkpoints.estimate(checkpoint, model), p)
                log.info("checkpoint within epoch %d after batch %d of %d", epoch, p.step, n_batches)

            at = within_epoch_steps(n_batches, evals_per_epoch) if on_evaluate is not None else set()
            epoch_dl = accelerator.skip_first_batches(train_dl, begun.step) if begun else train_dl
            stats = train_epoch(accelerator, model, epoch_dl, optimizer, scheduler, epoch, log_every, progress,
                                on_log, epoch * epoch_samples, at, within, start=begun, rng=rng if begun else None,
                                pause=pause if checkpoint is not None else None, save=save_within,
                                max_grad_norm=hp.max_grad_norm)
            spent["train_samples"] = trained + epoch_samples
            metrics = evaluate(accelerator, model, eval_dl, metric_names, regression)
            spent["evaluated_samples"] += metrics["eval_samples"]
            for split, dl in extra_eval.items():
                extra = evaluate(accelerator, model, dl, metric_names, regression)
                metrics.update({f"{split}_{m}": extra[m] for m in metric_names})
                spent["evaluated_samples"] += extra["eval_samples"]
            stats["total_train_seconds"] = stats["train_seconds"] + (
                history[-1].get("total_train_seconds", 0.0) if history else 0.0)
            metrics = {**metrics, **stats, **spent, "epoch": epoch}
            history.append(metrics)
            improved = hp.keep_best is not None and kept(history, hp) is metrics
            if improved:  # in memory, for the end; on disk beside the checkpoint, for a resumed run
                best = {k: v.detach().to("cpu", copy=True) for k, v in
                        accelerator.get_state_dict(model, unwrap=True).items()}
            if checkpoint is not None:
                save_checkpoint(accelerator, checkpoint, history, checkpoints.estimate(checkpoint, model),
                                keep_best=improved)
            if on_log is not None:  # before on_epoch_end, which may prune: a pruned epoch is logged too
                on_log(metrics, (epoch + 1) * epoch_samples)
            on_epoch_end(epoch, metrics)
            # Told to stop during the evaluation or the report: stop at the checkpoint just saved (after the last
            # epoch, the trial ends anyway). Every rank asks, as after each step.
            if pause is not None and checkpoint is not None and epoch < hp.epochs - 1 and pause(0.0) == STOP:
                raise Preempted(f"stopped after epoch {epoch}, its state saved")
        if best is not None and kept(history, hp) is not history[-1]:
            accelerator.unwrap_model(model).load_state_dict(best)  # the run ends as its kept epoch ended
        if on_train_end is not None and accelerator.is_main_process:
            on_train_end(accelerator.unwrap_model(model))
        return history
    finally:
        accelerator.free_memory()


def within_epoch_steps(n_batches: int, evals_per_epoch: int) -> set[int]:
    """The batch counts after which to evaluate within an epoch: k - 1 evenly spaced ones (the k-th is the
    epoch's end)."""
    return {round(j * n_batches / evals_per_epoch) for j in range(1, evals_per_epoch)} - {0, n_batches}


@torch.no_grad()
def evaluate(accelerator, model, eval_dl, metric_names, regression: bool = False) -> dict:
    model.eval()
    predictions, labels = [], []
    start = time.perf_counter()
    for batch in eval_dl:
        logits = model(**batch).logits
        # A regression's prediction is its one output; a classifier's the highest-scoring class.
        predicted = logits.squeeze(-1).float() if regression else logits.argmax(dim=-1)
        p, y = accelerator.gather_for_metrics((predicted, batch["labels"]))
        predictions.append(p)
        labels.append(y)
    metrics = compute_metrics(torch.cat(labels).cpu().numpy(), torch.cat(predictions).cpu().numpy(),
                              metric_names)
    # eval_samples: the validation set counted once, however many processes shared it.
    return {**metrics, "eval_samples": sum(len(y) for y in labels), "eval_seconds": time.perf_counter() - start}


def save_checkpoint(accelerator, trial: Path, history: list[dict], needed: int = 0,
                    within: Partial | None = None, keep_best: bool = False) -> None:
    """Save model, optimizer, scheduler and RNG state after an epoch (or `within` one: after its batch
    within.step; with `keep_best`, the epoch's weights as the trial's best too). Written beside the previous
    checkpoint and renamed into place, so a kill or a full disk mid-save leaves the last good one and nothing
    half-written. Raises DiskFull when fewer than `needed` bytes are free, or the write runs out."""
    final = checkpoints.epoch_dir(trial, len(history), within.step if within else 0)
    partial = final.with_suffix(".tmp")
    try:
        with disk.writing(trial, needed, "a checkpoint"):
            accelerator.save_state(str(partial))
            accelerator.wait_for_everyone()  # every rank's RNG state is in before the directory is renamed
            if accelerator.is_main_process:
                progress = {"epoch": len(history), "history": history}
                checkpoints.write_progress(partial, {**progress, "within": within.to_dict()} if within else progress)
                partial.rename(final)
                if keep_best:  # the kept epoch's weights outlive its checkpoint (a link: no copy)
                    checkpoints.link_best_weights(trial, final)
                checkpoints.drop_older(trial, keep=final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    accelerator.wait_for_everyone()
