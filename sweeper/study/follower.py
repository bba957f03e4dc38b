"""A rank other than 0 of a data-parallel trial: it trains every trial rank 0 starts, with rank 0's
hyperparameters, and obeys rank 0's prune decisions (sweeper/scale/distributed.py carries the messages)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import optuna

from sweeper.scale import distributed
from sweeper.search import space
from sweeper.study.objective import Objective
from sweeper.train import checkpoints

log = logging.getLogger(__name__)


def follow_decision(epoch: int, metrics: dict) -> None:
    """A follower's on_epoch_end: rank 0's decision on the epoch."""
    decision = distributed.share()
    if decision is not None:
        kind, reason = decision
        if kind == "pruned":
            raise optuna.TrialPruned(reason)
        raise RuntimeError(f"rank 0 failed the trial: {reason}")


def follow(cfg) -> None:
    """A rank other than 0: train every trial rank 0 starts, until it says the study is done."""
    if distributed.share() is None:
        return  # rank 0 found the study complete: nothing to train
    objective = Objective(cfg, Path(cfg.out_dir) / cfg.study.name)
    while (job := distributed.share()) is not None:
        values, resume, number = job
        try:
            objective.fit(space.apply(cfg, values), cfg.seed, follow_decision,
                          checkpoint=checkpoints.trial_dir(objective.checkpoint_root, number), resume=resume,
                          on_evaluate=follow_decision)  # rank 0 decides within epochs too
        except optuna.TrialPruned:
            pass
        except Exception as e:
            if distributed.lost_peer(e):
                raise
            # Rank 0 met the same failure (a NaN loss reaches every rank through the gradients) and
            # fails the trial; wait for its next one, as it does.
            log.warning("trial %d failed on rank %s: %s", number, os.environ.get("RANK"), e)
        finally:
            objective.release()
