"""No secret in clear anywhere sweeper writes or prints: real sweeps on a private PostgreSQL cluster whose superuser
has a password (scram-sha-256), then every byte of every written file, the output and every stored attribute
searched for it. The ways to keep it off the command line (PGPASSWORD, ~/.pgpass, ${oc.env:VAR}) work."""
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_outage import private_server

from conftest import TINY, cli
from sweeper import redact

PASSWORD = f"Pw-{uuid.uuid4().hex[:12]}"
QUICK = [*TINY, "search.space.train.epochs=1", "study.n_trials=2", "train.progress=false"]


@pytest.fixture(scope="module")
def server():
    yield from private_server(PASSWORD)


def written(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def stored(url: str) -> str:
    """Every study's and trial's attributes in the storage, as text."""
    storage = optuna.storages.RDBStorage(url)
    text = []
    for study in storage.get_all_studies():
        text += [repr(study.user_attrs), repr(study.system_attrs)]
        for t in storage.get_all_trials(study._study_id):
            text += [repr(t.user_attrs), repr(t.system_attrs), repr(t.params)]
    storage.engine.dispose()
    return "\n".join(text)


def assert_nowhere(out: str, files: dict[Path, bytes], attrs: str) -> None:
    assert PASSWORD not in out, [line for line in out.splitlines() if PASSWORD in line]
    leaks = [p for p, data in files.items() if PASSWORD.encode() in data]
    assert not leaks, leaks
    assert PASSWORD not in attrs


@pytest.mark.slow
def test_a_password_on_the_command_line_is_written_nowhere(server, tmp_path, glue_dir):
    """The README's own form, through a launcher that pickles its jobs (submitit_local), with a tracker and the
    verdict, then mode=status and a wrong password: the files under out_dir and Hydra's (multirun.yaml,
    .hydra/*.yaml, the submitit pickles, logs), report.html, the CSVs, best.yaml, the verdict's, the artifacts, the
    TensorBoard events."""
    url = server.url  # postgresql://postgres:<PASSWORD>@127.0.0.1:port/sweeper
    result = cli("-m", *QUICK, "hydra/launcher=submitit_local", "train.report_to=[tensorboard]",
                 "task.selection_size=16", "verdict.top=1", "verdict.seeds=2", "verdict.max_seeds=2",
                 "search.reference.train.epochs=1",
                 f"study.storage={url}", f"out_dir={tmp_path}", f"data_dir={glue_dir}", timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    trials = optuna.load_study(study_name="mrpc-tiny", storage=url).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    status = cli("mode=status", f"study.storage={url}", f"out_dir={tmp_path}")
    assert status.returncode == 0 and status.stdout.startswith(
        f"postgresql://postgres:***@127.0.0.1:{server.port}/sweeper: 1 study"), status.stdout
    wrong = url.replace(PASSWORD, PASSWORD[::-1])
    refused = cli(*QUICK, f"study.storage={wrong}", f"out_dir={tmp_path}", f"data_dir={glue_dir}")
    assert refused.returncode == 2 and refused.stderr.startswith("error: study.storage=postgresql://postgres:***@")
    assert "password authentication failed" in refused.stderr
    files = written(tmp_path)
    assert any(p.name == "multirun.yaml" for p in files) and any(p.suffix == ".pkl" for p in files)
    assert any(p.name == "report.html" for p in files) and any("tfevents" in p.name for p in files)
    assert any(p.name == "overrides.yaml" for p in files) and any(p.name == "verdict.csv" for p in files), sorted(files)
    command = optuna.load_study(study_name="mrpc-tiny", storage=url).user_attrs["command"]
    assert "postgres:***@" in command
    assert_nowhere(out + status.stdout + status.stderr + refused.stderr + refused.stdout, files, stored(url))
    assert PASSWORD[::-1] not in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("way", ["PGPASSWORD", "pgpass", "oc.env"])
def test_the_ways_to_keep_a_password_off_the_command_line_work(server, tmp_path, glue_dir, way):
    bare = server.url.replace(f":{PASSWORD}@", "@")  # postgresql://postgres@127.0.0.1:port/sweeper
    env, url = {}, bare
    if way == "PGPASSWORD":
        env["PGPASSWORD"] = PASSWORD
    elif way == "pgpass":  # host:port:database:user:password, mode 0600 or libpq ignores it
        home = tmp_path / "home"
        home.mkdir()
        (home / ".pgpass").write_text(f"127.0.0.1:{server.port}:sweeper:postgres:{PASSWORD}\n")
        (home / ".pgpass").chmod(0o600)
        env["HOME"] = str(home)
    else:
        env["DB_PASSWORD"] = PASSWORD
        url = bare.replace("postgres@", "postgres:${oc.env:DB_PASSWORD}@")
    name = f"off-{way}".replace(".", "-")
    out_dir = tmp_path / "out"
    result = cli(*QUICK, "study.n_trials=1", f"study.name={name}", f"study.storage={url}", f"out_dir={out_dir}",
                 f"data_dir={glue_dir}", env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert [t.state for t in optuna.load_study(study_name=name, storage=server.url).trials] == [TrialState.COMPLETE]
    files = written(out_dir)
    overrides = next(p for p in files if p.name == "overrides.yaml").read_text()
    if way == "oc.env":  # Hydra saves the interpolation, never its value
        assert "${oc.env:DB_PASSWORD}" in overrides
        assert "${oc.env:DB_PASSWORD}" in next(p for p in files if p.name == "config.yaml").read_text()
    else:
        assert bare in overrides
    assert_nowhere(out, files, stored(server.url))


def test_passwords_move_off_the_command_line_and_every_url_is_masked():
    environ = {}
    argv = ["-m", "study.storage=postgresql://u:p%40ss@h/db,postgresql://v:other@h2/db", "task=mrpc",
            "study.name=postgresql://x:y@z", "study.storage=mysql://a:${oc.env:MINE}@h/db"]
    moved = redact.move_passwords(argv, environ)
    assert moved == ["-m", "study.storage=postgresql://u:${oc.env:SWEEPER_STORAGE_PASSWORD}@h/db,"
                           "postgresql://v:${oc.env:SWEEPER_STORAGE_PASSWORD_2}@h2/db", "task=mrpc",
                     "study.name=postgresql://x:y@z",  # only study.storage holds a URL to connect with
                     "study.storage=mysql://a:${oc.env:MINE}@h/db"]  # already an interpolation
    assert environ == {"SWEEPER_STORAGE_PASSWORD": "p%40ss", "SWEEPER_STORAGE_PASSWORD_2": "other"}
    assert redact.shown_command(moved[1:3], environ) == (  # a resume line: as typed, then masked
        "study.storage=postgresql://u:***@h/db,postgresql://v:***@h2/db task=mrpc")
    assert redact.mask("python -m sweeper study.storage=postgresql://u:p%40ss@h/db x=sqlite:///a.db") == (
        "python -m sweeper study.storage=postgresql://u:***@h/db x=sqlite:///a.db")
    assert redact.mask("postgresql://u@h/db and postgresql://h/db") == "postgresql://u@h/db and postgresql://h/db"
