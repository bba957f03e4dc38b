"""What a worker does when told to stop: SIGTERM (a scheduler's preemption, `scancel`, `scontrol requeue`,
torchrun passing its own on), SIGUSR1/SIGUSR2 (SLURM's `--signal`, ahead of a time limit or a preemption;
submitit's is SIGUSR2). A trial that is training finishes its step, checkpoints within its epoch and stops
(sweeper/train/epoch.py: Preempted); the study queues it again as the machine's fault. Outside training the
signal acts at once, as before: an interrupt, or the handler that was there before (submitit's requeue).
Every rank of a data-parallel trial stops at the same step: they agree after each step (`Pause`)."""
from __future__ import annotations

import logging
import signal

from sweeper.scale import distributed

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
_previous: dict[int, object] = {}  # the handlers ours replaced (submitit's, in a SLURM job)
_requested: int | None = None  # the signal received, once one was
_training = False  # a trial's training is running: it stops itself at its next step


def install() -> None:
    """Take SIGTERM, SIGUSR1 and SIGUSR2, keeping whatever handled them before to hand over to."""
    for s in SIGNALS:
        current = signal.getsignal(s)
        if current is not _handle:
            _previous[s] = current
            signal.signal(s, _handle)


def _handle(signum, frame) -> None:
    global _requested
    first = _requested is None
    _requested = signum
    if _training:
        if first:
            log.warning("%s: the trial stops after its current step, with a checkpoint", signal.Signals(signum).name)
        return
    hand_over()
    raise KeyboardInterrupt


def requested() -> int | None:
    """The stop signal received, if any."""
    return _requested


def hand_over() -> None:
    """Once no trial trains (stopped, or none was), what the handler we replaced would have done with the signal:
    submitit's SIGUSR2 requeues the job and exits; its SIGTERM does nothing (the scheduler ends the job). The
    caller then raises KeyboardInterrupt: the signal's default, and the CLI's exit 130 with the resume command."""
    previous = _previous.get(_requested)
    if callable(previous):
        previous(_requested, None)


class Pause:
    """After each training step, whether to checkpoint (`minutes` of training since the last checkpoint) or
    stop (a signal came); the same answer on every rank. As a context manager: the trial's training, during
    which a signal waits for the next step instead of interrupting."""

    def __init__(self, minutes: float | None):
        from sweeper.train.epoch import CHECKPOINT, STOP  # torch: only once there is a trial to train

        self.seconds = None if minutes is None else 60 * minutes
        self.answers = {2: STOP, 1: CHECKPOINT}

    def __enter__(self) -> Pause:
        global _training
        _training = True
        return self

    def __exit__(self, *exc) -> None:
        global _training
        _training = False

    def __call__(self, since_checkpoint: float) -> str | None:
        local = 2 if _requested is not None else int(self.seconds is not None and since_checkpoint >= self.seconds)
        return self.answers.get(distributed.agree(local))  # any rank's signal or clock stops or saves them all


def stopped(message: str) -> str:
    """`message` (why the sweep stopped) with the signal that stopped it, if one did."""
    return f"{signal.Signals(_requested).name} received; {message}" if _requested is not None else message
