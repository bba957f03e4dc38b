"""One epoch of training steps, and the points within it where training may pause: a checkpoint on the clock
or because the process was told to stop (the caller's `pause` decides, the same on every rank). An epoch resumed
from such a checkpoint skips the batches it had trained and restores its running sums and RNG, so it ends as the
uninterrupted epoch would have."""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

CHECKPOINT, STOP = "checkpoint", "stop"  # what `pause` may answer after a step


class NonFiniteLoss(ArithmeticError):
    """The training loss became NaN or infinite: the trial cannot recover."""


class Preempted(KeyboardInterrupt):
    """Training stopped on request after saving its state within the epoch. A KeyboardInterrupt, as the
    signal that asked for it was: every handler on the way out treats it as an interruption, to be resumed."""


@dataclass
class Partial:
    """An epoch's progress at a checkpoint within it: batches done and the running sums its end reports."""
    step: int = 0
    loss_sum: float = 0.0
    real_tokens: int = 0
    tokens: int = 0
    samples: int = 0
    seconds: float = 0.0  # training time so far, evaluations within the epoch excluded
    logged: list = field(default_factory=lambda: [0.0, 0])  # loss sum and steps at the last on_log

    def to_dict(self) -> dict:
        return asdict(self)


def rng_state() -> dict:
    """Every RNG a training step may draw from (dropout: torch's; data: numpy's and Python's)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def train_epoch(accelerator, model, train_dl, optimizer, scheduler, epoch, log_every, progress,
                on_log=None, seen: int = 0, at: set[int] = frozenset(), within=None, start: Partial | None = None,
                rng: dict | None = None, pause=None, save=None, max_grad_norm: float | None = None) -> dict:
    """Train one epoch; `train_dl` starts after `start.step` batches when resuming (their sums in `start`), and
    `rng` is the RNG state at that checkpoint, restored once the first batch is drawn (drawing it consumed RNG).
    After each step, `pause(seconds since the last checkpoint)` may answer CHECKPOINT (`save(Partial)`, then go on)
    or STOP (save, then raise Preempted). `max_grad_norm`: the gradients' global norm clipped to it before each
    step."""
    model.train()
    p = start or Partial()
    loss_sum = torch.tensor(p.loss_sum, device=accelerator.device)
    real_tokens = torch.tensor(p.real_tokens, device=accelerator.device, dtype=torch.long)
    tokens, samples, logged = p.tokens, p.samples, tuple(p.logged)
    # disable=None: no bar where stderr is not a terminal (a file would get a line of carriage returns).
    n_batches = len(train_dl) + p.step
    bar = tqdm(train_dl, desc=f"epoch {epoch}", leave=False, initial=p.step, total=n_batches,
               disable=None if progress and accelerator.is_local_main_process else True)
    start_time, paused = time.perf_counter(), 0.0  # paused: evaluations and checkpoints, not training time
    saved_at = start_time  # an epoch starts right after a checkpoint (the previous epoch's, or the resumed one)
    step = p.step
    for step, batch in enumerate(bar, p.step + 1):
        if rng is not None:
            set_rng_state(rng)
            rng = None
        loss = model(**batch).loss
        accelerator.backward(loss)
        if max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        # Accumulate on the device; reading a value back costs a host sync, so only every log_every steps.
        loss_sum += loss.detach()
        real_tokens += batch["attention_mask"].sum()
        tokens += batch["attention_mask"].numel()
        samples += batch["input_ids"].shape[0]
        if step % log_every == 0:
            mean = check_finite(loss_sum / step, epoch, step)
            bar.set_postfix(loss=f"{mean:.4f}")
            if on_log is not None:
                on_log({"train/loss": (mean * step - logged[0]) / (step - logged[1])},
                       seen + samples * accelerator.num_processes)
                logged = (mean * step, step)
        if step in at:
            began = time.perf_counter()
            within(samples * accelerator.num_processes, step / n_batches)
            paused += time.perf_counter() - began
        if pause is not None and (due := pause(time.perf_counter() - saved_at)):
            began = time.perf_counter()
            save(Partial(step, loss_sum.item(), int(real_tokens.item()), tokens, samples,
                         p.seconds + began - start_time - paused, list(logged)))
            saved_at = time.perf_counter()
            paused += saved_at - began
            if due == STOP:
                raise Preempted(f"stopped after batch {step} of epoch {epoch}, its state saved")
    seconds = p.seconds + time.perf_counter() - start_time - paused
    mean_loss = check_finite(loss_sum / max(step, 1), epoch, step)
    return {"loss": mean_loss, "train_seconds": seconds, "samples_per_s": samples / seconds,
            "padded_fraction": 1 - real_tokens.item() / max(tokens, 1)}


def check_finite(mean_loss: torch.Tensor, epoch: int, step: int) -> float:
    value = mean_loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(f"training loss is {value} at epoch {epoch}, step {step}")
    return value
