"""Checkpoint layout on disk: one directory per trial holding its last finished epoch,
which checkpoint a retried trial resumes from, and which ones a study keeps."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

PROGRESS = "progress.json"  # written last: an epoch directory without it is incomplete


def trial_dir(root: Path, number: int) -> Path:
    return Path(root) / f"trial-{number}"


def epoch_dir(trial: Path, epoch: int) -> Path:
    return trial / f"epoch-{epoch}"


def latest(trial: Path) -> Path | None:
    """The newest complete epoch checkpoint of a trial, if any."""
    done = [d for d in trial.glob("epoch-*") if d.suffix != ".tmp" and (d / PROGRESS).exists()]
    return max(done, key=lambda d: int(d.name.split("-")[1]), default=None)


def read_progress(checkpoint: Path) -> dict:
    """{"epoch": epochs finished, "history": per-epoch metrics}."""
    return json.loads((checkpoint / PROGRESS).read_text())


def write_progress(checkpoint: Path, progress: dict) -> None:
    (checkpoint / PROGRESS).write_text(json.dumps(progress))


def drop_older(trial: Path, keep: Path) -> None:
    for d in trial.glob("epoch-*"):
        if d != keep:
            shutil.rmtree(d, ignore_errors=True)


def claim(root: Path, number: int, retried: list[int]) -> Path | None:
    """Move the newest checkpoint among the trials this one retries into this trial's directory
    (a move, so disk use does not grow) and return it; None when there is nothing to resume."""
    for earlier in reversed(retried):
        source = trial_dir(root, earlier)
        if latest(source) is not None:
            target = trial_dir(root, number)
            shutil.rmtree(target, ignore_errors=True)
            source.rename(target)
            return latest(target)
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
