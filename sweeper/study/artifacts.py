"""The best model and report.html as Optuna artifacts (study.artifacts: any Optuna artifact store), so
optuna-dashboard lists and serves them: the model zipped on the trial that produced it, the report on the
study. The store keeps one model: a replaced one's file becomes a small zip saying which trial replaced it."""
from __future__ import annotations

import errno
import importlib
import inspect
import io
import json
import logging
import tempfile
import zipfile
from pathlib import Path

from hydra.utils import instantiate
from optuna.artifacts import upload_artifact

from sweeper.errors import ConfigError
from sweeper.study.lock import study_lock
from sweeper.train.metrics import improves

log = logging.getLogger(__name__)
CURRENT = "sweeper:best_model_artifact"  # study system attribute: {"trial", "value", "artifact_id", "filename"}
ARTIFACT_PREFIX = "artifacts:"  # the system attributes upload_artifact writes (optuna/artifacts/_upload.py)
STORE_METHODS = ("write", "open_reader", "remove")  # optuna.artifacts' ArtifactStore protocol


def check_store(store) -> None:
    """study.artifacts names an artifact store class (checked before training; not built: S3 needs credentials)."""
    target = store.get("_target_")
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not isinstance(cls, type) or not all(hasattr(cls, m) for m in STORE_METHODS):
        raise ConfigError(f"study.artifacts._target_={target}: not an Optuna artifact store; allowed: "
                          "optuna.artifacts.FileSystemArtifactStore (base_path), Boto3ArtifactStore, "
                          "GCSArtifactStore, or study.artifacts=null (off)")
    arguments = {k: v for k, v in store.items() if k != "_target_"}
    parameters = inspect.signature(cls).parameters
    try:
        inspect.signature(cls).bind(**arguments)
    except TypeError as e:
        raise ConfigError(f"study.artifacts._target_={target} with {', '.join(arguments) or 'no arguments'}: {e}; "
                          f"allowed arguments: {', '.join(parameters)}") from None


def open_store(store_cfg):
    """The configured store, None when off; a file system store's directory is created."""
    if store_cfg is None:
        return None
    if store_cfg.get("base_path"):
        Path(store_cfg.base_path).mkdir(parents=True, exist_ok=True)
    return instantiate(store_cfg)


def artifact_dir(store_cfg) -> str | None:
    """The directory to give optuna-dashboard's --artifact-dir, for a file system store."""
    if store_cfg is None or not str(store_cfg.get("_target_", "")).endswith("FileSystemArtifactStore"):
        return None
    return str(store_cfg.base_path)


def attach_best_model(store_cfg, trial, model_dir: Path, record: dict, is_current) -> str | None:
    """Zip the exported `model_dir` (still this trial's) and attach it to `trial`, unless the store already
    holds a better current model (`is_current(pointer)`, as the export decides); then the previous model's
    file is replaced by a note. Returns the artifact id. A failure only warns: the model is on disk anyway."""
    try:
        store = open_store(store_cfg)
        if store is None:
            return None
        with tempfile.TemporaryDirectory(dir=model_dir.parent, prefix=".artifact-") as tmp:
            archive = Path(tmp) / f"{record['study']}-trial-{trial.number}-model.zip"
            if not snapshot(model_dir, archive, trial.number):
                return None  # a better trial's model replaced it meanwhile; that trial attaches its own
            study, name = trial.study, record["objective"]
            storage = study._storage
            with study_lock(storage, study.study_name):  # workers of the study, on any machine, one at a time
                previous = storage.get_study_system_attrs(study._study_id).get(CURRENT)
                if previous and is_current(previous) and not improves(name, record["value"], previous["value"]):
                    return None
                artifact_id = upload_artifact(artifact_store=store, file_path=str(archive), study_or_trial=trial)
                storage.set_study_system_attr(study._study_id, CURRENT, {
                    "trial": trial.number, "value": record["value"], "artifact_id": artifact_id,
                    "filename": archive.name})
        if previous:
            store.write(previous["artifact_id"], io.BytesIO(tombstone(previous, trial.number, archive.name)))
        log.info("trial %d: model attached to the trial as artifact %s (%s)", trial.number, archive.name, artifact_id)
        return artifact_id
    except Exception as e:
        if getattr(e, "errno", None) == errno.ENOSPC:
            raise
        log.warning("trial %d: model not attached to study.artifacts: %s: %s", trial.number, type(e).__name__, e)
        return None


def snapshot(model_dir: Path, archive: Path, trial_number: int) -> bool:
    """Zip model_dir under the export's lock, if its marker still names this trial. Weights are stored,
    not deflated: float tensors shrink 8% for 4 s of CPU (MiniLM's 91 MB); the text files are deflated."""
    import fcntl

    from sweeper.train.export import read_marker

    with open(model_dir.with_name(f"{model_dir.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (read_marker(model_dir) or {}).get("trial") != trial_number:
            return False
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted(model_dir.rglob("*")):
                if path.is_file():
                    weights = path.suffix in (".safetensors", ".bin")
                    z.write(path, f"best-model/{path.relative_to(model_dir)}",
                            compress_type=zipfile.ZIP_STORED if weights else zipfile.ZIP_DEFLATED)
    return True


def tombstone(previous: dict, trial_number: int, filename: str) -> bytes:
    """A replaced model's file: still a zip (its name and type say so), holding only REPLACED.txt."""
    text = (f"Trial {previous['trial']}'s model (value {previous['value']}) was the study's best until trial "
            f"{trial_number} beat it; the artifact store keeps only the best model: {filename} on trial "
            f"{trial_number} (or a later best's).\n")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("REPLACED.txt", text)
    return out.getvalue()


def attach_report(store_cfg, study, report: Path) -> str | None:
    """Attach report.html to the study: the first time as a new artifact, later by rewriting that one in
    the store, so the study lists one report, the latest. A failure only warns."""
    try:
        store = open_store(store_cfg)
        if store is None:
            return None
        storage = study._storage
        with study_lock(storage, study.study_name):  # workers summarizing together: one artifact
            attrs = storage.get_study_system_attrs(study._study_id)
            # optuna-dashboard marks an artifact deleted there by a null
            metas = [json.loads(v) for k, v in attrs.items() if k.startswith(ARTIFACT_PREFIX)]
            same = [m["artifact_id"] for m in metas if m and m["filename"] == report.name]
            if same:
                with open(report, "rb") as f:
                    store.write(same[0], f)
                return same[0]
            return upload_artifact(artifact_store=store, file_path=str(report), study_or_trial=study)
    except Exception as e:
        if getattr(e, "errno", None) == errno.ENOSPC:
            raise
        log.warning("study %s: report not attached to study.artifacts: %s: %s", study.study_name,
                    type(e).__name__, e)
        return None
