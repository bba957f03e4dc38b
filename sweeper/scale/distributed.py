"""What the ranks of a data-parallel trial share (`torchrun --nproc_per_node N -m sweeper ...` or
`accelerate launch --num_processes N -m sweeper ...`): rank 0 alone talks to the study (asks, reports,
prunes, finishes); the others follow it, receiving each trial's hyperparameters and every epoch's
prune decision over a gloo group of their own. One process (WORLD_SIZE unset or 1): all of it is a no-op."""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from sweeper.config import ConfigError

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
    sizes = list(cfg.search.batch_size)
    uneven = [b for b in sizes if b % n]
    if uneven:
        raise ConfigError(f"search.batch_size={sizes} with WORLD_SIZE={n}: {uneven} do not split into {n} "
                          f"equal per-process batches; allowed: multiples of {n}")


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


def follow_decision(epoch: int, metrics: dict) -> None:
    """A follower's on_epoch_end: rank 0's decision on the epoch."""
    import optuna

    decision = share()
    if decision is not None:
        kind, reason = decision
        if kind == "pruned":
            raise optuna.TrialPruned(reason)
        raise RuntimeError(f"rank 0 failed the trial: {reason}")


def follow(cfg) -> None:
    """A rank other than 0: train every trial rank 0 starts, until it says the study is done."""
    import optuna

    from sweeper.study.objective import Objective
    from sweeper.train import checkpoints

    if share() is None:
        return  # rank 0 found the study complete: nothing to train
    objective = Objective(cfg, Path(cfg.out_dir) / cfg.study.name)
    while (job := share()) is not None:
        hp, resume, number = job
        try:
            objective.fit(hp, cfg.seed, follow_decision, checkpoint=checkpoints.trial_dir(objective.checkpoint_root,
                                                                                         number), resume=resume,
                          on_evaluate=follow_decision)  # rank 0 decides within epochs too
        except optuna.TrialPruned:
            pass
        except Exception as e:
            if lost_peer(e):
                raise
            # Rank 0 met the same failure (a NaN loss reaches every rank through the gradients) and
            # fails the trial; wait for its next one, as it does.
            log.warning("trial %d failed on rank %s: %s", number, os.environ.get("RANK"), e)
        finally:
            objective.release()


def finish() -> None:
    """Rank 0: no more trials; the followers exit."""
    if world_size() > 1 and is_leader() and _control is not None:
        try:
            share(None)
        except Exception as e:  # a rank died (the reason we are stopping): nobody left to tell
            log.info("could not tell the other ranks to stop (%s)", str(e).splitlines()[0] if str(e) else e)
