"""The real CLI end to end: a multirun over two tasks, read back by optuna-dashboard over HTTP."""
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from optuna.trial import TrialState

from conftest import cli, load

pytestmark = pytest.mark.slow


def test_multirun_gives_one_study_per_task_in_one_file(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    result = cli("-m", "task=mrpc,sst2", "model=tiny", "study.n_trials=2", "task.max_train_samples=64",
                 "task.max_eval_samples=32", f"study.storage={storage}", f"out_dir={tmp_path}",
                 env={"GLUE_DIR": glue_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("mrpc-tiny", "sst2-tiny"):
        trials = load(storage, name).trials
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
        assert all(0 <= t.value <= 1 for t in trials)
        assert (tmp_path / name / "trials.csv").exists()
        assert f"study {name}: 2 complete, 0 pruned, 0 failed" in result.stdout
    assert f"dashboard: optuna-dashboard {storage}" in result.stdout

    # The same command again: both studies are complete, nothing runs.
    again = cli("-m", "task=mrpc,sst2", "model=tiny", "study.n_trials=2", "task.max_train_samples=64",
                "task.max_eval_samples=32", f"study.storage={storage}", f"out_dir={tmp_path}",
                env={"GLUE_DIR": glue_dir})
    assert again.returncode == 0
    assert again.stdout.count("is complete: 2 finished trials") == 2
    assert "Trial" not in again.stdout

    dashboard_reads_the_studies(storage, {"mrpc-tiny", "sst2-tiny"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_reads_the_studies(storage: str, names: set) -> None:
    port = free_port()
    exe = shutil.which("optuna-dashboard") or str(Path(__import__("sys").executable).parent / "optuna-dashboard")
    server = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        for _ in range(100):
            try:
                studies = json.load(urllib.request.urlopen(base, timeout=2))["study_summaries"]
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("optuna-dashboard did not answer")
        assert {s["study_name"] for s in studies} == names
        for s in studies:
            detail = json.load(urllib.request.urlopen(f"{base}/{s['study_id']}", timeout=5))
            assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete"]
            names = {p["name"] for p in detail["trials"][0]["params"]}
            assert names == {"optimizer.lr", "train.epochs", "train.batch_size"}
    finally:
        server.terminate()
        server.wait(10)
