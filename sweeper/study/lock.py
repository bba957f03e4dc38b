"""A lock per study, held by one worker at a time across processes and machines, so that "count the
study's trials, then start one" cannot interleave between workers (which overshot study.n_trials and
enqueued the reference trial twice). PostgreSQL: a transaction-level advisory lock; SQLite: an flock on
a file beside the database. Both are released by the operating system or the server if the holder dies."""
from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy

from sweeper.study.patience import lost_connection
from sweeper.study.storage import sqlite_path

log = logging.getLogger(__name__)


def lock_key(study_name: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, the same in every worker of the study."""
    return int.from_bytes(hashlib.blake2b(f"sweeper/{study_name}".encode(), digest_size=8).digest(),
                          "big", signed=True)


@contextmanager
def study_lock(storage, study_name: str) -> Iterator[None]:
    """Hold the study's lock while the body runs. `storage` is the RDBStorage (or Optuna's cache over it)."""
    storage = getattr(storage, "_backend", storage)
    engine = storage.engine
    if engine.dialect.name == "postgresql":
        # A connection of its own: the storage's sessions commit inside the body while this one waits
        # to commit, which is what releases the lock.
        def acquire(retry: bool) -> sqlalchemy.Connection:
            conn = engine.connect()
            try:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(study_name)})
            except BaseException:
                conn.close()
                raise
            return conn

        outage = getattr(storage, "outage", None)  # PatientStorage waits through a server's outage
        conn = outage.call(acquire) if outage else acquire(False)
        try:
            yield
        finally:
            try:
                conn.commit()
            except sqlalchemy.exc.DBAPIError as e:
                # A connection lost inside the body lost its lock with it (the server let go): nothing to release.
                if outage is None or lost_connection(e) is None:
                    raise
            finally:
                conn.close()
    elif engine.dialect.name == "sqlite" and sqlite_path(storage.url) is not None:
        # Not BEGIN IMMEDIATE on the database itself: the body writes to it from Optuna's own
        # connection, which would wait on that lock forever. SQLite files are local, so flock reaches
        # every worker that can open it.
        with open(f"{sqlite_path(storage.url)}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    else:
        yield  # one process (in-memory SQLite) or a database without a lock here (MySQL): best effort
