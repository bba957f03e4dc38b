"""Storage opened by several processes at once, as workers starting together on a new study do."""
from conftest import open_storage_together


def test_workers_opening_a_new_sqlite_file_together_all_get_it(tmp_path):
    # Optuna creates a new database's tables without a lock; unguarded, most rounds lost a worker
    # to "table studies already exists" or "database is locked".
    for round_ in range(3):
        results = open_storage_together(f"sqlite:///{tmp_path}/s{round_}.db", tmp_path / f"round{round_}")
        assert [code for code, _ in results] == [0, 0, 0, 0], results
