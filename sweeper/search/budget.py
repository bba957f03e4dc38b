"""A study's budget in compute: what its trials (and re-validation runs) have spent, read from storage, and
whether study.budget_epochs / study.budget_minutes is reached. Knows trials' records, nothing of tensors."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from optuna.trial import TrialState

TRAIN = "train_samples"  # user attributes the loop's metrics set at each report (sweeper/train/loop.py)
EVALUATED = "evaluated_samples"
# An evaluated sample costs a forward pass, a trained one forward and backward: about 2N against 6N FLOPs
# per token for N parameters, so evaluation counts a third of a training sample against budget_epochs.
EVAL_WEIGHT = 1 / 3
STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running"}


@dataclass
class Spent:
    """Training samples by trial state, evaluated samples, trial minutes, and a retrain's samples."""
    train: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES.values(), 0))
    evaluated: int = 0
    minutes: float = 0.0
    retrain: int = 0
    verdict: int = 0  # the verdict's runs (sweeper/results/verdict.py): inside the budget, unlike a retrain

    @property
    def samples(self) -> float:
        """Training-sample equivalents the budget counts: every trial's training and evaluation, the verdict's."""
        return sum(self.train.values()) + EVAL_WEIGHT * self.evaluated + self.verdict


def spent(study, now: datetime | None = None) -> Spent:
    """Sum over all of the study's trials, from their stored attributes: a pruned or failed trial counts what
    it trained up to its last report, a retry only what it trained itself (the loop counts from its checkpoint),
    a running trial (another worker's) what it has reported and its minutes so far."""
    return spent_by(study.get_trials(deepcopy=False), study.user_attrs, now)


def spent_by(trials, study_attrs: dict, now: datetime | None = None) -> Spent:
    """spent() from a study's trials and user attributes, for readers that hold no Study (mode=status)."""
    out, now = Spent(), now or datetime.now()
    for t in trials:
        state = STATES.get(t.state)
        if state is None:  # waiting (queued) trials have spent nothing
            continue
        out.train[state] += int(t.user_attrs.get(TRAIN, 0))
        out.evaluated += int(t.user_attrs.get(EVALUATED, 0))
        if t.datetime_start is not None:
            out.minutes += ((t.datetime_complete or now) - t.datetime_start).total_seconds() / 60
    retrain = study_attrs.get("retrain")
    out.retrain = int(retrain.get(TRAIN, 0)) if isinstance(retrain, dict) else 0
    runs = study_attrs.get("verdict_runs") or {}
    out.verdict = sum(int(r.get(TRAIN, 0)) for r in runs.values())
    out.minutes += sum(r.get("train_seconds", 0) for r in runs.values()) / 60
    return out


def progress(trials, study_attrs: dict) -> str:
    """`budget 1.23/3 epochs` (or trial minutes) of the budget the study last ran with, '' without one: for the
    progress line and mode=status. describe() (sweeper/study/run.py) stores the budget and the training size."""
    epochs, minutes = study_attrs.get("budget_epochs"), study_attrs.get("budget_minutes")
    if epochs is None and minutes is None:
        return ""
    used, train_size, parts = spent_by(trials, study_attrs), study_attrs.get("train_size"), []
    if epochs is not None and train_size:
        parts.append(f"{used.samples / train_size:.2f}/{epochs:g} epochs")
    if minutes is not None:
        parts.append(f"{used.minutes:.1f}/{minutes:g} trial minutes")
    return "budget " + ", ".join(parts) if parts else ""


def seconds_left(trials, study_attrs: dict, workers: int, now: datetime | None = None) -> float | None:
    """Wall seconds until the budget the study last ran with is spent, at the pace its trials have had so far
    (trial seconds per counted sample), shared among the workers running; None without a budget or a pace."""
    epochs, minutes = study_attrs.get("budget_epochs"), study_attrs.get("budget_minutes")
    used, train_size, lefts = spent_by(trials, study_attrs, now), study_attrs.get("train_size"), []
    if epochs is not None and train_size and used.samples > 0:
        lefts.append(max(epochs * train_size - used.samples, 0.0) * used.minutes * 60 / used.samples)
    if minutes is not None:
        lefts.append(max(minutes - used.minutes, 0.0) * 60)
    return min(lefts) / max(workers, 1) if lefts else None


def reset(trial) -> None:
    """A retry starts from zero: what its predecessor computed is counted on the predecessor."""
    for name in (TRAIN, EVALUATED):
        trial.set_user_attr(name, 0)


def reached(study, study_cfg, train_size: int | None, keep: float = 0.0) -> str | None:
    """Why the study's budget, less the share `keep` of it kept for the verdict, is spent (a line for the log),
    or None while some is left or none is set."""
    epochs, minutes = study_cfg.get("budget_epochs"), study_cfg.get("budget_minutes")
    if epochs is None and minutes is None:
        return None
    used, left = spent(study), 1 - keep
    kept = f" less the verdict's share {keep:g}" if keep else ""
    if epochs is not None and train_size and used.samples >= epochs * left * train_size:
        return (f"study.budget_epochs={epochs:g}{kept} is spent: {used.samples / train_size:.2f} epochs of the "
                f"{train_size:,}-example training set")
    if minutes is not None and used.minutes >= minutes * left:
        return f"study.budget_minutes={minutes:g}{kept} is spent: {used.minutes:.1f} trial minutes"
    return None


def describe(study, train_size: int | None = None) -> str:
    """One line: training samples by trial state (and in epochs of the training set), evaluation, retrain,
    trial minutes."""
    used = spent(study)
    train_size = train_size or study.user_attrs.get("train_size")

    def amount(n: float) -> str:
        return f"{n:,.0f}" + (f" ({n / train_size:.2f} ep)" if isinstance(train_size, int) and train_size else "")

    parts = [f"{amount(n)} {state}" for state, n in used.train.items() if n or state != "running"]
    line = (f"trained {amount(sum(used.train.values()))} samples ({', '.join(parts)}), evaluated "
            f"{used.evaluated:,}; budget counts {amount(used.samples)}; {used.minutes:.1f} trial minutes")
    line += f"; verdict (re-validation runs, counted) trained {amount(used.verdict)}" if used.verdict else ""
    return line + (f"; re-validation (mode=retrain) trained {amount(used.retrain)}" if used.retrain else "")


def columns(study) -> dict[str, float]:
    """The compute columns of summary.csv."""
    used = spent(study)
    train_size = study.user_attrs.get("train_size")
    row = {f"train_samples_{state}": n for state, n in used.train.items() if state != "running"}
    row.update({"evaluated_samples": used.evaluated, "retrain_train_samples": used.retrain})
    if used.verdict:
        row["verdict_train_samples"] = used.verdict
    if isinstance(train_size, int) and train_size:
        row["budget_epochs_spent"] = round(used.samples / train_size, 3)
    return row
