"""Study storage: an Optuna RDB storage (SQLite or PostgreSQL) with heartbeats, so a killed worker's
trial is failed and retried by the next worker, SQLite set up for several processes, and a server's
outage ridden out (sweeper/study/patience.py)."""
from __future__ import annotations

import logging
import sqlite3
import time
import warnings
from contextlib import closing
from functools import partial
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from sweeper.errors import ConfigError
from sweeper.study.faults import STOPPED
from sweeper.study.patience import CONNECT_ARGS, MAX_WAIT_S, PatientStorage, StorageUnreachable, shown

MACHINE_RETRIES = "machine_retries"  # a system attribute: how many of a trial's retries the machine's stops caused
log = logging.getLogger(__name__)
SQLITE_MAGIC = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "trials", "version_info"}
# Every table Optuna (and its migrations) creates: a file holding only some of them is a schema that
# another worker is creating right now, not someone else's database.
OPTUNA_SCHEMA = OPTUNA_TABLES | {
    "alembic_version", "study_directions", "study_system_attributes", "study_user_attributes", "trial_heartbeats",
    "trial_intermediate_values", "trial_params", "trial_system_attributes", "trial_user_attributes", "trial_values"}
SQLITE_BUSY_TIMEOUT_S = 60  # a writer waits this long for another process's write instead of failing
# libpq's words for a server that is not up yet, or not now: waited for at start (study.storage_patience), where
# an unknown host, a wrong password or a missing database fail at once.
NOT_UP = ("Connection refused", "timeout expired", "Connection timed out", "starting up", "shutting down",
          "not yet accepting connections", "in recovery mode", "too many clients", "No route to host",
          "Network is unreachable", "Connection reset", "server closed the connection unexpectedly")
SCHEMA_ATTEMPTS = 10  # workers opening a new database at once race to create its tables; retry this often
# Heartbeats and retries are "experimental" in Optuna since 2.8; this project relies on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    return Path(url[len("sqlite:///"):].split("?")[0])


def check_sqlite_file(url: str, path: Path) -> None:
    """Refuse, without touching it, a file that is not an Optuna study database."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise ConfigError(f"study.storage={url}: {path} is not an SQLite database; "
                              "allowed: an Optuna study database or a new file")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"study.storage={url}: cannot read {path} ({e})") from None
    if tables and not OPTUNA_TABLES <= tables and not tables <= OPTUNA_SCHEMA:
        raise ConfigError(f"study.storage={url}: {path} is an SQLite database without Optuna's tables "
                          f"(has {', '.join(sorted(tables)[:5])}); allowed: an Optuna study database or a new file")


class RetryTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry: a WAITING copy with the failed trial's parameters and intermediate values, minus its
    user attributes, which describe the run that died. A retry after the machine stopped the trial (its user
    attribute faults.STOPPED, or `stopped(number)`: a worker that gave up on the storage left a note beside the
    checkpoint) does not count toward max_retry; one after a worker died unexplained does."""

    def __init__(self, max_retry: int | None, inherit_intermediate_values: bool):
        super().__init__(max_retry=max_retry, inherit_intermediate_values=inherit_intermediate_values)
        self.stopped = lambda number: False  # the study run sets it: it knows where the checkpoints are

    def __call__(self, study, trial) -> None:
        stopped = bool(trial.user_attrs.get(STOPPED)) or self.stopped(trial.number)
        attrs = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
        attrs["retry_history"] = [*attrs["retry_history"], trial.number]
        attrs[MACHINE_RETRIES] = attrs.get(MACHINE_RETRIES, 0) + stopped
        if self._max_retry is not None and self._max_retry < len(attrs["retry_history"]) - attrs[MACHINE_RETRIES]:
            return
        study.add_trial(optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, system_attrs=attrs,
            intermediate_values=trial.intermediate_values if self._inherit_intermediate_values else None))


def use_wal(path: Path) -> None:
    """WAL lets readers (the dashboard, other workers) work while one process writes. Switching a new
    file to it needs the file to itself, which SQLite refuses at once, without a busy wait, while
    another worker opening the same new file holds it: retry."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as db:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == SCHEMA_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)


def open_storage(study_cfg):
    """The RDB storage named by study.storage, or a ConfigError saying why it cannot be opened."""
    url = study_cfg.storage
    engine_kwargs = {}
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(url, path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            use_wal(path)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"study.storage={url}: cannot open {path} ({e})") from None
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    # A file does not go away; "database is locked" is the busy timeout's business. A server may go away.
    storage_class = (optuna.storages.RDBStorage if url.startswith("sqlite")
                     else partial(PatientStorage, patience=study_cfg.storage_patience))
    if url.startswith("postgresql"):  # libpq's options, where the URL does not set its own
        engine_kwargs = {"connect_args": {k: v for k, v in CONNECT_ARGS.items() if f"{k}=" not in url}}
    retry = RetryTrial(max_retry=study_cfg.max_retries, inherit_intermediate_values=True)
    attempt, since = 0, None
    while True:
        attempt += 1
        try:
            storage = storage_class(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=study_cfg.heartbeat_interval,
                grace_period=study_cfg.grace_period, heartbeat_stale_trial_callback=retry)
        except sqlalchemy.exc.DBAPIError as e:
            if attempt < SCHEMA_ATTEMPTS and created_meanwhile(e):
                time.sleep(0.1 * attempt)  # another worker is creating the tables: use them once it is done
                continue
            if path is None and (reason := not_up(e)) is not None:
                since = waited_for(url, reason, since, study_cfg.storage_patience)
                continue
            raise cannot_open(url, e) from None
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError) as e:
            raise cannot_open(url, e) from None
        if since is not None:
            log.warning("study.storage=%s is up after %.0f s", shown(url), time.monotonic() - since)
        return storage


def not_up(error: sqlalchemy.exc.DBAPIError) -> str | None:
    """Why a server cannot be reached for now (refused, timed out, starting up or shutting down, full); None for
    a URL that can never work (an unknown host, a wrong password, a missing database) or any other error."""
    line = next((x.strip() for x in str(error.orig).splitlines() if x.strip()), "")
    return line if any(s in line for s in NOT_UP) else None


def waited_for(url: str, reason: str, since: float | None, patience: float) -> float:
    """Wait a little for a server not up yet (one log line, at the first wait); past the patience, give up."""
    now = time.monotonic()
    if since is None:
        since = now
        log.warning("study.storage=%s is not reachable (%s); waiting for it up to study.storage_patience=%g s",
                    shown(url), reason, patience)
    if now - since >= patience:
        raise StorageUnreachable(url, now - since, reason, running=False)
    time.sleep(min(MAX_WAIT_S, patience - (now - since)))
    return since


def created_meanwhile(error: sqlalchemy.exc.DBAPIError) -> bool:
    """Optuna creates a new database's tables (and stamps its schema version) on first use, without a
    lock: a worker that loses that race finds a table or a version row another worker just made."""
    return isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error.orig)


def cannot_open(url: str, error: Exception) -> ConfigError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ConfigError(f"study.storage={shown(url)}: cannot open it ({reason}); allowed: an Optuna "
                       "storage URL such as sqlite:///outputs/sweeper.db or postgresql://user@host/db")
