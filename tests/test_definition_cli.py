"""Resuming through the real CLI: the same command (or one changing only n_trials or display) resumes; a
different subsample, search range, optimizer or model path ends with one error line and the storage as it was."""
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, cli, load
from sweeper.study.definition import stored

pytestmark = pytest.mark.slow
FAST = [*TINY, "search.space.train.epochs=1", "study.n_trials=1"]


def dump(storage: str) -> list:
    """Everything a run could write: every study's attributes and trials."""
    return [(s.study_name, load(storage, s.study_name).user_attrs,
             [(t.number, t.state, t.params, t.value, t.user_attrs) for t in load(storage, s.study_name).trials])
            for s in optuna.get_all_study_summaries(storage)]


@pytest.fixture(scope="module")
def created(tmp_path_factory, glue_dir):
    """A study made by the CLI with one finished trial, and the arguments that made it."""
    tmp = tmp_path_factory.mktemp("study")
    args = [*FAST, f"study.storage=sqlite:///{tmp}/s.db", f"out_dir={tmp}", f"data_dir={glue_dir}"]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, args


@pytest.fixture
def copied(created, tmp_path):
    """A copy of the created study's database, for a test that writes to it."""
    tmp, args = created
    with sqlite3.connect(tmp / "s.db") as src, sqlite3.connect(tmp_path / "s.db") as dst:
        src.backup(dst)
    storage = f"sqlite:///{tmp_path}/s.db"
    return storage, [*[a for a in args if not a.startswith(("study.storage=", "out_dir="))],
                     f"study.storage={storage}", f"out_dir={tmp_path}"]


@pytest.mark.parametrize("change,named", [
    (["task.max_train_samples=48"], "task.max_train_samples: stored 64, now 48"),
    (["search.space.optimizer.lr=tag(log, interval(1e-5, 5e-5))"],
     "search.space.optimizer.lr: stored FloatDistribution(high=0.0002, log=True, low=1e-05, step=None), now "
     "FloatDistribution(high=5e-05, log=True, low=1e-05, step=None)"),
    (["optimizer=adamw-warmup"], "optimizer.name: stored adamw, now adamw-warmup; "
                                 "optimizer.warmup_ratio: stored 0.0, now 0.1"),
    (["model.path=/tmp/another-model"], "model.path: stored /"),
    (["study.n_trials=2", "search.space.train.batch_size=8"],
     "search.space.train.batch_size: stored CategoricalDistribution(choices=(8, 16, 32)), now 8"),
])
def test_a_different_definition_is_refused_and_nothing_is_written(created, change, named):
    tmp, args = created
    storage = f"sqlite:///{tmp}/s.db"
    before = dump(storage)
    result = cli(*args, *change)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("error: study mrpc-tiny was created with another definition: ")
    assert named in result.stderr and "study.name=mrpc-tiny-2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Trial" not in result.stdout
    assert dump(storage) == before


def test_a_multirun_is_refused_before_its_first_job_trains(created):
    tmp, args = created
    storage = f"sqlite:///{tmp}/s.db"
    before = dump(storage)
    result = cli("-m", *args, "task=sst2,mrpc", "seed=7")  # sst2 is new, mrpc's seed differs
    assert result.returncode == 2
    assert result.stderr.startswith("error: study mrpc-tiny was created with another definition: seed: stored 42, "
                                    "now 7; allowed: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Launching" not in result.stdout
    assert dump(storage) == before  # no sst2-tiny study either


def test_the_same_command_with_more_trials_or_a_progress_bar_resumes(copied):
    storage, args = copied
    attrs = load(storage, "mrpc-tiny").user_attrs
    result = cli(*args, "study.n_trials=2", "train.progress=true", "train.eval_batch_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    study = load(storage, "mrpc-tiny")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert stored(study.user_attrs) == stored(attrs)  # the definition; `command` says how it last ran


def test_an_accepted_change_resumes_and_is_recorded(copied):
    storage, args = copied
    result = cli(*args, "study.n_trials=2", "pruner=none", "study.accept=[pruner]")
    assert result.returncode == 0, result.stderr[-3000:]
    study = load(storage, "mrpc-tiny")
    assert len(study.trials) == 2 and study.user_attrs["pruner"] == {"_target_": "optuna.pruners.NopPruner"}
    assert "from trial 1: pruner._target_: sweeper.search.pruning.PlateauHalvingPruner -> optuna.pruners.NopPruner" in \
        study.user_attrs["changes"]
