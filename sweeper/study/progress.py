"""How far a study is while it runs: finished trials of the target, the best so far, elapsed time and
the time left, read from the study's own records so that all its workers agree. A bar updated in place
on a terminal (study.progress=bar), plain log lines otherwise (log): a file never gets carriage returns."""
from __future__ import annotations

import logging
import os
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from optuna.trial import TrialState

from sweeper.search import budget

log = logging.getLogger(__name__)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BAR_REFRESH_S = 5  # the bar re-reads the study this often; a log line waits study.progress_every


def choose(mode: str, stream=None) -> str:
    """study.progress as it applies here: auto is a bar where `stream` (stderr) is a terminal, else log."""
    if mode != "auto":
        return mode
    stream = sys.stderr if stream is None else stream
    return "bar" if hasattr(stream, "isatty") and stream.isatty() else "log"


def record_worker(trial) -> None:
    """Who runs the trial, for mode=status (sweeper/results/status.py)."""
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())


@dataclass
class Snapshot:
    study: str
    finished: int
    target: int
    running: int
    best: str
    elapsed: float
    left: float | None  # seconds; None until a trial has finished
    budget: str = ""  # `budget 1.23/3 epochs` while a compute budget is set (sweeper/search/budget.py)

    def line(self) -> str:
        """`mrpc-tiny: 2/4 trials finished (1 running), best f1 0.8120 (trial 0), 0:00:14 elapsed, ~0:00:15 left`"""
        running = f" ({self.running} running)" if self.running else ""
        return f"{self.study}: {self.finished}/{self.target} trials finished{running}, {self.tail()}"

    def tail(self) -> str:
        budget = f"{self.budget}, " if self.budget else ""
        return (f"{budget}{self.best}, {clock(self.elapsed)} elapsed, "
                f"{left_text(self.left, self.finished >= self.target)}")


def clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def left_text(left: float | None, done: bool) -> str:
    if done:
        return "done"
    return "time left: after the first trial" if left is None else f"~{clock(left)} left"


def seconds_left(trials, target: int, now: datetime, workers: int) -> float | None:
    """What is left x the mean duration of the finished trials (pruned ones count, as they will recur),
    less what the running trials have done already, shared among the workers running."""
    durations = [t.duration.total_seconds() for t in trials if t.state in FINISHED and t.duration is not None]
    if not durations:
        return None
    mean = statistics.fmean(durations)
    left = target - sum(t.state in FINISHED for t in trials)
    if left <= 0:
        return 0.0
    started = [t.datetime_start for t in trials if t.state == TrialState.RUNNING and t.datetime_start]
    done = sum(min(max((now - s).total_seconds(), 0.0), mean) for s in started)
    return max(left * mean - done, 0.0) / max(workers, 1)


def best_text(study, trials) -> str:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return "no trial complete yet"
    if len(study.directions) > 1:
        return f"{len(study.best_trials)} trials on the Pareto front"
    name = (study.metric_names or ["value"])[0]
    pick = max if study.direction.name == "MAXIMIZE" else min
    best = pick(complete, key=lambda t: t.value)
    return f"best {name} {best.value:.4f} (trial {best.number})"


def snapshot(study, target: int, elapsed: float, between_trials: bool = False) -> Snapshot:
    """The study as its storage has it now. Between this worker's trials, it counts as a worker too."""
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    finished = sum(t.state in FINISHED for t in trials)
    workers = running + (1 if between_trials and finished < target else 0)
    now = datetime.now()
    # The budget usually ends the study before study.n_trials: the sooner of the two ends it.
    lefts = [x for x in (seconds_left(trials, target, now, workers),
                         budget.seconds_left(trials, study.user_attrs, workers, now)) if x is not None]
    return Snapshot(study.study_name, finished, target, running, best_text(study, trials), elapsed,
                    min(lefts) if lefts else None, budget.progress(trials, study.user_attrs))


class Watch:
    """Shows a study's progress while `run_trials` runs: an Optuna callback (a line or a bar update at each
    trial's end) and a thread for the time between (a log line every study.progress_every seconds)."""

    def __init__(self, study, target: int, mode: str, every: int):
        self.study, self.target, self.mode = study, target, choose(mode)
        self.every = BAR_REFRESH_S if self.mode == "bar" else every
        self.start = self.last = time.monotonic()
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.bar = self.thread = self.redirect = None
        self.done = False  # the last update showed the study complete

    def __enter__(self) -> Watch:
        if self.mode == "off":
            return self
        if self.mode == "bar":
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # The trial's log lines (sweeper's, Optuna's own) go above the bar instead of breaking it.
            self.redirect = logging_redirect_tqdm([logging.root, logging.getLogger("optuna")])
            self.redirect.__enter__()
            self.bar = tqdm(total=self.target, desc=self.study.study_name, dynamic_ncols=True,
                            bar_format="{desc}: {bar:20} {n}/{total} trials{postfix}")
        self.show()
        self.thread = threading.Thread(target=self.tick, name="sweeper-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.mode == "off":
            return
        self.stop.set()
        self.thread.join()
        if not self.done and exc[0] is None:  # the last trials finished in other workers
            self.show()
        if self.bar is not None:
            self.bar.close()
            self.redirect.__exit__(None, None, None)

    def __call__(self, study, trial) -> None:
        """Optuna's callback after each trial."""
        if self.mode != "off":
            self.show(between_trials=True)

    def tick(self) -> None:
        while not self.stop.wait(1.0):
            if time.monotonic() - self.last >= self.every:
                self.show()

    def show(self, between_trials: bool = False) -> None:
        with self.lock:
            self.last = time.monotonic()
            try:
                s = snapshot(self.study, self.target, self.last - self.start, between_trials)
            except Exception as e:  # a storage hiccup costs one update, never the sweep
                log.debug("progress: cannot read study %s: %s", self.study.study_name, e)
                return
            self.done = s.finished >= s.target
            if self.bar is None:
                log.info("%s", s.line())
                return
            self.bar.n = min(s.finished, self.target)
            self.bar.set_postfix_str((f"{s.running} running, " if s.running else "") + s.tail(), refresh=False)
            self.bar.refresh()
