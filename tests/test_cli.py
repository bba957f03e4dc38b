"""Bad input through the real CLI: one line naming the value and what is allowed, exit code 2,
before any training, and the stored trials untouched."""
import hashlib
import shutil
from pathlib import Path

import optuna
import pytest

from conftest import TINY, cli, load


def dump(storage: str) -> list:
    return [(s.study_name, [(t.number, t.state, t.params, t.value, t.user_attrs)
                            for t in load(storage, s.study_name).trials])
            for s in optuna.get_all_study_summaries(storage)]


@pytest.fixture
def stored(tmp_path, glue_dir):
    """A storage holding a study with one finished trial, and the args that point the CLI at it."""
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=storage, study_name="mrpc-tiny", direction="maximize")
    study.enqueue_trial({"lr": 5e-5, "epochs": 1, "batch_size": 8})
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-4, log=True) * 0 + 0.5, n_trials=1)
    args = [*TINY, f"study.storage={storage}", f"out_dir={tmp_path}", f"data_dir={glue_dir}"]
    return storage, args, dump(storage)


@pytest.mark.parametrize("bad,message", [
    (["-m", "task=mrpc,qqq"], "error: unknown task 'qqq'; allowed: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli "
                              "(or a task/qqq.yaml of your own in a directory on hydra.searchpath)"),
    (["model=bert-large"], "error: unknown model 'bert-large'; allowed: bert-base-uncased, minilm, tiny"),
    (["search.space.optimizer.lr=tag(log, interval(1e-3, 2e-4))"], "error: search.space.optimizer.lr=tag(log, "
                                                                  "interval(1e-3, 2e-4)): low 0.001 >= high 0.0002"),
    (["search.space.train.epochs=range(3,1)"], "error: search.space.train.epochs=range(3,1): low 3 > high 1"),
    (["search.space.train.epoch=range(1,3)"], "error: search.space.train.epoch: no such config key; keys under "
                                              "train: epochs, batch_size"),
    (["search.space.task.max_length=choice(64, 128)"], "error: search.space.task.max_length: the task and its data "
                                                       "define what the study measures"),
    (["search.lr.low=1e-3"], "error: search.lr.low: the search space is search.space.<config key> since sweeper 0.2; "
                             "allowed: e.g. 'search.space.optimizer.lr=...'"),
    (["study.n_trials=0"], "error: study.n_trials=0; need an integer >= 1"),
    (["task.max_train_sample=5"], "error: Could not override 'task.max_train_sample': Key 'max_train_sample' "
                                  "not in 'TaskConfig'; allowed keys: name, text_columns,"),
    (["study.n_trials=many"], "error: Error merging override study.n_trials=many: Value 'many' of type 'str' "
                              "could not be converted to Integer"),
])
def test_bad_input_fails_before_training_and_keeps_trials(stored, bad, message):
    storage, args, before = stored
    result = cli(*args, *bad)  # after the fixture's (model=tiny ...): as a user adds to a command
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "trial" not in result.stdout.lower()
    assert dump(storage) == before


def test_multirun_checks_every_job_first(stored, tmp_path, glue_dir):
    storage, args, before = stored
    glue = tmp_path / "glue"
    (glue / "mrpc").mkdir(parents=True)
    for split in ("train", "validation"):  # mrpc is there, sst2 is not: nothing may train
        shutil.copy(Path(glue_dir) / "mrpc" / f"{split}-00000-of-00001.parquet", glue / "mrpc")
    args = [a for a in args if not a.startswith("data_dir=")]  # the data comes from GLUE_DIR
    result = cli("-m", *args, "task=mrpc,sst2", env={"GLUE_DIR": str(glue)})
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: data_dir={glue} has no sst2/train-*.parquet; tasks there: mrpc; "
                                     "allowed: a copy that holds sst2, or data_dir=null (nyu-mll/glue from the Hub)")
    assert "Launching" not in result.stdout
    assert dump(storage) == before


@pytest.mark.parametrize("url,reason", [
    ("foo://nowhere", "Can't load plugin: sqlalchemy.dialects:foo"),
    # A server refusing is waited for (tests/test_outage.py); a host that does not exist is not.
    ("postgresql://sweeper@no-such-host.invalid/none", "failed to resolve host"),
    ("sqlite:////proc/no/such/dir/s.db", "cannot open /proc/no/such/dir/s.db"),
])
def test_a_storage_that_cannot_be_opened(stored, url, reason):
    _, args, _ = stored
    result = cli(*args, f"study.storage={url}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: study.storage={url}: ") and reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"not a database, just text\n" * 40, "sqlite-other"])
def test_a_file_that_is_not_a_study_database_is_left_byte_identical(tmp_path, glue_dir, content):
    path = tmp_path / "s.db"
    if content == "sqlite-other":  # a real SQLite database of some other program
        import sqlite3
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text)")
    else:
        path.write_bytes(content)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    result = cli(*TINY, f"study.storage=sqlite:///{path}", f"data_dir={glue_dir}", f"out_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: study.storage=sqlite:///{path}: {path} is ")
    assert "allowed: an Optuna study database or a new file" in result.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]  # no -wal, -journal or outputs
