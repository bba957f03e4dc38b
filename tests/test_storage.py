"""Storage opened by several processes at once, as workers starting together on a new study do."""
from conftest import open_storage_together


def test_workers_opening_a_new_sqlite_file_together_all_get_it(tmp_path):
    # Optuna creates a new database's tables without a lock; unguarded, most rounds lost a worker
    # to "table studies already exists" or "database is locked".
    for round_ in range(3):
        results = open_storage_together(f"sqlite:///{tmp_path}/s{round_}.db", tmp_path / f"round{round_}")
        assert [code for code, _ in results] == [0, 0, 0, 0], results


def test_a_half_created_optuna_schema_is_not_a_foreign_file(tmp_path):
    """Seen with 4 workers on a new file: one read the schema while another was creating it, and was
    refused with 'an SQLite database without Optuna's tables (has studies, study_directions, ...)'."""
    import sqlite3

    import pytest

    from sweeper.errors import ConfigError
    from sweeper.study.storage import check_sqlite_file

    half, foreign = tmp_path / "half.db", tmp_path / "foreign.db"
    with sqlite3.connect(half) as db:
        db.execute("CREATE TABLE studies (study_id INTEGER)")
        db.execute("CREATE TABLE study_directions (id INTEGER)")
    check_sqlite_file(f"sqlite:///{half}", half)
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE studies (study_id INTEGER)")
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(ConfigError, match="without Optuna's tables"):
        check_sqlite_file(f"sqlite:///{foreign}", foreign)
