"""What the ranks of a data-parallel trial share (`torchrun --nproc_per_node N -m sweeper ...` or
`accelerate launch --num_processes N -m sweeper ...`): rank 0 alone talks to the study (asks, reports,
prunes, finishes); the others follow it (sweeper/study/follower.py), receiving each trial's hyperparameters
and every epoch's prune decision over a gloo group of their own. One process (WORLD_SIZE unset or 1): all of
it is a no-op."""
from __future__ import annotations

import logging
import os
from datetime import timedelta

from sweeper.errors import ConfigError

log = logging.getLogger(__name__)
# Followers wait here while rank 0 waits for trials other workers hold: as long as a trial may take.
WAIT = timedelta(days=7)
_control = None  # the gloo group for control messages (NCCL cannot carry Python objects from the CPU)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_leader() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_world(cfg) -> None:
    """batch_size is the global batch: every size in the search must split evenly over the ranks."""
    n = world_size()
    if n > 1 and cfg.mode.value == "retrain":
        raise ConfigError(f"mode=retrain with WORLD_SIZE={n}: retrain runs in one process; allowed: "
                          "python -m sweeper mode=retrain ... without torchrun or accelerate launch")
    from sweeper.search.space import possible

    sizes = possible(cfg, "train.batch_size")
    uneven = [b for b in sizes if b % n]
    if uneven:
        raise ConfigError(f"train.batch_size (searched or set): {sizes} with WORLD_SIZE={n}: {uneven} do not split "
                          f"into {n} equal per-process batches; allowed: multiples of {n}")


def init() -> None:
    """Join the process group before Accelerate does (it uses ours), with a timeout fit for waiting on
    other workers' trials, and open the control group."""
    global _control
    if world_size() == 1 or _control is not None:
        return
    import torch
    import torch.distributed as dist

    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        # Accelerate spreads over CPU processes only when told (what `accelerate launch --cpu` does);
        # under plain torchrun each rank would otherwise train the whole trial on its own.
        os.environ["ACCELERATE_USE_CPU"] = "true"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=WAIT)
    _control = dist.new_group(backend="gloo", timeout=WAIT) if backend != "gloo" else dist.group.WORLD


def share(value=None):
    """Rank 0's `value`, on every rank."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def agree(value: int) -> int:
    """The largest of every rank's `value` (each rank calls it at the same point): a CPU collective on the control
    group, so a GPU trial pays no device sync for it."""
    if world_size() == 1:
        return value
    import torch
    import torch.distributed as dist

    box = torch.tensor([value])
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_control)
    return int(box.item())


def announce() -> None:
    """Rank 0 has tokenized into the datasets cache and read the weights: the others may now load from it."""
    if world_size() > 1 and is_leader():
        share(True)


def decide(report, *args) -> None:
    """Rank 0 reports the epoch (which may raise TrialPruned, or fail) and tells the others how it went,
    so that they stop the trial with it instead of waiting in their next collective."""
    import optuna

    try:
        report(*args)
    except optuna.TrialPruned as e:
        share(("pruned", str(e)))
        raise
    except Exception as e:
        share(("failed", f"{type(e).__name__}: {e}"))
        raise
    share(None)


def lost_peer(error: BaseException) -> bool:
    """A collective failed because another rank died: the trial was interrupted, not wrong (retry it)."""
    if world_size() == 1:
        return False
    import torch.distributed as dist

    return isinstance(error, dist.DistError) or any(
        s in str(error) for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def finish() -> None:
    """Rank 0: no more trials; the followers exit."""
    if world_size() > 1 and is_leader() and _control is not None:
        try:
            share(None)
        except Exception as e:  # a rank died (the reason we are stopping): nobody left to tell
            log.info("could not tell the other ranks to stop (%s)", str(e).splitlines()[0] if str(e) else e)
