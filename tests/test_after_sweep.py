"""After a sweep, through the real CLI: the multirun summary, mode=retrain, and optuna-dashboard's study
page in a real headless browser; bad retrain input ends with one error line and changes nothing."""
import csv
import shutil
import subprocess

import optuna
import pytest
from test_cli import dump
from test_e2e import free_port

from conftest import TINY, cli, load


@pytest.mark.slow
def test_multirun_summary_retrain_and_the_dashboard(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    # Retraining runs under the study's definition (sweeper/study/definition.py): the same overrides as the sweep.
    common = [*TINY, "search.space.train.epochs=range(1,2)", f"study.storage={storage}", f"out_dir={tmp_path}",
              f"data_dir={glue_dir}"]
    result = cli("-m", "task=mrpc,sst2", "study.n_trials=3", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "summary of 2 studies" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [(r["study"], r["task"], r["model"], r["objective"]) for r in rows] == [
        ("mrpc-tiny", "mrpc", "tiny", "f1"), ("sst2-tiny", "sst2", "tiny", "accuracy")]
    for row in rows:
        study = load(storage, row["study"])
        assert int(row["complete"]) + int(row["pruned"]) == 3 and float(row["best"]) == study.best_value
        assert float(row["train_minutes"]) > 0 and row["best_optimizer.lr"] == str(study.best_params["optimizer.lr"])
        assert int(row["train_samples_complete"]) == 64 * sum(t.params["train.epochs"] for t in study.trials
                                                               if t.state.name == "COMPLETE")
        assert study.metric_names == [row["objective"]]
        for name in ("best-model/model.safetensors", "best.yaml", "report.html", "trials.csv"):
            assert (tmp_path / row["study"] / name).is_file(), name

    retrain = cli("task=sst2", "mode=retrain", "retrain.seeds=2", *common)
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    study = load(storage, "sst2-tiny")
    attrs = study.user_attrs["retrain"]
    assert attrs["trial"] == study.best_trial.number and attrs["seeds"] == [42, 43]
    assert attrs["train_samples"] == 2 * 64 * study.best_params["train.epochs"]  # both seeds' training, for the summary
    # Seed 42 is the trial's own: the same data, template, seed and parameters give the same value.
    assert attrs["values"][0] == pytest.approx(study.best_value, abs=1e-9)
    assert f"over 2 seeds {attrs['mean']:.4f} +- {attrs['std']:.4f}" in retrain.stdout
    seeds = list(csv.DictReader(open(tmp_path / "sst2-tiny" / "retrain.csv")))
    assert [int(r["seed"]) for r in seeds] == [42, 43]
    tsv = list(csv.DictReader(open(tmp_path / "sst2-tiny" / "retrain" / "SST-2.tsv"), delimiter="\t"))
    assert len(tsv) == 1821 and [r["index"] for r in tsv[:3]] == ["0", "1", "2"]
    assert {r["prediction"] for r in tsv} <= {"negative", "positive"}
    assert (tmp_path / "sst2-tiny" / "retrain" / "best-model" / "model.safetensors").is_file()

    page = dashboard_study_page(storage, study._study_id)
    assert "sst2-tiny" in page and "accuracy" in page and f"Best Trial (number={study.best_trial.number})" in page
    assert all(f"trial #{t.number}" in page for t in study.trials)  # the learning curves' legend


def dashboard_study_page(storage: str, study_id: int) -> str:
    """optuna-dashboard's study page as a headless Chromium renders it (the DOM after its scripts ran)."""
    return dashboard_pages(storage, [f"/dashboard/studies/{study_id}"])[0]


def dashboard_pages(storage: str, paths: list[str], artifact_dir: str | None = None) -> list[str]:
    """Pages of one optuna-dashboard server (serving the artifact store in artifact_dir, if given), each
    as a headless Chromium renders it."""
    import time
    import urllib.request
    from pathlib import Path

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not found (Debian: apt-get install -y chromium)")
    exe = shutil.which("optuna-dashboard") or str(Path(__import__("sys").executable).parent / "optuna-dashboard")
    port = free_port()
    store = ["--artifact-dir", artifact_dir] if artifact_dir else []
    server = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port), *store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        return [subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                                "--dump-dom", f"http://127.0.0.1:{port}{path}"],
                               capture_output=True, text=True, timeout=120).stdout for path in paths]
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def stored(tmp_path, glue_dir):
    """A storage with a study whose only trials were pruned and failed: nothing to retrain."""
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=storage, study_name="mrpc-tiny", direction="maximize")

    def objective(trial):
        trial.suggest_float("lr", 1e-5, 1e-4, log=True)
        raise optuna.TrialPruned() if trial.number == 0 else RuntimeError("diverged")

    study.optimize(objective, n_trials=2, catch=(RuntimeError,))
    optuna.create_study(storage=storage, study_name="sst2-minilm", direction="maximize")
    return storage, [*TINY, f"study.storage={storage}", f"out_dir={tmp_path}", f"data_dir={glue_dir}"]


@pytest.mark.parametrize("args,message", [
    (["task=mrpc"], "error: study.name=mrpc-tiny has no complete trial to retrain (1 pruned, 1 failed); "
                    "run its sweep first: python -m sweeper task=mrpc model=tiny"),
    (["task=sst2"], "error: study.name=sst2-tiny is not in sqlite:///{tmp}/s.db; "
                    "studies there: mrpc-tiny, sst2-minilm"),
])
def test_retrain_without_a_complete_trial_or_study_changes_nothing(stored, tmp_path, args, message):
    storage, common = stored
    before = dump(storage)
    result = cli("mode=retrain", *args, *common)
    assert result.returncode == 2
    assert result.stderr.strip() == message.format(tmp=tmp_path)
    assert dump(storage) == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("s.db")] == []  # no outputs written


def test_retrain_on_a_missing_database_does_not_create_it(tmp_path, glue_dir):
    result = cli("mode=retrain", *TINY, f"study.storage=sqlite:///{tmp_path}/none.db", f"out_dir={tmp_path}",
                 f"data_dir={glue_dir}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: study.name=mrpc-tiny: study.storage=sqlite:///{tmp_path}/none.db "
                                    "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_summary_has_a_row_per_study_with_its_best_trial(tmp_path):
    from sweeper.results.summary import write_summary

    storage = f"sqlite:///{tmp_path}/s.db"
    studies = []
    for name, objective, values in (("mrpc-tiny", "f1", [0.7, 0.8, None]), ("sst2-tiny", "accuracy", [0.6])):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        study.set_metric_names([objective])
        study.set_user_attr("task", name.split("-")[0])
        study.set_user_attr("model", "tiny")

        def run(trial, values=values):
            value = values[trial.number]
            trial.suggest_int("epochs", 1, 3)
            if value is None:
                raise optuna.TrialPruned()
            trial.set_user_attr("accuracy", value / 2)
            trial.set_user_attr("f1", value)
            return value

        study.optimize(run, n_trials=len(values))
        studies.append(study)
    table = write_summary(studies, tmp_path / "summary.csv")
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert len(table) == len(rows) == 2
    mrpc, sst2 = rows
    assert (mrpc["task"], mrpc["complete"], mrpc["pruned"], mrpc["failed"]) == ("mrpc", "2", "1", "0")
    assert (mrpc["objective"], mrpc["best"], mrpc["best_trial"], mrpc["accuracy"]) == ("f1", "0.8", "1", "0.4")
    assert (sst2["objective"], sst2["best"], sst2["f1"]) == ("accuracy", "0.6", "0.6")
    assert float(mrpc["train_minutes"]) >= 0 and mrpc["best_train.epochs"] in {"1", "2", "3"}


def test_summary_shows_the_metrics_the_task_defines(tmp_path):
    """A study with a stored task definition gets that task's metrics as columns, not accuracy/F1."""
    from sweeper.results.summary import write_summary

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="stsb-tiny", direction="maximize")
    study.set_metric_names(["pearson"])
    study.set_user_attr("task", {"name": "stsb", "metrics": ["pearson", "spearman", "mse"]})

    def run(trial):
        trial.suggest_int("epochs", 1, 3)
        for metric, value in (("pearson", 0.5), ("spearman", 0.4), ("mse", 2.5), ("f1", 0.9)):
            trial.set_user_attr(metric, value)
        return 0.5

    study.optimize(run, n_trials=1)
    write_summary([study], tmp_path / "summary.csv")
    (row,) = csv.DictReader(open(tmp_path / "summary.csv"))
    assert (row["task"], row["objective"], row["best"], row["spearman"], row["mse"]) == (
        "stsb", "pearson", "0.5", "0.4", "2.5")
    assert "f1" not in row and "accuracy" not in row
