"""Whose fault a failed trial is: the machine's (no space left, the storage unreachable, a lost rank,
the process killed), which is retried and never counted against study.max_failed_fraction, or the
trial's (NaN, an exception in its own computation, out of memory at its batch size), which counts."""
from __future__ import annotations

import datetime
import sqlite3

import sqlalchemy
from optuna.trial import TrialState

from sweeper.scale import distributed
from sweeper.train.disk import DiskFull, chain, no_space

MACHINE, TRIAL = "machine", "trial"
CAUSE = "fail_cause"  # the user attribute a failed trial records its cause in
# A user attribute: the machine stopped the trial and said so (a signal, a full disk, an unreachable storage), so
# its retry does not use up study.max_retries. A worker that died unexplained (killed; a rank lost) says nothing:
# a trial that kills its worker every time is retried at most max_retries times.
STOPPED = "stopped_by_machine"
# What an unreachable or broken database raises (a trial's own code never talks to it).
STORAGE_ERRORS = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                  sqlalchemy.exc.DisconnectionError, sqlite3.OperationalError)


class MachineFault(BaseException):
    """Ends the sweep after a machine fault. Not an Exception, so Optuna's catch=(Exception,) leaves the
    trial RUNNING for run_trials to fail and queue again (as after Ctrl-C), without a traceback logged."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def cause(error: BaseException) -> str:
    """MACHINE if the error, or one it was raised from or during, is the environment's; else TRIAL."""
    for e in chain(error):
        if isinstance(e, (KeyboardInterrupt, MachineFault, *STORAGE_ERRORS)) or no_space(e):
            return MACHINE
        if isinstance(e, Exception) and distributed.lost_peer(e):
            return MACHINE
    return TRIAL


def failure_cause(trial, retried: set[int]) -> str | None:
    """A finished trial's recorded cause; a trial failed by its stale heartbeat (its worker killed) and
    queued again records none: MACHINE if it was retried, else TRIAL. None for a trial that did not fail."""
    if trial.state != TrialState.FAIL:
        return None
    return trial.user_attrs.get(CAUSE) or (MACHINE if trial.number in retried else TRIAL)


def retried_numbers(trials) -> set[int]:
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def own_failures(trials) -> set[int]:
    """The numbers of the trials that failed by their own fault."""
    retried = retried_numbers(trials)
    return {t.number for t in trials if failure_cause(t, retried) == TRIAL}


def by_cause(trials) -> dict[str, int]:
    """How many trials failed for each cause."""
    retried = retried_numbers(trials)
    causes = [failure_cause(t, retried) for t in trials]
    return {c: causes.count(c) for c in (MACHINE, TRIAL)}


def counted(trials, since: datetime.datetime | None = None) -> list:
    """The failures the failure limit counts: the trial's own, of trials started since `since` (this run)."""
    retried = retried_numbers(trials)
    return [t for t in trials if failure_cause(t, retried) == TRIAL
            and (since is None or (t.datetime_start is not None and t.datetime_start >= since))]


def no_space_line(error: BaseException, out_dir) -> str:
    """The one line a sweep stopped by a full disk ends with."""
    full = next((e for e in chain(error) if isinstance(e, DiskFull)), None)
    reason = full.reason if full else "no space left"
    return (f"out_dir={out_dir}: {reason}; free space or set study.keep_checkpoints=none / a larger out_dir, "
            "then run the same command again")
