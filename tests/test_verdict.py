"""A winner proven on unseen data: the search selects on a held-out part of the training split
(task.selection_size), the verdict (verdict.top) retrains its top configurations and the course settings with
several seeds and scores them on the validation split. In-process studies in real SQLite files, the tiny model."""
import json

import datasets
import pandas as pd
import pytest

from conftest import TINY, cli, compose_config, load
from sweeper.config import ConfigError, validate
from sweeper.data.dataset import hold_out, load_task
from sweeper.job import run_study
from sweeper.results.verdict import RUNS, noise_line
from sweeper.study import budget
from sweeper.study import objective as objective_module
from sweeper.study.definition import definition, verify
from sweeper.study.run import load_study
from sweeper.study.storage import open_storage

# 64 training pairs, 16 of them held out for the search; 32 validation pairs for the verdict only.
SELECTED = [*TINY, "task.selection_size=16", "search.epochs.high=1", "search.enqueue_portfolio=false",
            "search.batch_size=[16]", "search.reference.epochs=1", "pruner=none",
            "train.evals_per_epoch=1"]


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
    assert verdict["configs"][0]["params"] == best.params
    table = pd.read_csv(tmp_path / cfg.study.name / "verdict.csv")
    assert len(table) == 4 and set(table["seed"]) == {cfg.seed, cfg.seed + 1} and set(table["split"]) == {"validation"}
    for c in verdict["configs"]:
        mine = table[table["lr"] == c["params"]["lr"]]
        assert sorted(mine["f1"]) == pytest.approx(sorted(c["values"]))
        assert c["mean"] == pytest.approx(mine["f1"].mean()) and c["std"] == pytest.approx(mine["f1"].std())
    winner = max(verdict["configs"], key=lambda c: c["mean"])
    assert verdict["winner"] == winner["params"] and verdict["mean"] == winner["mean"]
    assert verdict["summary"].startswith("verdict: ") and "on validation (2 seeds)" in verdict["summary"]
    marker = json.loads((tmp_path / cfg.study.name / "best-model" / "sweeper.json").read_text())
    assert marker["verdict"] and marker["params"] == winner["params"] and marker["seed"] == cfg.seed
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

    params = {"lr": 1e-4, "epochs": 1, "batch_size": 8}
    assert "task.selection_size=0.2" in best_overrides(compose_cfg(*TINY, "task.selection_size=0.2"), params)
    assert not any("selection_size" in o for o in best_overrides(cfg, params))  # best.yaml reruns the same split


def test_the_verdict_in_words():
    line = noise_line("f1", True, "lr 7.2e-05, 3 epochs, batch 8", [0.855, 0.861, 0.867], [0.84, 0.848, 0.856],
                      "validation")
    assert line == ("verdict: lr 7.2e-05, 3 epochs, batch 8: f1 0.861 +- 0.006 on validation (3 seeds), beats the "
                    "course settings (0.848 +- 0.008) by 0.013, more than the seed noise (pooled std 0.007)")
    close = noise_line("f1", True, "w", [0.86, 0.865, 0.87], [0.85, 0.86, 0.87], "validation")
    assert close.endswith("beats the course settings (0.860 +- 0.010) by 0.005, within the seed noise "
                          "(pooled std 0.008): not shown better")
    worse = noise_line("f1", True, "w", [0.84, 0.85], [0.85, 0.86], "validation")
    assert "trails the course settings" in worse and "not shown better" in worse
    # mse: lower is better, so a lower mean beats
    assert "more than the seed noise" in noise_line("mse", False, "w", [0.5, 0.51], [0.7, 0.71], "validation")
    assert noise_line("f1", True, "w (the course settings)", [0.8, 0.8], [0.8, 0.8], "validation",
                      winner_is_reference=True).endswith("the course settings win: no configuration of the search "
                                                         "beats them")


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
