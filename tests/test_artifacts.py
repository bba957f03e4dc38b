"""The best model and report.html as Optuna artifacts: what a sweep leaves in the store (read back with
download_artifact), a better model replacing the stored one, bad store configs, and optuna-dashboard
--artifact-dir listing both in a real headless browser."""
import io
import uuid
import zipfile
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

from conftest import TINY, cli, compose_config, load
from sweeper.study.artifacts import CURRENT, attach_best_model, attach_report
from sweeper.train.export import export_if_better, read_marker


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def downloaded(store, meta, tmp_path: Path) -> bytes:
    path = tmp_path / f"download-{uuid.uuid4().hex}"  # download_artifact writes no file twice
    download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path))
    return path.read_bytes()


def current(study) -> dict:
    """The stored model the study counts as its best (sweeper/study/artifacts.py)."""
    return study._storage.get_study_system_attrs(study._study_id)[CURRENT]


def model_metas(study):
    """Every trial's artifacts, by trial number."""
    return {t.number: get_all_artifact_meta(t, storage=study._storage) for t in study.trials}


def test_a_sweep_leaves_its_best_model_and_report_in_the_store(compose_cfg, tmp_path, caplog):
    cfg = compose_cfg(*TINY, "study.n_trials=2", "search.space.train.epochs=1")
    from sweeper.job import run_study

    with caplog.at_level("INFO"):
        run_study(cfg)
    study = load(cfg.study.storage, "mrpc-tiny")
    store = FileSystemArtifactStore(tmp_path / "artifacts")  # the default: ${out_dir}/artifacts
    best = read_marker(tmp_path / "mrpc-tiny" / "best-model")["trial"]
    metas = model_metas(study)
    attached = {n: [m.filename for m in ms] for n, ms in metas.items() if ms}
    assert attached == {best: [f"mrpc-tiny-trial-{best}-model.zip"]}
    (meta,) = metas[best]
    assert meta.mimetype == "application/zip"
    files = unzip(downloaded(store, meta, tmp_path))
    model_dir = tmp_path / "mrpc-tiny" / "best-model"
    on_disk = {f"best-model/{p.relative_to(model_dir)}": p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    assert files == on_disk and "best-model/model.safetensors" in files and "best-model/sweeper.json" in files

    (report,) = get_all_artifact_meta(study)
    assert (report.filename, report.mimetype) == ("report.html", "text/html")
    assert downloaded(store, report, tmp_path) == (tmp_path / "mrpc-tiny" / "report.html").read_bytes()
    assert f"--artifact-dir {tmp_path}/artifacts" in caplog.text
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == sorted([meta.artifact_id, report.artifact_id])

    # study.artifacts is not part of the study's definition: a resume without a store runs, and one with it
    # again rewrites the one report in place.
    run_study(compose_cfg(*TINY, "study.n_trials=3", "search.space.train.epochs=1", "study.artifacts=null"))
    assert len(load(cfg.study.storage, "mrpc-tiny").trials) == 3
    (tmp_path / "mrpc-tiny" / "report.html").unlink()
    run_study(cfg)
    assert [m.artifact_id for m in get_all_artifact_meta(study)] == [report.artifact_id]
    assert downloaded(store, report, tmp_path) == (tmp_path / "mrpc-tiny" / "report.html").read_bytes()


def test_a_better_model_replaces_the_stored_one_with_a_note(tmp_path):
    """The objective's export then attach, for trials scoring 0.5, 0.4, 0.7: the store ends with trial 2's
    model; trial 0's file is a zip saying trial 2 replaced it; trial 1 (worse) attached nothing."""
    from transformers import AutoTokenizer

    from sweeper.train.model import load_template

    cfg = compose_config(*TINY, f"out_dir={tmp_path}")
    model, tokenizer = load_template(cfg.model, 2, 0), AutoTokenizer.from_pretrained(cfg.model.path)
    target = tmp_path / "mrpc-tiny" / "best-model"
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="mrpc-tiny", direction="maximize")
    values = [0.5, 0.4, 0.7]

    def is_current(marker):  # as Objective.export_best: the marker's trial is running or complete with that value
        t = next(t for t in study.get_trials(deepcopy=False) if t.number == marker["trial"])
        return t.state == optuna.trial.TrialState.RUNNING or t.value == marker["value"]

    def objective(trial):
        value = values[trial.number]
        record = {"study": "mrpc-tiny", "trial": trial.number, "value": value, "objective": "f1"}
        if export_if_better(model, tokenizer, ["no", "yes"], target, record, is_current):
            attach_best_model(cfg.study.artifacts, trial, target, record, is_current)
        return value

    study.optimize(objective, n_trials=3)
    store = FileSystemArtifactStore(tmp_path / "artifacts")
    metas = model_metas(study)
    assert [len(metas[n]) for n in range(3)] == [1, 0, 1]
    assert unzip(downloaded(store, metas[0][0], tmp_path)).keys() == {"REPLACED.txt"}
    note = unzip(downloaded(store, metas[0][0], tmp_path))["REPLACED.txt"].decode()
    assert "Trial 0's model (value 0.5)" in note and "mrpc-tiny-trial-2-model.zip on trial 2" in note
    assert read_marker(target)["trial"] == 2
    assert unzip(downloaded(store, metas[2][0], tmp_path))["best-model/model.safetensors"] == (
        target / "model.safetensors").read_bytes()
    assert current(study)["trial"] == 2

    # Another machine's worker (its own out_dir, the same study and store) exports a model worse than the
    # study's current one: it stays on that machine, the store keeps trial 2's.
    trial = study.ask()
    elsewhere = tmp_path / "elsewhere" / "best-model"
    record = {"study": "mrpc-tiny", "trial": trial.number, "value": 0.6, "objective": "f1"}
    assert export_if_better(model, tokenizer, ["no", "yes"], elsewhere, record, is_current)
    assert attach_best_model(cfg.study.artifacts, trial, elsewhere, record, is_current) is None
    assert get_all_artifact_meta(trial) == [] and current(study)["trial"] == 2


def test_the_report_is_one_artifact_even_after_the_dashboard_deleted_one(tmp_path):
    """optuna-dashboard marks a deleted study artifact with null; the next report is attached afresh."""
    import json

    cfg = compose_config(*TINY, f"out_dir={tmp_path}")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    report = tmp_path / "report.html"
    report.write_text("<p>one</p>")
    first = attach_report(cfg.study.artifacts, study, report)
    study._storage.set_study_system_attr(study._study_id, f"artifacts:{first}", json.dumps(None))  # as its DELETE
    report.write_text("<p>two</p>")
    second = attach_report(cfg.study.artifacts, study, report)
    assert second not in (None, first)
    report.write_text("<p>three</p>")
    assert attach_report(cfg.study.artifacts, study, report) == second
    assert (tmp_path / "artifacts" / second).read_text() == "<p>three</p>"


@pytest.mark.slow
@pytest.mark.parametrize("bad,message", [
    ("study.artifacts._target_=os.path", "error: study.artifacts._target_=os.path: not an Optuna artifact store; "
                                         "allowed: optuna.artifacts.FileSystemArtifactStore (base_path), "
                                         "Boto3ArtifactStore, GCSArtifactStore, or study.artifacts=null (off)"),
    ("study.artifacts._target_=optuna.artifacts.Boto3ArtifactStore",
     "error: study.artifacts._target_=optuna.artifacts.Boto3ArtifactStore with base_path: missing a required "
     "argument: 'bucket_name'; allowed arguments: bucket_name, client, avoid_buf_copy"),
])
def test_a_bad_store_fails_before_anything_runs(tmp_path, glue_dir, bad, message):
    result = cli(bad, *TINY, f"study.storage=sqlite:///{tmp_path}/s.db", f"out_dir={tmp_path}", f"data_dir={glue_dir}")
    assert (result.returncode, result.stderr.strip()) == (2, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_dashboard_lists_the_best_model_and_the_report(tmp_path, glue_dir):
    from test_after_sweep import dashboard_pages

    storage = f"sqlite:///{tmp_path}/s.db"
    result = cli("task=mrpc", *TINY, "study.n_trials=2", "search.space.train.epochs=1", f"study.storage={storage}",
                 f"out_dir={tmp_path}", f"data_dir={glue_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"dashboard: optuna-dashboard {storage} --artifact-dir {tmp_path}/artifacts" in result.stdout
    study = load(storage, "mrpc-tiny")
    best = read_marker(tmp_path / "mrpc-tiny" / "best-model")["trial"]
    # The study page lists the study's artifacts; the trials page those of the trials selected in its URL.
    home = f"/dashboard/studies/{study._study_id}"
    page, trial_page = dashboard_pages(storage, [home, f"{home}/trials?numbers={best}"], str(tmp_path / "artifacts"))
    assert "Study Artifacts" in page and "report.html" in page
    assert f"Trial {best} (trial_id=" in trial_page and f"mrpc-tiny-trial-{best}-model.zip" in trial_page
