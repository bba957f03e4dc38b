"""Storage outages with a real PostgreSQL server stopped and started again under running workers. Each
module run gets a private cluster (initdb, its own port and socket directory), never the shared server
other tests use: stopping that one would fail them."""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from test_faults import SLOW, wait_for

from conftest import TINY, cli, cli_popen, load

BIN = next((Path(d) for d in ("/usr/lib/postgresql/15/bin", "/usr/local/bin")
            if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()), None)
if BIN is None:
    for found in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True):
        BIN = found.parent
        break
pytestmark = pytest.mark.skipif(BIN is None, reason="PostgreSQL's initdb/pg_ctl are not installed "
                                "(.ci/postgres installs Debian's postgresql)")


class Server:
    """A private PostgreSQL cluster on a free loopback port, trust auth, with a database `sweeper`."""

    def __init__(self, root: Path, password: str | None = None):
        """trust auth, or with `password` scram-sha-256 auth for the superuser postgres with that password."""
        self.root, self.data, self.password = root, root / "data", password
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # trust: the password is unused
        self.url = f"postgresql://postgres:{password or 'secret'}@127.0.0.1:{self.port}/sweeper"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        auth = ["-A", "trust"]
        if password:
            (root / "pw").write_text(password)
            if os.geteuid() == 0:
                shutil.chown(root / "pw", "postgres")
            auth = ["-A", "scram-sha-256", f"--pwfile={root / 'pw'}"]
        self.pg(BIN / "initdb", "-D", self.data, *auth, "-U", "postgres", "--no-sync", "-E", "UTF8")
        (root / "pw").unlink(missing_ok=True)

    def pg(self, *args) -> None:
        env = {**os.environ, "PGPASSWORD": self.password} if self.password else None
        subprocess.run([*self.as_postgres, *map(str, args)], check=True, capture_output=True, timeout=120, env=env)

    def start(self) -> None:
        self.pg(BIN / "pg_ctl", "-D", self.data, "-l", self.root / "log", "-w", "start", "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self.pg(BIN / "pg_ctl", "-D", self.data, "-w", "stop", "-m", "fast")

    def stop_for(self, seconds: float) -> threading.Thread:
        """Stop now, start again `seconds` later (in a thread, which the caller joins)."""
        self.stop()
        thread = threading.Thread(target=lambda: (time.sleep(seconds), self.start()))
        thread.start()
        return thread


def private_server(password: str | None = None):
    """A started Server with its database, stopped and removed after (a generator for a fixture)."""
    root = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        server = Server(root, password)
        server.start()
        server.pg(BIN / "createdb", "-h", "127.0.0.1", "-p", server.port, "-U", "postgres", "sweeper")
    except (subprocess.CalledProcessError, LookupError, OSError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start a private PostgreSQL cluster: {e}")
    yield server
    try:
        server.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped: a test failed between its stop and start
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    yield from private_server()


def study_cfg(url: str, patience: int) -> SimpleNamespace:
    return SimpleNamespace(storage=url, max_retries=3, heartbeat_interval=1, grace_period=3,
                           storage_patience=patience)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_calls_wait_through_an_outage_and_give_up_past_the_patience(server, caplog):
    from sweeper.study.patience import StorageUnreachable
    from sweeper.study.storage import open_storage

    storage = open_storage(study_cfg(server.url, patience=30))
    study = optuna.create_study(storage=storage, study_name="unit", load_if_exists=True)
    trial = study.ask()
    restart = server.stop_for(3)
    with caplog.at_level("WARNING", logger="sweeper.study.patience"):
        study.tell(trial, 0.5)  # waits for the server, then stores
        trial = study.ask()  # a new trial, and only one
    restart.join()
    assert [t.state for t in load(server.url, "unit").trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    lines = [r.getMessage() for r in caplog.records if r.name == "sweeper.study.patience"]
    assert len(lines) == 2 and "is unreachable" in lines[0] and "is back after" in lines[1], lines
    assert "secret" not in " ".join(lines) and "postgres:***@" in lines[0]

    storage = open_storage(study_cfg(server.url, patience=1))
    study = optuna.load_study(storage=storage, study_name="unit")
    restart = server.stop_for(3)
    try:
        with pytest.raises(StorageUnreachable) as raised:
            study.tell(trial, 0.7)
    finally:
        restart.join()
    assert raised.value.seconds >= 1 and "unreachable for" in str(raised.value)
    assert "secret" not in str(raised.value)
    assert load(server.url, "unit").trials[1].state == TrialState.RUNNING  # left for its heartbeat


def test_an_outage_during_optunas_tell_is_found_behind_its_unbound_local_error(server):
    """The users' crash: the server goes while Optuna's optimize loop stores a trial's result. Optuna then
    raises an UnboundLocalError of its own; the StorageUnreachable behind it is what the CLI reports."""
    from sweeper.study.patience import unreachable
    from sweeper.study.storage import open_storage

    study = optuna.create_study(storage=open_storage(study_cfg(server.url, patience=2)), study_name="tell")

    def objective(trial):
        server.stop()  # after its ask and its first heartbeat, before its tell
        return 0.5

    try:
        with pytest.raises(BaseException) as raised:
            study.optimize(objective, n_trials=1)
    finally:
        server.start()
    assert unreachable(raised.value) is not None, repr(raised.value)
    assert [t.state for t in load(server.url, "tell").trials] == [TrialState.RUNNING]


def test_a_retried_create_finds_the_trial_its_lost_attempt_made(server):
    """A create whose commit reached the server but whose answer was lost is retried: the retry must find
    that trial (a new one by its start time, to the microsecond; a queued retry by the trial it retries)."""
    from optuna.distributions import FloatDistribution

    from sweeper.study.storage import open_storage

    storage = open_storage(study_cfg(server.url, patience=30))
    study_id = optuna.create_study(storage=storage, study_name="ids")._study_id
    new = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                      datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
                      intermediate_values={}, trial_id=-1)
    assert storage.committed(study_id, new) is None
    made = storage.create_new_trial(study_id, new)
    assert storage.committed(study_id, new)._trial_id == made
    retry = optuna.create_trial(state=TrialState.WAITING, params={"lr": 0.1},
                                distributions={"lr": FloatDistribution(0.01, 1)},
                                system_attrs={"failed_trial": 0, "retry_history": [0]})
    queued = storage.create_new_trial(study_id, retry)
    assert storage.committed(study_id, retry)._trial_id == queued
    other = optuna.create_trial(state=TrialState.WAITING, params={"lr": 0.1},
                                distributions={"lr": FloatDistribution(0.01, 1)},
                                system_attrs={"failed_trial": 1, "retry_history": [1]})
    assert storage.committed(study_id, other) is None

def command(server, tmp_path, glue_dir, name: str, *extra: str) -> list[str]:
    # SLOW's trials, shorter: the machine may be busy, and the outage only needs to fall inside a trial.
    return [*SLOW, "task.max_train_samples=160", "study.n_trials=2", f"study.name={name}",
            f"study.storage={server.url}", f"out_dir={tmp_path}", f"data_dir={glue_dir}", *extra]


def in_second_epoch(server, name: str, tmp_path) -> bool:
    """Trial 0 has reported (and checkpointed) its first epoch."""
    ckpt = tmp_path / name / "checkpoints" / "trial-0" / "epoch-1" / "progress.json"
    return ckpt.exists() and 0 in load(server.url, name).trials[0].intermediate_values


@pytest.mark.slow
def test_a_short_outage_mid_trial_is_ridden_out(server, tmp_path, glue_dir):
    cmd = command(server, tmp_path, glue_dir, "short")
    worker = cli_popen(*cmd)
    wait_for(lambda: in_second_epoch(server, "short", tmp_path))
    server.stop_for(8).join()
    out, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, out[-3000:]
    assert "is unreachable (connection" in out and "is back after" in out, out[-3000:]
    (tmp_path.parent / "short.log").write_text(out)
    assert "Traceback" not in out, out[-3000:]
    assert not [line for line in out.splitlines() if "unreachable" in line and "secret" in line]
    states = [t.state for t in load(server.url, "short").trials]
    assert states == [TrialState.COMPLETE] * 2 or sorted(states) == [TrialState.COMPLETE, TrialState.PRUNED], states


@pytest.mark.slow
def test_an_outage_past_the_patience_exits_5_and_the_rerun_retries_the_trial(server, tmp_path, glue_dir):
    cmd = command(server, tmp_path, glue_dir, "long", "study.storage_patience=5")
    worker = cli_popen(*cmd)
    wait_for(lambda: in_second_epoch(server, "long", tmp_path))
    server.stop()
    try:
        out, _ = worker.communicate(timeout=120)
    finally:
        server.start()
    assert worker.returncode == 5, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"error: study.storage=postgresql://postgres:***@127.0.0.1:{server.port}/sweeper: "
                           "unreachable for "), out[-3000:]
    resume = shlex.join(cmd).replace("postgres:secret@", "postgres:***@")  # the password is not printed
    assert last.endswith(f"; resume with: python -m sweeper {resume}"), last
    assert "Traceback" not in out and "secret" not in out, out[-3000:]
    assert [t.state for t in load(server.url, "long").trials] == [TrialState.RUNNING]  # for its heartbeat
    # The worker could not tell the storage why it stopped: it says so beside the checkpoint, for the retry.
    assert "unreachable for" in (tmp_path / "long" / "checkpoints" / "trial-0" / "stopped-by-machine.txt").read_text()

    result = cli(*cmd, timeout=300)  # its heartbeat is stale by now: failed, retried from the checkpoint
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    trials = load(server.url, "long").trials
    assert trials[0].state == TrialState.FAIL
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2 and len(trials) == 3
    retry = next(t for t in trials if t.system_attrs.get("retry_history") == [0])
    assert retry.params == trials[0].params and retry.user_attrs["resumed_at_epoch"] >= 1
    assert retry.system_attrs["machine_retries"] == 1  # an outage uses up none of study.max_retries


@pytest.mark.slow
def test_a_server_not_up_yet_at_start_is_waited_for(server, tmp_path, glue_dir):
    cmd = [*TINY, "search.space.train.epochs=1", "study.n_trials=1", "study.name=late", f"study.storage={server.url}",
           f"out_dir={tmp_path}", f"data_dir={glue_dir}", "study.storage_patience=120"]
    restart = server.stop_for(6)  # the worker starts while the server is down: refused, then up
    try:
        result = cli(*cmd, timeout=300)
    finally:
        restart.join()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    waits = [line for line in out.splitlines() if "is not reachable (" in line]
    assert len(waits) == 1 and "Connection refused" in waits[0] and "postgres:***@" in waits[0], out[-3000:]
    assert "waiting for it up to study.storage_patience=120 s" in waits[0] and "is up after" in out
    assert "secret" not in out
    assert [t.state for t in load(server.url, "late").trials] == [TrialState.COMPLETE]


def test_a_server_not_up_past_the_patience_exits_5_in_one_line(server, tmp_path, glue_dir):
    cmd = [*TINY, f"study.storage={server.url}", f"out_dir={tmp_path}", f"data_dir={glue_dir}",
           "study.storage_patience=2"]
    server.stop()
    try:
        result = cli(*cmd, timeout=120)
    finally:
        server.start()
    assert result.returncode == 5, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: study.storage=postgresql://postgres:***@127.0.0.1:{server.port}/sweeper: "
                           "unreachable for 2 s (connection failed: "), last
    assert last.endswith(f"since the start; resume with: python -m sweeper {shlex.join(cmd)}".replace(
        "postgres:secret@", "postgres:***@")), last
    assert "secret" not in result.stdout + result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("url, reason", [
    ("postgresql://postgres:secret@no-such-host.invalid/sweeper", "failed to resolve host"),
    ("postgresql://postgres:secret@127.0.0.1:{port}/no_such_db", 'database "no_such_db" does not exist'),
    ("postgresq://postgres:secret@127.0.0.1:{port}/sweeper", "Can't load plugin"),
], ids=["unknown-host", "missing-database", "bad-scheme"])
def test_a_url_that_can_never_work_fails_at_once_in_one_line(server, tmp_path, glue_dir, url, reason):
    url = url.format(port=server.port)
    result = cli(*TINY, f"study.storage={url}", f"out_dir={tmp_path}", f"data_dir={glue_dir}", timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: study.storage=postgres") and reason in lines[0], lines
    assert "postgres:***@" in lines[0] and "secret" not in result.stdout + result.stderr
    assert "not reachable" not in result.stdout + result.stderr  # not waited for
