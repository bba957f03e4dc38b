"""A winner proven on unseen data: the search selects on a held-out part of the training split
(task.selection_size), the verdict (verdict.top) retrains its top configurations and the course settings with
several seeds and scores them on the validation split. In-process studies in real SQLite files, the tiny model."""
import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from conftest import TINY, cli, compose_config, load
from sweeper.data.dataset import hold_out, load_task
from sweeper.errors import ConfigError
from sweeper.job import run_study
from sweeper.results import significance
from sweeper.results.verdict import LABELS, RUNS, sentence
from sweeper.search import budget
from sweeper.study import objective as objective_module
from sweeper.study.definition import definition, verify
from sweeper.study.run import load_study
from sweeper.study.storage import open_storage
from sweeper.train.metrics import compute_metrics
from sweeper.validate import validate

# 64 training pairs, 16 of them held out for the search; 32 validation pairs for the verdict only.
SELECTED = [*TINY, "task.selection_size=16", "search.space.train.epochs=1", "search.enqueue_portfolio=false",
            "search.space.train.batch_size=16", "search.reference.train.epochs=1", "pruner=none",
            "train.evals_per_epoch=1", "verdict.max_seeds=2"]


def rows(split) -> set[tuple]:
    return {tuple(ids) for ids in split["input_ids"]}


class Spy:
    """Calls through to the real training loop, recording which examples each run trained and scored on."""

    def __init__(self, monkeypatch, stop_at: int | None = None):
        from sweeper.train.loop import train as real

        self.calls, self.stop_at = [], stop_at

        def train(model, train_dl, eval_dl, *args, **kwargs):
            if len(self.calls) == self.stop_at:
                raise KeyboardInterrupt  # as Ctrl-C in the middle of a run
            self.calls.append((rows(train_dl.dataset), rows(eval_dl.dataset)))
            return real(model, train_dl, eval_dl, *args, **kwargs)

        monkeypatch.setattr(objective_module, "train", train)


def test_hold_out_is_seeded_disjoint_and_sized():
    split = datasets.Dataset.from_dict({"idx": list(range(100))})
    rest, held = hold_out(split, 0.2, seed=42)
    assert len(held) == 20 and len(rest) == 80
    assert set(rest["idx"]).isdisjoint(held["idx"]) and set(rest["idx"]) | set(held["idx"]) == set(range(100))
    assert hold_out(split, 0.2, seed=42)[1]["idx"] == held["idx"]  # every trial and run: the same part
    assert hold_out(split, 0.2, seed=7)[1]["idx"] != held["idx"]
    assert len(hold_out(split, 30, seed=42)[1]) == 30  # >= 1: a count
    with pytest.raises(ConfigError, match="task.selection_size=100: 100 of 100"):
        hold_out(split, 100, seed=42)


def test_the_search_never_sees_validation_and_the_verdict_scores_only_on_it(compose_cfg, monkeypatch, tmp_path,
                                                                            caplog):
    cfg = compose_cfg(*SELECTED, "study.n_trials=2", "verdict.top=1", "verdict.seeds=2")
    plain = load_task(compose_cfg(*TINY).task, cfg.model.path, cfg.data_dir, cfg.seed)
    train_all, validation = rows(plain.train), rows(plain.eval)
    assert len(train_all) == 64 and len(validation) == 32 and train_all.isdisjoint(validation)
    spy = Spy(monkeypatch)
    with caplog.at_level("INFO"):
        run_study(cfg)

    # 2 trials, then (the best trial + the course settings) x 2 seeds.
    assert len(spy.calls) == 2 + 2 * 2
    search, verdict_runs = spy.calls[:2], spy.calls[2:]
    held = search[0][1]
    assert len(held) == 16 and held <= train_all
    for trained, scored in search:
        assert scored == held and scored.isdisjoint(validation)  # the search selects on the held-out part only
        assert trained.isdisjoint(held) and trained | held == train_all  # and never trains on it
    for trained, scored in verdict_runs:
        assert scored == validation and trained == search[0][0]  # the same training part, scored on unseen data

    study = load(cfg.study.storage, cfg.study.name)
    assert [t.user_attrs["evaluated_samples"] for t in study.trials] == [16, 16]
    verdict = study.user_attrs["verdict"]
    best = study.best_trial
    assert [c["label"] for c in verdict["configs"]] == [f"trial {best.number}", "the course settings"]
    assert verdict["configs"][0]["values"] == best.user_attrs["config"]
    table = pd.read_csv(tmp_path / cfg.study.name / "verdict.csv")
    assert len(table) == 4 and set(table["seed"]) == {cfg.seed, cfg.seed + 1} and set(table["split"]) == {"validation"}
    for c in verdict["configs"]:
        mine = table[table["optimizer.lr"] == c["values"]["optimizer.lr"]]
        assert sorted(mine["f1"]) == pytest.approx(sorted(c["scores"]))
        assert c["mean"] == pytest.approx(mine["f1"].mean()) and c["std"] == pytest.approx(mine["f1"].std())
    winner = max(verdict["configs"], key=lambda c: c["mean"])
    assert verdict["winner"] == winner["values"] and verdict["mean"] == winner["mean"]
    assert verdict["summary"].startswith("verdict: ")
    assert "on validation (2 seeds; the constant prediction scores " in verdict["summary"]
    labels = study.user_attrs[LABELS]
    assert len(labels) == 32 and verdict["trivial"] == pytest.approx(2 * sum(labels) / (len(labels) + sum(labels)))
    assert verdict["outcome"] in ("trivial", "reference", "noise", "better")
    assert "predictions" not in table.columns
    marker = json.loads((tmp_path / cfg.study.name / "best-model" / "sweeper.json").read_text())
    assert marker["verdict"] and marker["params"] == winner["values"] and marker["seed"] == cfg.seed
    assert list(table["train_samples"]) == [48] * 4  # one epoch of the 48 training pairs left
    assert budget.spent(study).verdict == 4 * 48  # the verdict's training counts in the budget's bookkeeping
    assert "verdict (re-validation runs, counted) trained 192" in caplog.text  # the end-of-study compute line
    assert verdict["summary"] in caplog.text


def test_an_interrupted_verdict_resumes_without_redoing_its_runs(compose_cfg, monkeypatch):
    cfg = compose_cfg(*SELECTED, "study.n_trials=1", "verdict.top=1", "verdict.seeds=2")
    Spy(monkeypatch, stop_at=3)  # the trial, the best trial's 2 verdict runs, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg)
    study = load(cfg.study.storage, cfg.study.name)
    assert len(study.user_attrs[RUNS]) == 2 and "verdict" not in study.user_attrs
    spy = Spy(monkeypatch)
    run_study(cfg)
    assert len(spy.calls) == 2  # only the course settings' two seeds were missing; no trial either
    study = load(cfg.study.storage, cfg.study.name)
    assert len(study.user_attrs[RUNS]) == 4 and len(study.user_attrs["verdict"]["configs"]) == 2


def test_a_verdict_needs_a_selection_split_and_the_split_defines_the_study(compose_cfg):
    with pytest.raises(ConfigError, match="verdict.top=3 without a selection split"):
        validate(compose_cfg(*TINY, "verdict.top=3"))
    with pytest.raises(ConfigError, match="task.selection_size=1.5"):
        validate(compose_cfg(*TINY, "task.selection_size=1.5"))
    validate(compose_cfg(*TINY, "verdict.top=3", "task.selection_size=0.2"))
    assert "task.selection_size" not in definition(compose_cfg(*TINY))  # studies from before the key resume
    cfg = compose_cfg(*TINY)
    storage = open_storage(cfg.study)
    load_study(storage, cfg)
    assert verify(storage, cfg) == []
    with pytest.raises(ConfigError, match=r"task.selection_size: stored \(absent\), now 0.2"):
        verify(storage, compose_cfg(*TINY, "task.selection_size=0.2"))
    from sweeper.results.report import best_overrides

    params = {"optimizer.lr": 1e-4, "train.epochs": 1, "train.batch_size": 8}
    assert "task.selection_size=0.2" in best_overrides(compose_cfg(*TINY, "task.selection_size=0.2"), params)
    assert not any("selection_size" in o for o in best_overrides(cfg, params))  # best.yaml reruns the same split


def flipped(labels, n: int, rng) -> np.ndarray:
    """`labels` with `n` of them (drawn by `rng`) wrong: a classifier of known accuracy on these examples."""
    out = np.array(labels)
    at = rng.choice(len(out), n, replace=False)
    out[at] = 1 - out[at]
    return out


def seeds_of(labels, errors: list[int], rng) -> tuple[list[float], list[np.ndarray]]:
    runs = [flipped(labels, e, rng) for e in errors]
    return [float((p == labels).mean()) for p in runs], runs


def verdict_of(labels, winner: list[int], reference: list[int], k: int = 1, seed: int = 0) -> tuple[str, str]:
    """The verdict's outcome and sentence for a winner and the course settings whose runs make `winner` and
    `reference` errors on `labels` (accuracy)."""
    rng = np.random.default_rng(seed)
    (ws, wp), (rs, rp) = seeds_of(labels, winner, rng), seeds_of(labels, reference, rng)
    trivial = max(np.mean(labels), 1 - np.mean(labels))
    above = significance.compare("accuracy", ws, [trivial],
                                 significance.example_variance("accuracy", labels, wp, None), k)
    versus = significance.compare("accuracy", ws, rs, significance.example_variance("accuracy", labels, wp, rp), k)
    configs = [{"scores": s, "mean": float(np.mean(s)), "std": float(np.std(s, ddof=1)), "predictions": p}
               for s, p in ((ws, wp), (rs, rp))]
    return sentence("accuracy", "validation", "w", configs[0], configs[1], trivial, above, versus, 0.95, k)


LABELS_2000 = np.random.default_rng(7).permutation([1] * 1400 + [0] * 600)  # 70% positive


def test_identical_scores_are_never_a_win():
    labels = LABELS_2000
    rng = np.random.default_rng(1)
    runs = [flipped(labels, e, rng) for e in (200, 240, 220)]
    scores = [float((p == labels).mean()) for p in runs]
    same = significance.compare("accuracy", scores, scores,
                                significance.example_variance("accuracy", labels, runs, runs))
    assert same.difference == 0 and not same.better and same.p == pytest.approx(0.5)
    assert significance.example_variance("accuracy", labels, runs, runs) == 0  # paired: the same examples cancel


def test_a_large_real_difference_on_a_big_split_is_a_win():
    outcome, line = verdict_of(LABELS_2000, winner=[180, 200, 190], reference=[400, 430, 410], k=3)
    assert outcome == "better", line
    assert "beats the course settings (0.79" in line and "at 95% confidence, corrected for 3 configurations" \
        in line and "the constant prediction scores 0.700" in line


def test_a_winner_at_or_below_the_constant_prediction_is_never_called_a_win():
    # 62% accuracy where "positive" everywhere scores 70%: better than the course settings' 55%, still no win.
    outcome, line = verdict_of(LABELS_2000, winner=[760, 770, 750], reference=[900, 910, 890])
    assert outcome == "trivial", line
    assert "nothing here beats the constant prediction; not shown better" in line


def test_a_difference_only_the_old_rule_called_a_win_is_within_the_noise():
    # CoLA's benchmark rows: MCC 0.283 +- 0.022 against the course settings' 0.246 +- 0.034, 3 seeds each. Their
    # difference, 0.036, is more than the pooled std (0.029): the old rule's "beats ... more than the seed noise".
    winner, course = [0.2972, 0.2926, 0.2576], [0.2692, 0.2626, 0.2074]  # bench/compute.csv, seeds 42-44
    pooled = np.sqrt((np.std(winner, ddof=1) ** 2 + np.std(course, ddof=1) ** 2) / 2)
    assert np.mean(winner) - np.mean(course) > pooled
    test = significance.compare("matthews_correlation", winner, course, example_var=0.0, k=3)
    assert not test.better and test.p > test.alpha  # even before the 1,043 examples' own noise is added
    assert significance.compare("matthews_correlation", winner, course, example_var=0.0, k=1).p > 0.05


def test_a_minimized_metric_wins_by_being_lower():
    test = significance.compare("mse", [0.50, 0.51, 0.49], [0.70, 0.71, 0.69], example_var=1e-4)
    assert test.difference == pytest.approx(0.2) and test.better


def test_an_open_question_gets_more_seeds_for_the_two_finalists_only(compose_cfg, monkeypatch, tmp_path):
    """The first seeds leave it open (within the noise): the winner and the course settings train seed 44 as
    well, and the test runs again at the level of its second look; the third configuration gets no more."""
    from optuna.trial import TrialState, create_trial

    from sweeper.results.verdict import run_key, run_verdict
    from sweeper.search.space import CONFIG

    cfg = compose_cfg(*SELECTED, "verdict.top=2", "verdict.seeds=2", "verdict.max_seeds=3")
    study = load_study(open_storage(cfg.study), cfg)
    configs = [{"optimizer.lr": 1e-4, "train.epochs": 1, "train.batch_size": 16},
               {"optimizer.lr": 2e-4, "train.epochs": 1, "train.batch_size": 16}]
    for value, c in zip((0.9, 0.8), configs, strict=True):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, user_attrs={CONFIG: c}))
    labels = load_task(cfg.task, cfg.model.path, cfg.data_dir, cfg.seed).unseen[0]["labels"]
    labels = [int(y) for y in labels]
    rng = np.random.default_rng(0)
    reference = {"optimizer.lr": 5e-5, "train.epochs": 1, "train.batch_size": 8, "optimizer.schedule": "linear",
                 "optimizer.warmup_ratio": 0.0, "optimizer.layer_decay": 1.0, "optimizer.max_grad_norm": None,
                 "train.keep_best": False, "model.pooling": "cls", "model.reinit_layers": 0}
    runs = {}
    for values, errors in ((configs[0], (1, 2)), (configs[1], (6, 7)), (reference, (2, 2))):
        for seed, e in zip((42, 43), errors, strict=True):
            p = flipped(labels, e, rng)
            f1 = compute_metrics(labels, p, ["f1"])["f1"]
            runs[run_key(values, seed)] = {**values, "seed": seed, "f1": f1, "accuracy": 0.0, "train_samples": 48,
                                           "train_seconds": 1.0, "predictions": p.tolist(), "label": "x"}
    study.set_user_attr(RUNS, runs)
    study.set_user_attr(LABELS, labels)
    spy = Spy(monkeypatch)
    verdict = run_verdict(study, cfg, tmp_path / cfg.study.name)
    assert len(spy.calls) == 2  # seed 44 of the two finalists, nothing else
    stored = study.user_attrs[RUNS]
    assert run_key(configs[0], 44) in stored and run_key(reference, 44) in stored
    assert run_key(configs[1], 44) not in stored
    # Tested again over the seeds each has (seed 44 is a real run of the tiny model, so the winner may change).
    assert [c["seeds"] for c in verdict["configs"]] == [[42, 43, 44], [42, 43], [42, 43, 44]]
    assert f"({len(verdict['seeds'])} seeds;" in verdict["summary"]


@pytest.mark.slow
def test_the_cli_refuses_a_verdict_without_a_selection_split_in_one_line(glue_dir, tmp_path):
    r = cli(*TINY, f"data_dir={glue_dir}", f"out_dir={tmp_path}", "verdict.top=3", timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: verdict.top=3 without a selection split") and \
        len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sweeper.db").exists()


def test_the_search_stops_at_the_budget_less_the_verdicts_share_and_the_verdict_counts():
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5, user_attrs={"train_samples": 64}))
    cfg = compose_config("study.budget_epochs=1.2").study
    assert budget.reached(study, cfg, 64) is None  # 1 of 1.2 epochs spent
    assert "less the verdict's share 0.25 is spent: 1.00 epochs" in budget.reached(study, cfg, 64, keep=0.25)
    study.set_user_attr(RUNS, {"a": {"train_samples": 32, "train_seconds": 6.0}})
    assert budget.spent(study).verdict == 32 and budget.spent(study).samples == 96
    assert "verdict (re-validation runs, counted) trained 32 (0.50 ep)" in budget.describe(study, 64)


def test_only_worker_0_runs_the_verdict(compose_cfg, monkeypatch, tmp_path):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from sweeper.results.verdict import run_verdict

    cfg = compose_cfg(*SELECTED, "verdict.top=1", "+worker=1")
    study = load_study(open_storage(cfg.study), cfg)
    params = {"lr": 1e-4, "epochs": 1, "batch_size": 16}
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.8, params=params,
                                 distributions={"lr": FloatDistribution(1e-5, 1e-3, log=True),
                                                "epochs": IntDistribution(1, 3),
                                                "batch_size": CategoricalDistribution([16])}))
    spy = Spy(monkeypatch)
    assert run_verdict(study, cfg, tmp_path / cfg.study.name) == {}
    assert spy.calls == [] and RUNS not in study.user_attrs and "verdict" not in study.user_attrs


def test_with_keep_best_the_selection_split_picks_the_epoch_and_the_unseen_split_only_scores_it(compose_cfg):
    from sweeper.data.dataset import scored_on_unseen
    from sweeper.search.space import apply
    from sweeper.study.objective import Objective, hparams
    from sweeper.train.loop import kept

    cfg = compose_cfg(*SELECTED, "train.keep_best=true", "search.space.train.epochs=4", "train.precision=no")
    objective = Objective(cfg, Path(cfg.out_dir) / cfg.study.name)
    run_cfg = apply(cfg, {"optimizer.lr": 5e-3, "train.epochs": 4, "train.batch_size": 16})
    hp = hparams(run_cfg)
    view, prefix = scored_on_unseen(objective.data, hp.keep_best is not None)
    assert prefix == "unseen_" and view.eval is objective.data.eval  # the search's selection split stays
    history = objective.fit(run_cfg, 42, on_epoch_end=lambda epoch, metrics: None, data=view)
    final = kept(history, hp)
    assert final["f1"] == max(h["f1"] for h in history)  # picked on the selection split (16 pairs) ...
    assert all(f"unseen_{m}" in final for m in ("f1", "accuracy"))  # ... scored on validation (32 pairs)
    plain, none = scored_on_unseen(objective.data, keep_best=False)
    assert none == "" and len(plain.eval) == 32  # without keep_best: validation is the evaluation split
