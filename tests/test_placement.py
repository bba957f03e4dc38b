"""Where workers run: the launcher decides which storage works, a local pool's worker takes one GPU."""
import os

import pytest

from sweeper.errors import ConfigError
from sweeper.scale.placement import ALL_GPUS, check_launcher, place_worker

SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_sqlite_is_refused_only_for_launchers_that_leave_the_machine():
    with pytest.raises(ConfigError, match="cannot share an SQLite file; allowed: a PostgreSQL URL"):
        check_launcher(SLURM, "sqlite:///outputs/sweeper.db")
    with pytest.raises(ConfigError, match="cannot share"):
        check_launcher(SLURM, "sqlite:///:memory:")  # one study per worker: nothing shared either
    check_launcher(SLURM, "postgresql://u:p@db/sweeper")
    check_launcher(JOBLIB, "sqlite:///outputs/sweeper.db")
    check_launcher(BASIC, "sqlite:///outputs/sweeper.db")


@pytest.mark.parametrize("worker,gpu", [(0, "4"), (1, "5"), (2, "7"), (3, "4")])
def test_a_joblib_worker_takes_its_gpu_mod_the_gpu_count(monkeypatch, worker, gpu):
    monkeypatch.delenv(ALL_GPUS, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,7")  # the GPUs this machine lends the sweep
    place_worker(worker, JOBLIB)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == gpu
    place_worker(worker + 1, JOBLIB)  # the same process running a later job chooses among all three again
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,7".split(",")[(worker + 1) % 3]


def test_other_launchers_leave_the_gpus_alone(monkeypatch):
    monkeypatch.delenv(ALL_GPUS, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    place_worker(1, BASIC)
    place_worker(1, SLURM)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(monkeypatch, compose_cfg):
    from sweeper.scale.distributed import check_world

    cfg = compose_cfg("search.space.train.batch_size=choice(8,12,16)")
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(ConfigError, match=r"with WORLD_SIZE=8: \[12\] do not split .* allowed: multiples of 8"):
        check_world(cfg)
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_world(cfg)
    with pytest.raises(ConfigError, match="mode=retrain with WORLD_SIZE=2: retrain runs in one process"):
        check_world(compose_cfg("mode=retrain"))


@pytest.mark.parametrize("n_jobs,jobs,pool", [(4, None, 4), (-1, None, 8), (-2, None, 7), (16, "4", 4), (-1, "2", 2)])
def test_a_local_pool_runs_n_jobs_workers_at_most_the_commands_jobs(monkeypatch, n_jobs, jobs, pool):
    from omegaconf import OmegaConf

    from sweeper.scale.placement import JOBS, pool_size

    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # joblib's n_jobs=-1 means one worker per core
    if jobs is None:
        monkeypatch.delenv(JOBS, raising=False)
    else:
        monkeypatch.setenv(JOBS, jobs)
    assert pool_size(OmegaConf.create({"_target_": JOBLIB, "n_jobs": n_jobs})) == pool
    assert pool_size(OmegaConf.create({"_target_": SLURM})) == 1


def test_workers_and_threads_are_not_part_of_a_studys_definition(compose_cfg):
    from sweeper.study.definition import definition

    first = compose_cfg("+worker=0")
    second = compose_cfg("+worker=3", "train.threads=1", "hydra/launcher=joblib")
    assert definition(first) == definition(second)  # two workers of one study agree
