"""Where the pruner's first rung belongs: how many trials have left the constant prediction at each report of their
first epoch, and how well each report ranks the trials that finished against their final values.

    python bench/first_rung.py bench/runs/cola/wide-27/sweeper.db [more .db files]

Reads every study in each SQLite file (trials report `train.evals_per_epoch` times an epoch, by training samples;
`trivial_value` is the constant prediction's score on the split the trial reports on). A rung that most trials
reach still at the constant prediction can only rank noise: the plateau guard then keeps them all, and the rung
costs its evaluations for nothing."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def rungs(trial, train_size: int) -> dict[float, float]:
    """The trial's reports within its first epoch, {fraction of an epoch: value}."""
    return {round(step / train_size, 1): value for step, value in sorted(trial.intermediate_values.items())
            if step <= train_size * 1.01}


def summary(study) -> list[str]:
    import optuna
    from scipy import stats

    size = int(study.user_attrs["train_size"])
    trials = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
              and t.intermediate_values]
    lines = []
    fractions = sorted({f for t in trials for f in rungs(t, size)})
    for f in fractions:
        at = [(t, rungs(t, size)[f]) for t in trials if f in rungs(t, size)]
        above = sum(v > float(t.user_attrs.get("trivial_value", "nan")) + 1e-9 for t, v in at)
        done = [(v, t.value) for t, v in at if t.state == optuna.trial.TrialState.COMPLETE]
        ranked = len(done) >= 3 and len({v for v, _ in done}) > 1  # every report equal: nothing to rank by
        rho = stats.spearmanr([v for v, _ in done], [f for _, f in done]).statistic if ranked else float("nan")
        lines.append(f"{study.study_name}: at {f:.1f} epoch {above} of {len(at)} trials above the constant "
                     f"prediction; Spearman with the final value {rho:+.2f} ({len(done)} finished)")
    return lines


def main() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("storages", nargs="+", type=Path)
    args = p.parse_args()
    for path in args.storages:
        url = f"sqlite:///{path}"
        for name in optuna.get_all_study_names(url):
            print("\n".join(summary(optuna.load_study(study_name=name, storage=url))))


if __name__ == "__main__":
    sys.exit(main())
