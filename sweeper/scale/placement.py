"""Where a worker runs: which launcher started it (and whether that launcher leaves this machine), which
GPU a local worker takes, how many CPU threads it uses. Set before torch touches CUDA."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from sweeper.errors import ConfigError

log = logging.getLogger(__name__)
REMOTE_LAUNCHERS = ("SlurmLauncher",)  # hydra-submitit-launcher's SLURM executor: jobs run on other nodes
LOCAL_POOLS = ("JoblibLauncher",)  # several workers at once on this machine, each its own process
ALL_GPUS = "SWEEPER_ALL_GPUS"  # the GPUs this machine showed before a worker narrowed CUDA_VISIBLE_DEVICES
JOBS = "SWEEPER_JOBS"  # the jobs of this command line, set by the preflight in the launching process


def check_launcher(launcher: str, storage: str) -> None:
    """Workers on other nodes meet only in a storage every node reaches: not SQLite (a file, or memory)."""
    if launcher.endswith(REMOTE_LAUNCHERS) and storage.startswith("sqlite:"):
        raise ConfigError(f"study.storage={storage} with hydra/launcher {launcher.rpartition('.')[2]}: "
                          "workers on other nodes cannot share an SQLite file; allowed: a PostgreSQL URL, "
                          "e.g. study.storage=postgresql://user@host/db")


def local_gpus() -> list[str]:
    """The GPUs this process may use, without initializing CUDA (which would freeze the choice)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.split() if out.returncode == 0 else []


def place_worker(worker: int, launcher: str) -> None:
    """A worker of a local pool (joblib) takes one GPU: its index mod the machine's GPU count."""
    if not launcher.endswith(LOCAL_POOLS):
        return  # one process (the basic launcher), or a scheduler that hands out GPUs itself (SLURM)
    gpus = os.environ.setdefault(ALL_GPUS, ",".join(local_gpus())).split(",")
    gpus = [g for g in gpus if g]
    if len(gpus) < 2:
        return
    gpu = gpus[worker % len(gpus)]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != gpu:
        # joblib reuses its processes: one that already ran a worker keeps that worker's GPU.
        log.warning("worker %d: keeps GPU %s of an earlier job in this process (wanted %s)", worker,
                    os.environ.get("CUDA_VISIBLE_DEVICES"), gpu)
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    log.info("worker %d: GPU %s", worker, gpu)


def pool_size(launcher_cfg) -> int:
    """How many workers a local pool runs at once here: joblib's n_jobs (-1: one per core, -2: all cores
    but one, ...), at most the jobs of the command (counted by the preflight); 1 for other launchers."""
    if not launcher_cfg._target_.endswith(LOCAL_POOLS):
        return 1
    cores = os.cpu_count() or 1
    n_jobs = launcher_cfg.get("n_jobs") or 1
    pool = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, min(pool, int(os.environ.get(JOBS, pool))))


def set_threads(threads: int | None, launcher_cfg) -> int:
    """torch's CPU threads for this worker: `threads`, or the cores split among a local pool's workers
    (several workers each using every core slow each other down)."""
    import torch

    if threads is None:
        pool = pool_size(launcher_cfg)
        if pool == 1:
            return torch.get_num_threads()  # one worker here: torch's own default
        threads = max(1, (os.cpu_count() or 1) // pool)
    torch.set_num_threads(threads)
    return threads
