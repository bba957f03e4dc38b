"""The same CLI against a real PostgreSQL server: two workers, one study, heartbeats on.
.ci/run starts the server (.ci/postgres) and sets SWEEPER_TEST_POSTGRES to its URL."""
import os
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY, cli_popen, open_storage_together

URL = os.environ.get("SWEEPER_TEST_POSTGRES")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not URL, reason="no PostgreSQL server: `make test` starts one with .ci/postgres "
                                 "(Debian's package, as root); it could not here, see /tmp/sweeper-postgres.log")]


def test_two_workers_on_postgresql(tmp_path, glue_dir):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    command = [*TINY, "task.max_train_samples=200", "search.space.train.epochs=1", "study.n_trials=4",
               f"study.name={name}", f"study.storage={URL}", f"out_dir={tmp_path}", f"data_dir={glue_dir}"]
    workers = [cli_popen(*command) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-1500:] + outputs[1][-1500:]
    study = optuna.load_study(study_name=name, storage=URL)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    assert 4 <= sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) <= 5
    assert len({t.number for t in study.trials}) == len(study.trials)
    optuna.delete_study(study_name=name, storage=URL)


def test_workers_opening_a_new_database_together_all_get_it(tmp_path):
    """Optuna creates a new database's tables without a lock: unguarded, every round here lost a
    worker to a duplicate-key error on PostgreSQL's catalog."""
    import psycopg

    base, _, _ = URL.rpartition("/")
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(URL, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    try:
        results = open_storage_together(f"{base}/{name}", tmp_path / "signals")
        assert [code for code, _ in results] == [0, 0, 0, 0], results
    finally:
        with psycopg.connect(URL, autocommit=True) as db:
            db.execute(f"DROP DATABASE {name} WITH (FORCE)")
