"""Checkpoint layout on disk: one directory per trial holding its last finished epoch (or its place within one),
which checkpoint a retried trial resumes from, and which ones a study keeps."""
from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

from sweeper.train import disk

log = logging.getLogger(__name__)
PROGRESS = "progress.json"  # written last: an epoch directory without it is incomplete
BEST = "best.safetensors"  # train.keep_best: the best epoch's weights, once its checkpoint is gone
# Beside a trial's checkpoints: its worker stopped it for the machine's reason (an unreachable storage) and could
# not say so in the storage; its retry then uses up none of study.max_retries.
STOPPED_NOTE = "stopped-by-machine.txt"


def trial_dir(root: Path, number: int) -> Path:
    return Path(root) / f"trial-{number}"


def epoch_dir(trial: Path, epoch: int, step: int = 0) -> Path:
    """After `epoch` finished epochs and `step` batches of the next one (a checkpoint within an epoch)."""
    return trial / (f"epoch-{epoch}-step-{step}" if step else f"epoch-{epoch}")


def position(checkpoint: Path) -> tuple[int, int]:
    """(finished epochs, batches of the next) a checkpoint directory was saved at."""
    parts = checkpoint.name.split("-")
    return int(parts[1]), int(parts[3]) if len(parts) == 4 else 0


def latest(trial: Path) -> Path | None:
    """The newest complete checkpoint of a trial, if any."""
    done = [d for d in trial.glob("epoch-*") if d.suffix != ".tmp" and (d / PROGRESS).exists()]
    return max(done, key=position, default=None)


def read_progress(checkpoint: Path) -> dict:
    """{"epoch": epochs finished, "history": per-epoch metrics}, and "within" (the epoch in progress: batches
    done, running sums; sweeper/train/epoch.py Partial) for a checkpoint within an epoch."""
    return json.loads((checkpoint / PROGRESS).read_text())


def write_progress(checkpoint: Path, progress: dict) -> None:
    (checkpoint / PROGRESS).write_text(json.dumps(progress))


def link_best_weights(trial: Path, epoch: Path) -> None:
    """The epoch's model weights, also as the trial's best (train.keep_best): a hard link, renamed into place."""
    link = trial / f"{BEST}.tmp"
    link.unlink(missing_ok=True)
    os.link(epoch / "model.safetensors", link)
    link.rename(trial / BEST)


def best_weights(trial: Path) -> dict:
    """The state dict link_best_weights kept."""
    from safetensors.torch import load_file

    return load_file(trial / BEST)


def note_stopped(trial: Path, reason: str) -> None:
    trial.mkdir(parents=True, exist_ok=True)
    (trial / STOPPED_NOTE).write_text(reason + "\n")


def stopped(trial: Path) -> bool:
    return (trial / STOPPED_NOTE).exists()


def drop_older(trial: Path, keep: Path) -> None:
    for d in trial.glob("epoch-*"):
        if d != keep:
            shutil.rmtree(d, ignore_errors=True)


def estimate(trial: Path, model) -> int:
    """A checkpoint's size: the trial's previous one's, else the model's weights and AdamW's two moments."""
    last = latest(trial)
    return disk.dir_bytes(last) if last is not None else 3 * disk.model_bytes(model)


def largest(root: Path) -> int:
    """The size of the largest checkpoint of a study now on disk (0 when there is none)."""
    return max((disk.dir_bytes(c) for d in Path(root).glob("trial-*") if (c := latest(d))), default=0)


def damage(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (a truncated or corrupt file, a bad progress.json); None if it
    can. Safetensors' header must cover the file; torch.save's zip archives must pass their CRC checks."""
    from safetensors import safe_open

    try:
        if not isinstance(read_progress(checkpoint).get("history"), list):
            return f"{PROGRESS} holds no history"
    except (OSError, ValueError, AttributeError) as e:
        return f"{PROGRESS}: {e}"
    files = sorted(checkpoint.iterdir())
    if not any(f.name.startswith("model") for f in files) or not any(f.name.startswith("optimizer") for f in files):
        return "no model or optimizer state"
    for f in files:
        try:
            if f.suffix == ".safetensors":
                with safe_open(f, "pt"):
                    pass
            elif f.suffix in (".bin", ".pkl", ".pt"):
                with zipfile.ZipFile(f) as z:
                    if (bad := z.testzip()) is not None:
                        return f"{f.name}: {bad} fails its CRC check"
        except Exception as e:  # safetensors raises its own SafetensorError
            return f"{f.name}: {e}"
    return None


def readable(trial: Path) -> Path | None:
    """The trial's newest checkpoint that can be resumed from; damaged newer ones are deleted, and said so."""
    damaged = []
    while (newest := latest(trial)) is not None and (reason := damage(newest)) is not None:
        damaged.append(f"{newest.name} ({reason})")
        shutil.rmtree(newest)
    if damaged:
        log.warning("%s: damaged checkpoint %s; resuming from %s", trial, "; ".join(damaged),
                    newest.name if newest else "the start of the trial")
    return newest


def claim(root: Path, number: int, retried: list[int]) -> Path | None:
    """Move the newest checkpoint among the trials this one retries into this trial's directory
    (a move, so disk use does not grow) and return its newest readable epoch; None when there is
    nothing to resume."""
    for earlier in reversed(retried):
        source = trial_dir(root, earlier)
        if latest(source) is not None:
            target = trial_dir(root, number)
            shutil.rmtree(target, ignore_errors=True)
            source.rename(target)
            (target / STOPPED_NOTE).unlink(missing_ok=True)  # said of the trial it retries, not of this one
            return readable(target)
    return None


def prune(root: Path, trials, best: set[int], keep: str) -> list[int]:
    """Delete checkpoints no one needs: keep running or queued trials' (and those they retry),
    and per `keep` the best finished trials' (the Pareto front of a multi-objective study), every
    finished trial's, or none. Returns the deleted."""
    from optuna.trial import TrialState

    states = {t.number: t.state for t in trials}
    pending = set()
    for t in trials:
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            pending.update([t.number, *t.system_attrs.get("retry_history", [])])
    deleted = []
    for d in Path(root).glob("trial-*"):
        n = int(d.name.split("-")[1])
        state = states.get(n)
        finished = state in (TrialState.COMPLETE, TrialState.PRUNED)
        if state is None or n in pending or (keep == "all" and finished) or (keep == "best" and n in best):
            continue
        shutil.rmtree(d, ignore_errors=True)
        deleted.append(n)
    return deleted
