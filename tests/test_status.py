"""mode=status (sweeper/results/status.py): the studies of a storage and their running trials, read without
changing anything, on SQLite and PostgreSQL, also while a sweep runs."""
import hashlib
import os
import re
import signal
import socket
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from conftest import TINY, cli, cli_popen, load
from sweeper.errors import ConfigError
from sweeper.results.status import heartbeat_ages, status
from sweeper.study.storage import open_storage

PG = os.environ.get("SWEEPER_TEST_POSTGRES")
# Trials of a few seconds an epoch (tests/test_faults.py's), to be caught running.
SLOW = [*TINY, "task.max_train_samples=2000", "search.space.train.epochs=3", "search.space.train.batch_size=8",
        "study.n_trials=2", "study.heartbeat_interval=1", "study.grace_period=5"]


def fingerprint(path: Path) -> dict:
    """The database and its write-ahead log, byte for byte, with their modification times (not the -shm
    index, which every reader maps)."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(path.parent.iterdir()) if p.name in (path.name, path.name + "-wal")}


def test_status_lists_each_study_and_its_running_trials_and_writes_nothing(compose_cfg, tmp_path):
    cfg = compose_cfg("mode=status")
    storage = open_storage(cfg.study)
    done = optuna.create_study(storage=storage, study_name="mrpc-minilm", direction="maximize")
    for key, value in {"task": {"name": "mrpc"}, "model": {"name": "minilm"}, "study": {"objectives": ["f1"]},
                       "recorded": {}, "n_trials": 2,
                       "retrain": {"mean": 0.861, "std": 0.0042, "seeds": [42, 43, 44]}}.items():
        done.set_user_attr(key, value)
    done.add_trial(optuna.trial.create_trial(value=0.85))
    done.add_trial(optuna.trial.create_trial(value=0.87))
    busy = optuna.create_study(storage=storage, study_name="sst2-minilm", direction="maximize")
    busy.set_user_attr("n_trials", 4)
    busy.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    running = busy.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-4, log=True)})
    running.set_user_attr("host", "node7")
    running.set_user_attr("pid", 4242)
    storage.record_heartbeat(running._trial_id)
    db = tmp_path / "s.db"
    before, files = fingerprint(db), sorted(tmp_path.iterdir())

    text = status(cfg)
    lines = text.splitlines()
    assert lines[0] == f"sqlite:///{tmp_path}/s.db: 2 studies"
    assert lines[1].split() == ["study", "task", "model", "finished", "failed", "running", "best", "verdict"]
    assert lines[2].split() == ["mrpc-minilm", "mrpc", "minilm", "2/2", "0", "0", "f1", "0.8700", "(trial", "1)",
                                "retrain", "f1", "0.8610", "±", "0.0042", "over", "3", "seeds"]
    assert lines[3].split() == ["sst2-minilm", "?", "?", "0/4", "1", "1", "-", "-"]  # no definition stored
    assert lines[5] == "running trials"
    row = lines[7].split()
    assert row[:4] == ["sst2-minilm", "1", "node7", "4242"] and row[5:7] == ["s", "ago"]
    assert int(row[4]) >= 0 and re.fullmatch(r"\d+:\d\d:\d\d", row[7])
    assert row[8].startswith("optimizer.lr=")  # a 0.1 study's lr, by its config key
    assert fingerprint(db) == before and sorted(tmp_path.iterdir()) == files  # nothing written, nothing created

    # study.name given (not its default `${task.name}-${model.name}`): those studies only; patterns too
    assert status(compose_cfg("mode=status", "study.name=sst2-*")).splitlines()[2].startswith("sst2-minilm")
    with pytest.raises(ConfigError, match=r"study.name=qnli-minilm is not in .*; allowed: mrpc-minilm, sst2-minilm"):
        status(compose_cfg("mode=status", "study.name=qnli-minilm"))


def test_status_refuses_a_file_that_is_no_optuna_database(compose_cfg, tmp_path):
    (tmp_path / "s.db").write_text("notes\n")
    with pytest.raises(ConfigError, match="is not an SQLite database"):
        status(compose_cfg("mode=status"))


@pytest.mark.slow
def test_status_of_a_missing_sqlite_file_is_one_error_and_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/none.db"
    result = cli("mode=status", f"study.storage={url}", f"out_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: study.storage={url}: no such file; allowed: the storage of a sweep that ran, "
        "e.g. sqlite:///outputs/sweeper.db"]
    assert list(tmp_path.iterdir()) == []  # no database, no Hydra run directory

    result = cli("-m", "mode=status", f"study.storage={url}", f"out_dir={tmp_path}")
    assert result.returncode == 2 and result.stderr.startswith("error: mode=status with -m: ")
    assert list(tmp_path.iterdir()) == []


def status_while_paused(proc, storage: str, study: str, glue_dir, snapshot) -> tuple[str, object, object]:
    """Once the sweep has a trial running: stop the worker, take `snapshot()` of the storage, run
    `python -m sweeper mode=status`, take it again, let the worker go on."""
    db = None

    def running():  # a trial with its worker, its configuration and a heartbeat: what check_rows reads
        nonlocal db
        try:
            trials = load(storage, study).trials
        except KeyError:  # the study is not created yet
            return False
        last, db = trials[-1] if trials else None, db or RDBStorage(storage)
        return (last is not None and last.state == TrialState.RUNNING and "pid" in last.user_attrs
                and "config" in last.user_attrs and bool(heartbeat_ages(db, [last._trial_id])))

    deadline = time.time() + 300
    while not running():
        assert time.time() < deadline and proc.poll() is None, "no trial started"
        time.sleep(0.5)
    proc.send_signal(signal.SIGSTOP)
    try:
        before = snapshot()
        result = cli("mode=status", f"study.storage={storage}", f"study.name={study}", f"data_dir={glue_dir}")
        after = snapshot()
    finally:
        proc.send_signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, before, after


def check_rows(text: str, study: str, pid: int) -> None:
    lines = text.splitlines()
    row = next(line.split() for line in lines[2:] if line.startswith(study + " "))
    assert row[:6] == [study, "mrpc", "tiny", "0/2", "0", "1"], text
    trial = next(line.split() for line in lines[lines.index("running trials"):] if line.startswith(study + " "))
    assert trial[:4] == [study, "0", socket.gethostname(), str(pid)], text
    assert trial[5:7] == ["s", "ago"], text
    assert trial[8:] == ["optimizer.lr=5e-05", "train.epochs=3", "train.batch_size=8"], text


@pytest.mark.slow
def test_status_during_a_running_sweep_on_sqlite(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    proc = cli_popen(*SLOW, f"study.storage={storage}", f"out_dir={tmp_path}", f"data_dir={glue_dir}")
    try:
        text, before, after = status_while_paused(proc, storage, "mrpc-tiny", glue_dir,
                                                  lambda: fingerprint(tmp_path / "s.db"))
    finally:
        proc.terminate()
        proc.communicate(timeout=120)
    check_rows(text, "mrpc-tiny", proc.pid)
    assert after == before  # the database and its log, byte for byte


@pytest.mark.slow
@pytest.mark.skipif(not PG, reason="no PostgreSQL server: set SWEEPER_TEST_POSTGRES (see tests/test_postgres.py)")
def test_status_during_a_running_sweep_on_postgresql(tmp_path, glue_dir):
    import psycopg

    name = f"status-{uuid.uuid4().hex[:8]}"

    def rows():  # everything stored about the study
        with psycopg.connect(PG) as db:
            sid = db.execute("SELECT study_id FROM studies WHERE study_name = %s", (name,)).fetchone()[0]
            trials = "SELECT trial_id FROM trials WHERE study_id = %s"
            return [db.execute(q, (sid,)).fetchall() for q in (
                "SELECT * FROM trials WHERE study_id = %s ORDER BY trial_id",
                "SELECT * FROM study_user_attributes WHERE study_id = %s ORDER BY key",
                f"SELECT * FROM trial_user_attributes WHERE trial_id IN ({trials}) ORDER BY trial_id, key",
                f"SELECT * FROM trial_heartbeats WHERE trial_id IN ({trials})",
                f"SELECT * FROM trial_params WHERE trial_id IN ({trials}) ORDER BY trial_id, param_name")]

    proc = cli_popen(*SLOW, f"study.storage={PG}", f"study.name={name}", f"out_dir={tmp_path}",
                     f"data_dir={glue_dir}")
    try:
        text, before, after = status_while_paused(proc, PG, name, glue_dir, rows)
    finally:
        proc.terminate()
        proc.communicate(timeout=120)
        optuna.delete_study(study_name=name, storage=PG)
    check_rows(text, name, proc.pid)
    assert after == before and before[3]  # its heartbeat row among what did not change
