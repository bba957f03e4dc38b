"""mode=status: the studies of a storage and their running trials, read without changing anything: a
missing SQLite file is not created, no table is created or migrated, the connection cannot write."""
from __future__ import annotations

import fnmatch
import warnings
from datetime import datetime
from urllib.parse import quote

import optuna
import sqlalchemy
from omegaconf import OmegaConf
from optuna.storages._rdb import models
from optuna.trial import TrialState

from sweeper.errors import ConfigError
from sweeper.search import budget
from sweeper.search.space import trial_values
from sweeper.study.definition import stored
from sweeper.study.patience import shown
from sweeper.study.progress import FINISHED, clock
from sweeper.study.storage import cannot_open, check_sqlite_file, sqlite_path

EXAMPLE = "the storage of a sweep that ran, e.g. sqlite:///outputs/sweeper.db"


def writing_nothing(argv: list[str]) -> list[str]:
    """Hydra overrides for a status command that leaves no run directory, .hydra copy or log file behind
    (so `watch python -m sweeper mode=status` adds nothing); those the user set are kept."""
    if {"-m", "--multirun"} & set(argv):  # a multirun's end would open (create) each job's storage to sum it up
        raise ConfigError("mode=status with -m: one status lists every study of its storage; allowed: "
                          "python -m sweeper mode=status [study.storage=URL] [study.name=PATTERN]")
    quiet = {"hydra.run.dir": ".", "hydra.output_subdir": "null", "hydra/job_logging": "stdout"}
    given = {a.split("=")[0].lstrip("+~") for a in argv}
    return [f"{k}={v}" for k, v in quiet.items() if k not in given]


def open_read_only(url: str) -> optuna.storages.RDBStorage:
    """The storage through a connection that cannot write: SQLite opened read-only (mode=ro), PostgreSQL
    in read-only transactions; Optuna told not to create tables nor check (and so migrate) the schema."""
    path, kwargs, read_url = sqlite_path(url), {}, url
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"study.storage={url}: no such file; allowed: {EXAMPLE}")  # a file: no password
        check_sqlite_file(url, path)
        read_url = f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"
    elif url.startswith("postgresql"):
        kwargs = {"connect_args": {"options": "-c default_transaction_read_only=on"}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = optuna.storages.RDBStorage(read_url, engine_kwargs=kwargs, skip_table_creation=True,
                                                 skip_compatibility_check=True)
            storage.get_all_studies()  # no Optuna tables: fails here, not halfway through the table
            return storage
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as e:
        raise cannot_open(url, e) from None


def heartbeat_ages(storage, trial_ids: list[int]) -> dict[int, float]:
    """Seconds since each running trial's last heartbeat, by the database's own clock (as Optuna's
    stale-trial check measures them)."""
    if not trial_ids:
        return {}
    beat = models.TrialHeartbeatModel
    with storage.engine.connect() as db:
        now = db.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar().replace(tzinfo=None)
        rows = db.execute(sqlalchemy.select(beat.trial_id, beat.heartbeat).where(beat.trial_id.in_(trial_ids)))
        return {trial_id: (now - at.replace(tzinfo=None)).total_seconds() for trial_id, at in rows}


def selected(cfg, names: list[str]) -> list[str]:
    """Every study, unless study.name was given (not its default `${task.name}-${model.name}`): then the
    studies it names, shell patterns (mrpc-*) allowed."""
    if OmegaConf.is_interpolation(cfg.study, "name"):
        return sorted(names)
    picked = sorted(n for n in names if fnmatch.fnmatchcase(n, cfg.study.name))
    if not picked:
        raise ConfigError(f"study.name={cfg.study.name} is not in {shown(cfg.study.storage)}; "
                          f"allowed: {', '.join(sorted(names)) or 'none, the storage holds no study'}")
    return picked


def best_text(frozen, trials, objective: str) -> str:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    if not complete:
        return "-"
    if len(frozen.directions) > 1:
        return f"{len(complete)} complete (multi-objective)"
    pick = max if frozen.directions[0].name == "MAXIMIZE" else min
    best = pick(complete, key=lambda t: t.value)
    return f"{objective} {best.value:.4f} (trial {best.number})"


def verdict_text(attrs: dict, objective: str) -> str:
    """The study's `verdict` attribute where one was stored, else mode=retrain's result, else '-'."""
    verdict = attrs.get("verdict")
    if isinstance(verdict, dict):
        verdict = verdict.get("summary") or verdict.get("verdict") or verdict
    if verdict:
        return str(verdict)
    r = attrs.get("retrain")
    if isinstance(r, dict) and "mean" in r:
        return f"retrain {objective} {r['mean']:.4f} ± {r['std']:.4f} over {len(r.get('seeds', []))} seeds"
    return "-"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def status(cfg) -> str:
    """The status text: one row per study, then one per running trial."""
    url = cfg.study.storage
    storage = open_read_only(url)
    try:
        studies = {s.study_name: s for s in storage.get_all_studies()}
        names = selected(cfg, list(studies))
        rows = [["study", "task", "model", "finished", "failed", "running", "best", "verdict"]]
        running = [["study", "trial", "host", "pid", "heartbeat", "running for", "params"]]
        now = datetime.now()
        for name in names:
            frozen = studies[name]
            attrs, trials = frozen.user_attrs, storage.get_all_trials(frozen._study_id, deepcopy=False)
            definition = stored(attrs) or {}
            objective = (definition.get("study.objectives") or ["value"])[0]
            live = [t for t in trials if t.state == TrialState.RUNNING]
            rows.append([name, str(definition.get("task.name", "?")), str(definition.get("model.name", "?")),
                         f"{sum(t.state in FINISHED for t in trials)}/{attrs.get('n_trials', '?')}"
                         + (f" ({spent})" if (spent := budget.progress(trials, attrs)) else ""),
                         str(sum(t.state == TrialState.FAIL for t in trials)), str(len(live)),
                         best_text(frozen, trials, objective), verdict_text(attrs, objective)])
            ages = heartbeat_ages(storage, [t._trial_id for t in live])
            for t in live:
                age = ages.get(t._trial_id)
                running.append([name, str(t.number), str(t.user_attrs.get("host", "?")),
                                str(t.user_attrs.get("pid", "?")), "-" if age is None else f"{age:.0f} s ago",
                                clock((now - t.datetime_start).total_seconds()) if t.datetime_start else "?",
                                " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in trial_values(t).items())])
    finally:
        storage.remove_session()
        storage.engine.dispose()
    text = f"{shown(url)}: {len(names)} {'study' if len(names) == 1 else 'studies'}\n{table(rows)}\n"
    if len(running) > 1:
        text += f"\nrunning trials\n{table(running)}\n"
    return text


def show_status(cfg) -> None:
    print(status(cfg), end="")
