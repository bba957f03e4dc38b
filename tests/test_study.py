"""Studies in real SQLite files, run in-process with the tiny model: pruning, resuming, caches, checkpoints."""
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, load
from sweeper.data import dataset
from sweeper.job import run_study
from sweeper.study.objective import report_epoch
from sweeper.study.run import FINISHED, SweepStopped, check_failures
from sweeper.train import model


def finished(study):
    return [t for t in study.trials if t.state in FINISHED]


def test_a_trial_reported_poor_is_pruned(tmp_path):
    storage = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(storage=storage, study_name="p", direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1))

    def objective(value):
        def run(trial):
            for epoch in range(2):
                report_epoch(trial, "f1", epoch, {"f1": value, "loss": 1 - value})
            return value
        return run

    study.optimize(objective(0.9), n_trials=1)
    study.optimize(objective(0.1), n_trials=1)
    trials = load(storage, "p").trials  # read back from the file
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert trials[1].intermediate_values == {0: 0.1}
    assert trials[1].user_attrs == {"f1": 0.1, "loss": pytest.approx(0.9)}


def test_resume_runs_only_the_missing_trials(compose_cfg, caplog):
    first = compose_cfg(*TINY, "study.n_trials=2")
    run_study(first)
    study = load(first.study.storage, first.study.name)
    assert len(finished(study)) == 2
    assert study.trials[0].params == dict(first.search.portfolio[0])  # the portfolio's first, enqueued

    run_study(compose_cfg(*TINY, "study.n_trials=3"))
    study = load(first.study.storage, first.study.name)
    done = finished(study)
    assert len(done) == 3 and len(study.trials) == 3
    assert sorted(t.number for t in done) == [0, 1, 2]
    assert len({tuple(sorted(t.params.items())) for t in done}) == 3  # no proposal replayed
    for t in done:
        assert 0 <= t.value <= 1
        assert {"accuracy", "f1", "loss", "train_seconds", "samples_per_s"} <= set(t.user_attrs)

    caplog.clear()
    with caplog.at_level("INFO"):
        run_study(compose_cfg(*TINY, "study.n_trials=3"))
    assert "is complete: 3 finished trials" in caplog.text
    assert len(load(first.study.storage, first.study.name).trials) == 3


def test_reference_enqueued_only_when_in_the_space(compose_cfg):
    cfg = compose_cfg(*TINY, "study.n_trials=1", "search.space.train.batch_size=16", "search.space.train.epochs=1")
    run_study(cfg)
    trial = load(cfg.study.storage, cfg.study.name).trials[0]
    assert trial.user_attrs["config"]["train.batch_size"] == 16 and trial.user_attrs["config"]["train.epochs"] == 1
    assert trial.params["optimizer.lr"] != 5e-5  # drawn: the portfolio entry (batch 8, 3 epochs) is outside


def test_tokenize_and_read_weights_once_per_study(compose_cfg, monkeypatch):
    calls = {"tokenize": 0, "load_template": 0, "fresh_model": 0}

    def counting(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counting(dataset, "tokenize")
    counting(model, "load_template")
    counting(model, "fresh_model")
    import sweeper.study.objective as objective  # it imported the names: count there too
    monkeypatch.setattr(objective, "load_template", model.load_template)
    monkeypatch.setattr(objective, "fresh_model", model.fresh_model)
    run_study(compose_cfg(*TINY, "study.n_trials=3", "search.space.train.epochs=1"))
    assert calls == {"tokenize": 2, "load_template": 1, "fresh_model": 3}  # 2 = train + eval split


@pytest.mark.parametrize("keep", ["best", "none", "all"])
def test_checkpoints_kept_by_policy(compose_cfg, keep):
    cfg = compose_cfg(*TINY, "study.n_trials=3", "search.space.train.epochs=1", f"study.keep_checkpoints={keep}",
                      "pruner=none")
    run_study(cfg)
    study = load(cfg.study.storage, cfg.study.name)
    root = Path(cfg.out_dir) / cfg.study.name / "checkpoints"
    kept = {int(p.name.split("-")[1]) for p in root.glob("trial-*")}
    want = {"best": {study.best_trial.number}, "none": set(), "all": {t.number for t in finished(study)}}
    assert kept == want[keep]
    for n in kept:  # one epoch directory per kept trial
        assert len(list((root / f"trial-{n}").glob("epoch-*"))) == 1


def test_summary_writes_every_trial_as_csv(compose_cfg, caplog):
    import pandas as pd

    cfg = compose_cfg(*TINY, "study.n_trials=2", "search.space.train.epochs=1")
    with caplog.at_level("INFO"):
        best = run_study(cfg)
    study = load(cfg.study.storage, cfg.study.name)
    assert best == study.best_value
    frame = pd.read_csv(f"{cfg.out_dir}/{cfg.study.name}/trials.csv")
    assert list(frame["number"]) == [0, 1]
    assert {"params_optimizer.lr", "params_train.batch_size", "state", "value", "user_attrs_f1",
            "duration"} <= set(frame.columns)
    assert f"optuna-dashboard {cfg.study.storage}" in caplog.text
    assert "2 complete, 0 pruned, 0 failed" in caplog.text
    written = {p.name for p in (Path(cfg.out_dir) / cfg.study.name).iterdir()}
    assert {"best.yaml", "report.html", "study.csv", "trials.csv"} <= written
    assert not [name for name in written if name.endswith(".tmp")]  # every temporary file renamed into place


def test_two_workers_writing_one_study_file_at_once_both_finish(tmp_path):
    """Worker B writes and renames the whole file while worker A is between its write and its rename
    (two workers of a study finishing together): both succeed and the file is whole, the last one's."""
    from sweeper.results.report import replace_whole

    path = tmp_path / "report.html"

    def worker_a(tmp):
        tmp.write_text("a")
        replace_whole(path, lambda other: other.write_text("b"))  # worker B, all of it, in between

    assert replace_whole(path, worker_a) == path
    assert path.read_text() == "a" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_failure_limit_counts_failures_not_retried_interruptions(compose_cfg):
    cfg = compose_cfg("study.n_trials=4", "study.max_failed_fraction=0.25")
    study = optuna.create_study(storage=cfg.study.storage, study_name="f")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    fail = dict(state=TrialState.FAIL, params={"x": 0.5}, distributions=dist)
    study.add_trial(optuna.create_trial(**fail))  # interrupted, then retried:
    study.add_trial(optuna.create_trial(**fail, system_attrs={"retry_history": [0]}))  # not counted
    check_failures(study.trials, cfg.study)  # 1 failure: within 0.25 * 4
    study.add_trial(optuna.create_trial(**fail, user_attrs={"fail_reason": "NonFiniteLoss: nan"}))
    with pytest.raises(SweepStopped, match=r"2 trials failed, more than study.max_failed_fraction=0.25"
                                           r" of study.n_trials=4; last failure: NonFiniteLoss: nan"):
        check_failures(study.trials, cfg.study)


@pytest.mark.filterwarnings("ignore:Fixed parameter lr:UserWarning",  # the poisoned lr, on purpose
                            "ignore:.*reduce_op.*:FutureWarning")  # gc.get_objects() touches it
def test_a_failed_trial_frees_its_model_and_the_sweep_goes_on(compose_cfg):
    import gc

    from transformers import BertForSequenceClassification

    from sweeper.study.objective import Objective
    from sweeper.study.run import load_study, run_trials
    from sweeper.study.storage import open_storage

    cfg = compose_cfg(*TINY, "study.n_trials=2", "search.space.train.epochs=1")
    study = load_study(open_storage(cfg.study), cfg)
    study.enqueue_trial({"optimizer.lr": 1e20, "train.epochs": 1, "train.batch_size": 8})  # the loss turns NaN at once
    objective = Objective(cfg, Path(cfg.out_dir) / cfg.study.name)
    gc.collect()
    gc.disable()  # freed after each trial, not whenever the collector happens to run
    try:
        run_trials(study, objective, cfg, Path(cfg.out_dir) / "checkpoints")
        alive = [o for o in gc.get_objects() if isinstance(o, BertForSequenceClassification)]
    finally:
        gc.enable()
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["fail_reason"].startswith("NonFiniteLoss")
    assert alive == [objective.template]  # no trial's model outlives its trial


def test_studies_of_one_multirun_draw_different_start_up_proposals(compose_cfg):
    from sweeper.search.space import compile_space, suggest
    from sweeper.study.run import load_study
    from sweeper.study.storage import open_storage

    proposals = {}
    for task in ("mrpc", "sst2"):
        cfg = compose_cfg(f"task={task}", "search.enqueue_portfolio=false")
        study = load_study(open_storage(cfg.study), cfg)
        proposals[task] = [suggest(study.ask(), compile_space(cfg.search), cfg) for _ in range(3)]
    assert proposals["mrpc"] != proposals["sst2"]
    assert all(a["optimizer.lr"] != b["optimizer.lr"]
               for a, b in zip(proposals["mrpc"], proposals["sst2"], strict=True))


def test_workers_of_one_study_draw_different_start_up_proposals(compose_cfg):
    from sweeper.search.space import compile_space, suggest
    from sweeper.study.run import load_study, sampler_seed
    from sweeper.study.storage import open_storage

    assert sampler_seed(42, "s", 0, worker=0) == sampler_seed(42, "s", 0)  # a single worker samples as before
    proposals = []
    for worker in (0, 1):  # both load the new study at 0 trials, as workers launched together do
        cfg = compose_cfg("+worker=" + str(worker), f"study.name=w{worker}", "search.enqueue_portfolio=false")
        study = load_study(open_storage(cfg.study), cfg)
        proposals.append([suggest(study.ask(), compile_space(cfg.search), cfg)["optimizer.lr"] for _ in range(3)])
    assert all(a != b for a, b in zip(*proposals, strict=True))


def test_the_study_lock_is_free_while_a_trial_trains(compose_cfg):
    import fcntl

    from sweeper.search.space import compile_space, suggest
    from sweeper.study.run import load_study, run_trials
    from sweeper.study.storage import open_storage, sqlite_path

    cfg = compose_cfg("study.n_trials=2", "search.enqueue_portfolio=false")
    study = load_study(open_storage(cfg.study), cfg)
    free = []

    class Probe:  # a trial that, instead of training, tries the lock another worker would wait on
        trial = None

        def __call__(self, trial):
            suggest_all = suggest(trial, compile_space(cfg.search), cfg)
            with open(f"{sqlite_path(cfg.study.storage)}.lock", "a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    free.append(True)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except BlockingIOError:
                    free.append(False)
            return suggest_all["optimizer.lr"]

        def release(self):
            pass

    run_trials(study, Probe(), cfg, Path(cfg.out_dir) / "checkpoints")
    assert free == [True, True]
