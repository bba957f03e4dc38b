"""A study storage that rides out a server outage: every call a worker makes to a PostgreSQL (or MySQL)
storage waits and retries while the server is unreachable, up to study.storage_patience seconds, then
stops the worker with StorageUnreachable (exit 5). Optuna's optimize loop, its heartbeat thread and the
study lock all call through it, so none of them dies of a restart or a blip."""
from __future__ import annotations

import copy
import logging
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)
MAX_WAIT_S = 2.0  # between attempts once the first ones failed: a server back is noticed within this
# Set where the URL does not: a server that vanished from the network (no "connection refused") would
# otherwise hold a connect or a query for minutes, past any patience.
CONNECT_ARGS = {"connect_timeout": 10, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class StorageUnreachable(BaseException):
    """The storage stayed unreachable past study.storage_patience. Not an Exception, like KeyboardInterrupt:
    no `except Exception` on its way out (the objective's, Optuna's catch=) may record it as the trial's
    failure, which it cannot store anyway; the trial stays RUNNING for its heartbeat to hand back."""

    def __init__(self, url: str, seconds: float, reason: str, running: bool = True):
        super().__init__(shown(url), seconds, reason)
        self.url, self.seconds, self.reason = shown(url), seconds, reason
        self.running = running  # False: at start, before any trial

    def __str__(self) -> str:
        if not self.running:
            return f"study.storage={self.url}: unreachable for {self.seconds:.0f} s ({self.reason}), since the start"
        return (f"study.storage={self.url}: unreachable for {self.seconds:.0f} s ({self.reason}); a trial it was "
                "running stays RUNNING until its heartbeat goes stale, then is retried from its last checkpoint")


def shown(url: str) -> str:
    """The URL with its password hidden (user:***@host), for logs and errors."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def lost_connection(error: BaseException) -> str | None:
    """Why the storage cannot be reached, when `error` (or what it wraps: Optuna turns SQLAlchemy's errors
    into StorageInternalError) is a lost or refused connection; None for any other error."""
    seen = error
    while seen is not None:
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and (
                seen.connection_invalidated
                or isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))):
            cause = seen.orig if seen.orig is not None else seen
            lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
            return lines[0] if lines else type(cause).__name__
        seen = seen.__cause__ or seen.__context__
    return None


def unreachable(error: BaseException | None) -> StorageUnreachable | None:
    """The StorageUnreachable behind `error`: Optuna's optimize loop, when the storage goes during its
    tell, hides it under an UnboundLocalError of its own (its `finally` reads a variable never set)."""
    while error is not None and not isinstance(error, StorageUnreachable):
        error = error.__cause__ or error.__context__
    return error


class Outage:
    """The storage's state, shared by a worker's threads: when it went away (one line in the log) and
    when it came back (another), and how long calls may still wait for it."""

    def __init__(self, url: str, patience: float):
        self.url, self.secret_url, self.patience = shown(url), url, patience
        self.since: float | None = None  # time.monotonic() of the first failure not yet followed by a success
        self.back_at: float | None = None
        self._lock = threading.Lock()

    def call(self, attempt, wait: bool = True):
        """attempt(retry) until it reaches the storage; retry is True from the second attempt on. With
        wait=False (the heartbeat: it beats again soon anyway), gives up quietly instead of waiting."""
        pause, retry = 0.0, False
        while True:
            try:
                result = attempt(retry)
            except Exception as e:
                reason = lost_connection(e)
                if reason is None:
                    raise
            else:
                self.came_back()
                return result
            if retry:  # the first failure may be a pooled connection a restart closed: retried at once, silently
                since = self.went(reason)
                if not wait:
                    return None
                waited = time.monotonic() - since
                # An interrupted worker (settling its trial) does not wait: it tries once and goes.
                if waited >= self.patience or isinstance(sys.exc_info()[1], KeyboardInterrupt):
                    raise StorageUnreachable(self.secret_url, waited, reason) from None
                try:
                    time.sleep(min(pause, self.patience - waited))
                except KeyboardInterrupt:  # Ctrl-C while waiting: the storage cannot settle the trial either
                    raise StorageUnreachable(self.secret_url, time.monotonic() - since,
                                             f"{reason}; interrupted while waiting") from None
                pause = min(max(2 * pause, 0.5), MAX_WAIT_S)
            retry = True

    def went(self, reason: str) -> float:
        """When the outage began (now, if this failure begins it)."""
        with self._lock:
            if self.since is None:
                self.since = time.monotonic()
                log.warning("study.storage=%s is unreachable (%s); waiting for it up to study.storage_patience=%g s, "
                            "training goes on", self.url, reason, self.patience)
            return self.since

    def came_back(self) -> None:
        with self._lock:
            if self.since is not None:
                log.warning("study.storage=%s is back after %.0f s", self.url, time.monotonic() - self.since)
                self.since, self.back_at = None, time.monotonic()

    def back_within(self, seconds: float) -> bool:
        return self.back_at is not None and time.monotonic() - self.back_at < seconds


def patient(name: str):
    """RDBStorage's method `name`, retried through the outage."""
    method = getattr(RDBStorage, name)

    def call(self, *args, **kwargs):
        return self.outage.call(lambda retry: method(self, *args, **kwargs))

    call.__name__ = call.__qualname__ = name
    return call


class PatientStorage(RDBStorage):
    """RDBStorage whose calls wait for the server through an outage (class docstring of the module).
    Writes retried after a lost connection may have committed already: each retry is made idempotent."""

    def __init__(self, url: str, patience: float, **kwargs):
        self.outage = Outage(url, patience)
        super().__init__(url, **kwargs)

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """A retry first looks for the trial its lost attempt may have committed, so an outage never
        makes two trials of one. A new trial is identified by its start time, set here (Optuna sets the
        same now() itself); a queued copy (a retry, an enqueued trial) by its parameters and system
        attributes, which name the trial it retries or the parameters enqueued."""
        template = template_trial or FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(), datetime_complete=None,
            params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=-1)

        def create(retry: bool) -> FrozenTrial:
            if retry and (committed := self.committed(study_id, template)) is not None:
                return committed
            # Optuna's _create_new_trial without its own retries, which repeat a commit whose answer was lost.
            with _create_scoped_session(self.scoped_session) as session:
                models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
                trial = self._get_prepared_new_trial(study_id, template, session)
                frozen = copy.deepcopy(template)
                frozen.number, frozen._trial_id = trial.number, trial.trial_id
                frozen.datetime_start = trial.datetime_start
                return frozen

        return self.outage.call(create)

    def committed(self, study_id: int, template: FrozenTrial) -> FrozenTrial | None:
        """The study's trial made from `template`, if there is one."""
        key = (template.state, template.datetime_start, template.params, template.system_attrs)
        return next((t for t in RDBStorage._get_trials(self, study_id, None, set(), -1)
                     if (t.state, t.datetime_start, t.params, t.system_attrs) == key), None)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        """A retried finish (tell) whose lost attempt committed finds the trial finished: as asked, done."""
        def finish(retry: bool) -> bool:
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                if retry and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        return self.outage.call(finish)

    def record_heartbeat(self, trial_id: int) -> None:
        """Never raises for an outage: Optuna's heartbeat thread would die of it and leave the trial
        without heartbeats; it beats again at the next interval instead."""
        self.outage.call(lambda retry: RDBStorage.record_heartbeat(self, trial_id), wait=False)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, and trials that never beat (their first heartbeat fell into an outage
        and their worker is gone) started more than grace_period ago. Right after an outage, none: every
        worker's heartbeat stopped with the server and beats again within an interval."""
        grace = timedelta(seconds=self.grace_period or 2 * self.heartbeat_interval)

        def stale(retry: bool) -> list[int]:
            ids = RDBStorage._get_stale_trial_ids(self, study_id)
            with _create_scoped_session(self.scoped_session) as session:
                trial = models.TrialModel
                ids += [row[0] for row in session.query(trial.trial_id).filter(
                    trial.study_id == study_id, trial.state == TrialState.RUNNING, ~trial.heartbeats.any(),
                    trial._datetime_start_utc < datetime.now(timezone.utc).replace(tzinfo=None) - grace)]
            return ids

        ids = self.outage.call(stale)
        return [] if self.outage.back_within(grace.total_seconds()) else ids


# Every other method that reaches the database, retried as it is: these read, or upsert (attributes,
# intermediate values, parameters) what a retry upserts again. The public methods that only delegate
# (get_all_trials, create_new_trial, set_trial_param, get_best_trial) go through these or the above.
for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
              "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "_set_trial_param", "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "_get_trials",
              "_get_best_trial_id"):
    setattr(PatientStorage, _name, patient(_name))
