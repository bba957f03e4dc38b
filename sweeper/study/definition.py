"""What defines a study: the config keys that change what its trials measure. Stored on the study when
it is created, compared on every later run and by every worker, so a study cannot silently mix trials
trained on other data, another model, optimizer, search space or pruner."""
from __future__ import annotations

import csv
import hashlib
import logging
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from sweeper.errors import ConfigError
from sweeper.train.metrics import direction, objectives

log = logging.getLogger(__name__)
# One study user attribute per section, a dict of flat dotted keys: readable in optuna-dashboard.
SECTIONS = ("task", "data", "model", "optimizer", "search", "pruner", "train", "seed", "study")
TRAIN_RESULTS = ("precision", "group_by_length", "cpu_fastpath", "epochs", "batch_size", "keep_best")  # the rest is
#   speed (compile) or display
# Knobs at the value that does nothing new: left out, so studies made before a knob existed keep their definition.
NEUTRAL = {"optimizer.schedule": "linear", "optimizer.layer_decay": 1.0, "optimizer.max_grad_norm": None,
           "model.pooling": "cls", "model.reinit_layers": 0, "model.dropout.hidden": None,
           "model.dropout.attention": None, "model.dropout.classifier": None, "train.keep_best": False}
# Changes after which old and new trials still measure the same thing (same data, model, objective), so
# study.accept may take them: when to prune (and stop probes), the space (not a categorical's choices: Optuna fails
# every trial whose choices differ from the study's earlier ones), same-math training switches, the same weights
# found at another path (another venv).
SAFE = ("pruner", "search.probe", "search.space", "search.custom", "train.precision", "train.group_by_length",
        "train.cpu_fastpath", "optimizer.optimizer.fused", "model.path")
CATEGORICAL = "CategoricalDistribution("
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "optuna", "hydra-core")
ABSENT = "(absent)"
CREATOR_WAIT_S = 2.0  # a worker that created the study an instant ago is still storing its definition
# Classes studies recorded under the module paths they had before sweeper/ was grouped by stage, and before the
# search policy became a stage of its own: the same class, so a study that stored an old path is the same study.
MOVED = {f"{old}.{name}": f"sweeper.search.pruning.{name}" for old in ("sweeper.pruning", "sweeper.study.pruning")
         for name in ("PlateauMedianPruner", "PlateauHalvingPruner")}


def definition(cfg) -> dict[str, Any]:
    """The study's defining keys, resolved (model.path is the real directory), as flat dotted keys."""
    def plain(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)

    from sweeper.search import space

    compiled = space.compile_space(cfg.search)
    flat = {}
    for section in ("task", "model", "optimizer"):
        flat.update(flatten(section, plain(cfg[section])))
    if flat.get("task.selection_size") is None:  # no selection split: the definition studies had before the key
        flat.pop("task.selection_size", None)
    flat.update(flatten("train", {k: plain(cfg.train)[k] for k in TRAIN_RESULTS}))
    for key in [k for k in flat if k in compiled or (k in NEUTRAL and flat[k] == NEUTRAL[k])]:
        del flat[key]  # a key the space sets is the space's; a knob at its neutral value, as before it existed
    flat.update({f"search.space.{k}": space.describe(v) for k, v in compiled.items()})
    if cfg.search.get("custom"):
        flat["search.custom"] = plain(cfg.search)["custom"]
    if cfg.search.probe.trials:  # off: the definition studies had before the key
        flat.update(flatten("search.probe", plain(cfg.search.probe)))
    flat.update(flatten("pruner", plain(cfg.pruner)))
    flat["data.content"] = data_content(cfg.task, cfg.data_dir)
    flat["seed"] = cfg.seed  # the training seed and the subsample's
    flat["study.objectives"] = objectives(cfg.task, cfg.study)
    flat["study.directions"] = [direction(n) for n in flat["study.objectives"]]
    return flat


def flatten(prefix: str, value) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in flatten(f"{prefix}.{key}", sub).items()}
    return {prefix: value}


def data_content(task, data_dir: str | None) -> str:
    """A digest of the task's split files (any format, task.data_files too), so the same data under another
    path resumes, and other data under the same path does not; a Hub dataset by its name."""
    from sweeper.data import source

    where = source.resolve(task, data_dir)
    if where.hub is not None:
        return f"Hub {where.hub}" + (f" {where.subset}" if where.subset else "")
    h = hashlib.sha256()
    for split in source.splits(task):
        for path in source.split_files(where, task, split):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return f"sha256:{h.hexdigest()[:16]}"


def stored(attrs: dict) -> dict[str, Any] | None:
    """The definition kept in a study's user attributes; None for a study made before they held one, or
    while its creator is still writing it ("recorded" comes last)."""
    if "recorded" not in attrs:
        return None
    flat = {}
    for s in SECTIONS:
        if s in attrs:
            flat.update({f"{s}.{k}": v for k, v in attrs[s].items()} if isinstance(attrs[s], dict) else {s: attrs[s]})
    return legacy({k: MOVED.get(v, v) if isinstance(v, str) else v for k, v in flat.items()})


def legacy(flat: dict) -> dict:
    """A definition stored by sweeper 0.1 in today's terms: its three ranges as the space's distributions, its
    scheduler (always linear) as the neutral schedule, left out."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if "search.lr.low" not in flat:
        return flat
    out = {k: v for k, v in flat.items() if not k.startswith(("search.lr.", "search.epochs.", "search.batch_size",
                                                                "optimizer.scheduler."))}
    out["search.space.optimizer.lr"] = repr(FloatDistribution(flat["search.lr.low"], flat["search.lr.high"], log=True))
    out["search.space.train.epochs"] = repr(IntDistribution(flat["search.epochs.low"], flat["search.epochs.high"]))
    out["search.space.train.batch_size"] = repr(CategoricalDistribution(flat["search.batch_size"]))
    return out


def differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(key, stored value, current value) for every key whose value differs, in definition order."""
    keys = list(new) + [k for k in old if k not in new]
    return [(k, old.get(k, ABSENT), new.get(k, ABSENT)) for k in keys if old.get(k, ABSENT) != new.get(k, ABSENT)]


def covered(key: str, entries) -> bool:
    return any(key == e or key.startswith(e + ".") for e in entries)


def unsafe_change(key: str, old, new) -> bool:
    """A change study.accept cannot take even where it covers the key: a categorical's choices."""
    return key.startswith("search.space.") and old != ABSENT and new != ABSENT and (
        str(old).startswith(CATEGORICAL) or str(new).startswith(CATEGORICAL))


def check_accept(accept, now: dict) -> None:
    for entry in accept:
        keys = [k for k in now if covered(k, [entry])]
        if not (covered(entry, SAFE) or keys and all(covered(k, SAFE) for k in keys)):
            raise ConfigError(f"study.accept=[{entry}]: a change there makes old and new trials measure different "
                              f"things; allowed: {', '.join(SAFE)} (or train for its three); else a new study.name")


def show(value) -> str:
    """A value as it would be written in an override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def refusal(name: str, diffs, accept) -> str | None:
    """The error for the differences not accepted, naming each with both values and the ways on."""
    # A key the space now sets (or no longer sets) leaves the fixed sections: part of the space's change.
    moved = {k.removeprefix("search.space.") for k, _, _ in diffs if k.startswith("search.space.")}
    diffs = [(f"search.space.{k}" if k in moved else k, old, new) for k, old, new in diffs]
    refused = [d for d in diffs if not covered(d[0], accept) or unsafe_change(*d)]
    if not refused:
        return None
    listed = "; ".join(f"{k}: stored {show(old)}, now {show(new)}" for k, old, new in refused)
    safe = list(dict.fromkeys(e for k, old, new in refused for e in SAFE
                              if covered(k, [e]) and not unsafe_change(k, old, new)))
    unsafe = [k for k, old, new in refused if not covered(k, SAFE) or unsafe_change(k, old, new)]
    ways = f"run it under a new study.name (e.g. study.name={name}-2) or with the stored values"
    if safe and not unsafe:
        ways += f", or accept the change with study.accept=[{','.join(safe)}]"
    elif safe:
        ways += f"; study.accept may take {', '.join(safe)}, not {', '.join(unsafe)}"
    return f"study {name} was created with another definition: {listed}; allowed: {ways}"


def verify(storage, cfg) -> list[tuple[str, Any, Any]]:
    """Refuse, writing nothing, a config that differs from its stored study's definition beyond
    study.accept; returns the accepted differences. A new study or one without a definition passes."""
    now = definition(cfg)
    check_accept(cfg.study.accept, now)
    try:
        study_id = storage.get_study_id_from_name(cfg.study.name)
    except KeyError:
        return []
    old = stored(storage.get_study_user_attrs(study_id))
    if old is None:
        return []
    diffs = differences(old, now)
    message = refusal(cfg.study.name, diffs, cfg.study.accept)
    if message:
        raise ConfigError(message)
    return diffs


def defined_study(storage, cfg, pruner) -> optuna.Study:
    """The study cfg names: created with its definition stored, or loaded once it matches the stored one
    (a study from before definitions were stored adopts this config's, with a warning)."""
    name = cfg.study.name
    try:
        study = optuna.create_study(storage=storage, study_name=name, pruner=pruner,
                                    directions=[direction(n) for n in objectives(cfg.task, cfg.study)])
        record(study, cfg)
        return study
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, pruner=pruner)
    deadline = time.time() + CREATOR_WAIT_S
    while stored(study.user_attrs) is None and not study.get_trials(deepcopy=False) and time.time() < deadline:
        time.sleep(0.1)
    if stored(study.user_attrs) is None:
        if study.get_trials(deepcopy=False):
            log.warning("study %s has no stored definition (made before sweeper stored one); "
                        "storing this run's", name)
        record(study, cfg)
        return study
    accepted = verify(storage, cfg)
    if accepted:
        n = len(study.get_trials(deepcopy=False))
        changes = [f"from trial {n}: {k}: {show(old)} -> {show(new)}" for k, old, new in accepted]
        log.warning("study %s: study.accept lets these change from trial %d on: %s", name, n,
                    "; ".join(c.split(": ", 1)[1] for c in changes))
        store(study, definition(cfg))
        study.set_user_attr("changes", study.user_attrs.get("changes", []) + changes)
    return study


def store(study, flat: dict) -> None:
    for section in SECTIONS:
        keys = {k[len(section) + 1:]: v for k, v in flat.items() if k.startswith(section + ".")}
        study.set_user_attr(section, flat[section] if section in flat else keys)


def record(study, cfg) -> None:
    """Store the definition and, for the record only, where the data came from and the versions."""
    store(study, definition(cfg))
    versions = {p: installed(p) for p in PACKAGES}
    study.set_user_attr("recorded", {"sweeper": sweeper_version(), "python": platform.python_version(),
                                     **versions, "data_dir": cfg.data_dir,
                                     "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def sweeper_version() -> str:
    """The package version and, in a git checkout, the commit (with -dirty for uncommitted edits)."""
    version = installed("sweeper") or "unknown"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version} (git {commit})" if commit else version


def write_csv(attrs: dict, path: Path) -> None:
    """A study's user attributes (its definition, versions, accepted changes) as attribute,key,value rows."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["attribute", "key", "value"])
        for name, value in attrs.items():
            rows = (value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list)
                    else [("", value)])
            out.writerows([name, key, show(v)] for key, v in rows)
