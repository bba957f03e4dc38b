"""Probes: "start many, stop early, continue some" (Dodge et al. 2020) as one bracket at the start of a study
(search.probe, off while probe.trials is 0).

The study's first probe.trials trials (the portfolio, then the sampler's) stop after probe.epochs of training (the
pruner does not stop them sooner); their value there ranks them. Once every probe has stopped, the best probe.keep
are queued again with the same parameters and trained in full; then the search goes on as configured (sampler,
pruner, budget). A continued probe starts over (a probe keeps no checkpoint within its first epoch; training is
deterministic per seed, so it repeats its probe's steps: keep x epochs of compute). Asynchronous halving cannot
judge a sequential study's first trials, which have no peers yet; a bracket judges every probe against all the
others at the same point.

A probe is a pruned trial with the user attribute `probe` (its stopping point, in epochs); a continued one carries
`continues` (the probe's number) and `promoted_at` (the probe's last step: the halving pruner does not judge it again
up to there)."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from sweeper.search.pruning import PROMOTED_AT, RUNG_SLACK, epochs_done

PROBE, CONTINUES = "probe", "continues"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


class ProbesRunning(Exception):
    """Every probe has started and some still run elsewhere: the bracket's next step waits for them."""


def probes(trials, own_failures: set[int]) -> list:
    """The study's probes that count: stopped, running or queued, and those failed by their own fault (numbers in
    `own_failures`; a probe the machine stopped is queued again and counts as that retry)."""
    return [t for t in trials if PROBE in t.user_attrs and (t.state != TrialState.FAIL or t.number in own_failures)]


def value(trial) -> float | None:
    """A probe's value where it stopped: its last report."""
    return trial.intermediate_values[trial.last_step] if trial.last_step is not None else None


def ranked(done: list, direction) -> list:
    """Probes with a value, best first (one stopped before its first report ranks nowhere)."""
    maximize = direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted((t for t in done if value(t) is not None), key=lambda t: (-value(t) if maximize else value(t),
                                                                          t.number))


def before_ask(study: optuna.Study, trials, probe, own_failures: set[int]) -> None:
    """Under the study's lock, before a trial is asked for: once every probe has stopped, queue the best
    probe.keep again (once per study); raise ProbesRunning while the last probes still run and nothing is queued."""
    if not probe.trials:
        return
    mine = probes(trials, own_failures)
    if len(mine) < probe.trials or any(t.user_attrs.get(CONTINUES) is not None for t in trials):
        return
    if any(t.state not in (*DONE, TrialState.FAIL) for t in mine):
        if not any(t.state == TrialState.WAITING for t in trials):
            raise ProbesRunning
        return
    for t in ranked([t for t in mine if t.state in DONE], study.direction)[:probe.keep]:  # not one that failed
        study.enqueue_trial(t.params, user_attrs={CONTINUES: t.number, PROMOTED_AT: t.last_step})


def after_ask(trial: optuna.Trial, trials, probe, own_failures: set[int]) -> None:
    """Under the lock, once the trial is asked for: it is a probe while the study has fewer than probe.trials (a
    queued trial that is a retry or a continued probe keeps its role)."""
    if not probe.trials or PROBE in trial.user_attrs or CONTINUES in trial.user_attrs:
        return
    if len(probes([t for t in trials if t.number != trial.number], own_failures)) < probe.trials:
        trial.set_user_attr(PROBE, float(probe.epochs))


def stop(at: float | None, trial: optuna.Trial, step: int, value: float, train_size: int) -> None:
    """After the report of `value` at `step`: a probe (`at`: its user attribute, read once per trial, not at every
    report) that trained its probe.epochs stops, ranked by that value."""
    done = epochs_done(trial, step, train_size) if at is not None else None
    if done is not None and done >= at * RUNG_SLACK:
        raise optuna.TrialPruned(f"probe: {value:.4f} after {done:.2f} epochs (search.probe)")


def role(attrs: dict) -> str:
    """The trial's part in the bracket, for its log line."""
    if PROBE in attrs:
        return f" (a probe: stops after {attrs[PROBE]:.2g} epochs)"
    if CONTINUES in attrs:
        return f" (probe {attrs[CONTINUES]} continued, from the start)"
    return ""
