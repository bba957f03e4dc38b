"""The command line: Hydra composes a config per job; every job is checked before any job trains."""
from __future__ import annotations

import os
import sys
import warnings

import hydra
from omegaconf import DictConfig, OmegaConf

from sweeper import redact
from sweeper.config import CONF_DIR, register
from sweeper.data import source
from sweeper.errors import ConfigError
from sweeper.search.space import LEGACY
from sweeper.usage import config_groups
from sweeper.validate import validate

LEGACY_KEYS = {v: k for k, v in LEGACY.items()}  # sweeper 0.1's search.lr, ... -> the config key the space sets
register()
OmegaConf.register_new_resolver("sweeper_groups", config_groups, replace=True)  # --help (conf/hydra/help)
# conf/config.yaml adds ./outputs to Hydra's search path (for `+<study>=best`); before a first sweep, or
# from another directory, it does not exist yet, which is normal and not worth a warning on every run.
warnings.filterwarnings("ignore", message="provider=hydra.searchpath in main, path=outputs is not available")


def check(cfg, launcher: str = "") -> None:
    """Everything knowable before training: config values, data files, the storage (and whether the
    launcher, Hydra's `_target_`, can reach it), the stored study."""
    from sweeper.scale.distributed import check_world
    from sweeper.scale.placement import check_launcher
    from sweeper.study.definition import verify
    from sweeper.study.storage import open_storage

    if cfg.mode.value == "status":
        return  # reads the storage only, and says itself what is wrong with it (sweeper/results/status.py)
    validate(cfg)
    if cfg.study.artifacts is not None:
        from sweeper.study.artifacts import check_store

        check_store(cfg.study.artifacts)
    if cfg.train.report_to:
        from sweeper.train.tracking import check_trackers

        check_trackers(list(cfg.train.report_to))
    check_world(cfg)
    check_launcher(launcher, cfg.study.storage)
    if cfg.train.precision.value == "fp16":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("train.precision=fp16 needs a CUDA GPU; allowed here: auto, bf16, no")
    source.check(cfg.task, cfg.data_dir)  # files, columns, labels of a local source; the Hub's: when loaded
    if cfg.mode.value == "retrain":
        from sweeper.results.retrain import find_study

        find_study(cfg)  # before open_storage, which would create a missing SQLite file
    verify(open_storage(cfg.study), cfg)


def preflight(argv: list[str]) -> None:
    """Compose and check every job of the command line, so bad input fails before any training."""
    for cfg in compose_jobs(argv):
        check(cfg, cfg.hydra.launcher._target_)


def compose_jobs(argv: list[str]) -> list[DictConfig]:
    """Each job's config of a command line (a multirun's sweeps expanded), its groups' options checked first;
    none for Hydra's own flags (--help, --cfg, --info: Hydra's business) or a sweep without -m (Hydra explains)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import MissingConfigException, OverrideParseException

    argv = quote_space(argv)  # as __main__ hands them to Hydra
    flags = [a for a in argv if a.startswith("-")]
    if set(flags) - {"-m", "--multirun"}:
        return []  # --help, --cfg, --info ...: Hydra's own business
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    except OverrideParseException as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    for o in overrides:
        if (old := o.key_or_group.lstrip("+~")).split(".")[:2] in (["search", k] for k in LEGACY.values()):
            raise ConfigError(f"{old}: the search space is search.space.<config key> since sweeper 0.2; allowed: "
                              f"e.g. 'search.space.{LEGACY_KEYS[old.split('.')[1]]}=...' in the grammar of "
                              "conf/search/default.yaml")
    if not flags and any(o.is_sweep_override() for o in overrides):
        return []
    jobs = [[o.input_line for o in overrides if not hydra_key(o.key_or_group)]]
    if flags:
        jobs = [[j for j in job if not hydra_key(j)] for job in
                BasicSweeper.split_arguments(overrides, None)[0]]
    from sweeper.scale.placement import JOBS

    os.environ[JOBS] = str(len(jobs))  # for train.threads=null under a local pool (sweeper/scale/placement.py)
    composed = []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for job in jobs:
            try:
                composed.append(compose("config", overrides=job, return_hydra_config=True))
            except MissingConfigException as e:  # an option in no config directory (conf/, hydra.searchpath)
                group, _, name = str(e.missing_cfg_file).rpartition("/")
                allowed = [o for o in e.options or [] if not o.endswith("_schema")]
                raise ConfigError(f"unknown {group or 'config'} '{name}'; allowed: {', '.join(allowed)} (or a "
                                  f"{group}/{name}.yaml of your own in a directory on hydra.searchpath)") from None
            except Exception as e:
                raise ConfigError(explain(e, job)) from None
    return composed


def quote_space(argv: list[str]) -> list[str]:
    """`search.space.<key>=interval(...)` and the like, quoted: a distribution for the space to read
    (sweeper/search/space.py), not a sweep for Hydra to run as several jobs; and added where the space has no such
    entry yet (Hydra's `++`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, out = OverridesParser.create(), []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.startswith(("search.space.", "search.reference.")):
            key, arg = f"++{key}", f"++{arg}"  # the space is the user's: an entry is added or replaced alike
        if eq and key.lstrip("+~").startswith("search.space.") and not value.startswith(("'", '"')):
            try:
                sweep = parser.parse_override(arg).is_sweep_override()
            except Exception:
                sweep = False  # Hydra says what is wrong with it
            if sweep:
                arg = f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        out.append(arg)
    return out


def unquote_space(argv: list[str]) -> list[str]:
    """quote_space undone, for a command line shown to a person (the resume line): as typed."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.startswith(("++search.space.", "++search.reference.")):
            key = key[2:]
            if len(value) > 1 and value[0] == value[-1] == "'":
                value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
            arg = f"{key}={value}"
        out.append(arg)
    return out


def hydra_key(override: str) -> bool:
    """Hydra's own settings, left out of the preflight's compose; except the search path, which decides
    what `+<study>=best` means, and the launcher, which decides what storage works."""
    return override.startswith("hydra") and not override.lstrip("+~").startswith(
        ("hydra.searchpath", "hydra/launcher", "hydra.launcher"))


def explain(error: Exception, job: list[str]) -> str:
    """Hydra's composition error and OmegaConf's reason for it, on one line, with the keys allowed
    where the reason is an unknown key."""
    from hydra import compose
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = error.__cause__
    message = str(error).splitlines()[0].rstrip(".")
    if cause is not None:
        message += ": " + str(cause).splitlines()[0]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        parent = cause.full_key.rpartition(".")[0]
        try:
            base = compose("config", overrides=[j for j in job if j.split("=")[0].lstrip("+~") != cause.full_key])
        except Exception:  # another override is wrong too: Hydra's message for this one is all there is
            return message
        node = OmegaConf.select(base, parent) if parent else base
        if node is not None and OmegaConf.is_dict(node):
            message += f"; allowed keys: {', '.join(node.keys())}"
    hint = [line for line in str(error).splitlines() if line.startswith("To append")]  # e.g. +worker=1
    return message + (f"; {hint[0][0].lower()}{hint[0][1:]}" if hint else "")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def sweep(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from sweeper.job import run_study
    from sweeper.scale import distributed, preemption
    from sweeper.scale.placement import place_worker, set_threads
    from sweeper.study.run import SweepStopped
    from sweeper.train.disk import DiskFull

    preemption.install()  # again: a submitit job runs this function without __main__, under submitit's handlers
    redact.mask_logs()  # Hydra's log file and console, as configured for this job
    try:
        launcher = HydraConfig.get().launcher
        place_worker(cfg.get("worker", 0), launcher._target_)  # before anything initializes CUDA
        check(cfg, launcher._target_)
        if cfg.mode.value == "status":
            from sweeper.results.status import show_status

            return show_status(cfg)
        set_threads(cfg.train.threads, launcher)
        if cfg.mode.value == "retrain":
            from sweeper.results.retrain import run_retrain

            return run_retrain(cfg)
        distributed.init()
        if not distributed.is_leader():
            from sweeper.study.follower import follow

            return follow(cfg)  # trains rank 0's trials; only rank 0 talks to the study
        try:
            return run_study(cfg)
        finally:
            distributed.finish()
    except (ConfigError, SweepStopped) as e:
        print(f"error: {redact.mask(str(e))}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 3)
    except DiskFull as e:  # the trial it stopped is failed and queued again: the same command goes on
        from sweeper.study.faults import no_space_line

        print(f"error: {no_space_line(e, cfg.out_dir)}", file=sys.stderr)
        sys.exit(4)
    except BaseException as e:
        from sweeper.study.patience import unreachable

        if isinstance(e, KeyboardInterrupt) and preemption.requested():
            preemption.hand_over()  # the trial is settled: now the scheduler's side (submitit requeues)
        if (outage := unreachable(e)) is None:
            raise
        # The whole command line: the studies it finished are skipped, the others resume.
        print(f"error: {outage}; resume with: python -m sweeper {redact.shown_command(unquote_space(sys.argv[1:]))}",
              file=sys.stderr)
        sys.exit(5)
