"""The docs cannot drift from the code: every config key documented, every command line they show composes, a broken
link fails their build, the README stays short and its links lead somewhere."""
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from sweeper import cli, config, validate

sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import config_reference  # noqa: E402  (docs/_ext/config_reference.py)

PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
COMMAND = re.compile(r"^(?:\.venv/bin/)?python -m sweeper(?=\s|$)")


def test_every_config_key_has_a_comment():
    assert config_reference.undocumented() == [], "give these keys a comment in conf/ or sweeper/config.py"


def test_a_key_added_without_a_comment_is_caught(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    with (conf / "pruner" / "asha.yaml").open("a") as f:
        f.write("new_knob: 1\n")
    with (conf / "sampler" / "random.yaml").open("a") as f:
        f.write("other_knob: 2  # says what it is for\n")
    monkeypatch.setattr(config, "CONF_DIR", conf)
    assert config_reference.undocumented() == ["pruner.new_knob"]


def test_the_reference_shows_each_key_with_its_type_default_and_comment():
    cfg = config_reference.compose()
    rows = {r.key: r for r in config_reference.main_rows(cfg)}
    leaves = {f"{section}.{key}" for section in ("study", "train", "verdict", "retrain") for key in cfg[section]}
    assert leaves | {"data_dir", "out_dir", "seed", "mode"} == set(rows)
    budget = rows["study.budget_epochs"]
    assert (budget.type, budget.default) == ("float | None", "`9.0`")
    assert budget.comment.startswith("stop starting trials once the study's trials trained this many epochs")
    assert rows["study.progress"].type == "auto | bar | log | off"  # an Enum: its words
    assert rows["mode"].comment.endswith("status: list the storage's studies and running trials, change nothing")
    reference = config_reference.reference()
    groups = config_reference.groups(cfg)
    assert list(groups) == ["task", "model", "optimizer", "search", "pruner", "sampler", "hydra/launcher"]
    assert groups["task"] is config.TaskConfig and groups["pruner"] is None  # shared keys / keys of its own
    for group in groups:
        for path in config_reference.options(group):
            assert f"`{group}={path.stem}`" in reference, path  # every option file is listed


def commands(text: str) -> list[str]:
    """`python -m sweeper ...` lines of code blocks, and inline code spans that hold one (across a line break)."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced and COMMAND.match(line.strip()):
            found.append(re.split(r"\s+#", line.strip())[0])
    prose = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)  # code blocks are read above
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose) if COMMAND.match(span)]
    return found


def shown_commands() -> list[tuple[str, str]]:
    return [(page.name, c) for page in PAGES for c in commands(page.read_text())]


def test_the_docs_show_commands_and_none_is_a_placeholder():
    shown = shown_commands()
    assert len(shown) > 30
    assert {page for page, _ in shown} >= {"README.md", "getting-started.md", "own-data.md", "results.md",
                                            "scaling.md", "search-budget.md"}
    placeholders = [c for _, c in shown if "..." in c or "<" in c]
    # Only where the value is the reader's own (a database server, a config directory: tests/test_space.py runs that
    # one), or the prose names command lines in general: every other command is complete, and composes below.
    assert all("postgresql://..." in c or "file:///.../" in c or c == "python -m sweeper ..." for c in placeholders), \
        placeholders


@pytest.fixture
def reviews_task(tmp_path, monkeypatch):
    """conf/ with the example task file of docs/own-data.md in it, and an outputs/mrpc-minilm/best.yaml as a
    sweep writes it, in the working directory (conf/config.yaml's search path), for the commands that use them."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from sweeper.results.report import write_best_config

    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    page = (ROOT / "docs" / "own-data.md").read_text()
    block = re.search(r"```yaml\n(# python -m sweeper task=reviews.*?)```", page, re.S)[1]
    (conf / "task" / "reviews.yaml").write_text(block)
    for module in (config, cli):
        monkeypatch.setattr(module, "CONF_DIR", conf)
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create({"task": {"name": "mrpc", "objective": "f1", "max_train_samples": None,
                                     "max_eval_samples": None}, "model": {"name": "minilm"},
                            "optimizer": {"name": "adamw"}, "seed": 42, "study": {"name": "mrpc-minilm"}})
    values = {"optimizer.lr": 5e-5, "train.epochs": 3, "train.batch_size": 8}
    trial = SimpleNamespace(number=1, value=0.868, params=values, user_attrs={"config": values})
    (tmp_path / "outputs" / "mrpc-minilm").mkdir(parents=True)
    write_best_config(cfg, trial, tmp_path / "outputs" / "mrpc-minilm")


def test_every_command_line_the_docs_show_composes(reviews_task):
    """Composed as the CLI composes it before anything trains (its multiruns expanded), and checked by the same
    config checks; nothing trains, no storage or data is opened. --cfg job and --help lines: their overrides."""
    checked = 0
    for page, command in shown_commands():
        if "..." in command:
            continue
        argv = shlex.split(COMMAND.sub("", command))
        if "--cfg" in argv:
            i = argv.index("--cfg")
            del argv[i:i + 2]
        argv = [a for a in argv if a not in ("--help", "--hydra-help", "--info")]
        try:
            jobs = cli.compose_jobs(argv)
            for cfg in jobs:
                validate.validate(cfg)
        except Exception as e:
            pytest.fail(f"{page}: {command}\n  {type(e).__name__}: {e}")
        assert jobs, f"{page}: {command} composes no job"
        checked += 1
    assert checked > 30


def test_a_broken_link_fails_the_docs_build(tmp_path):
    """The build `make docs` runs, on a copy of the docs with a link to a missing page and a missing heading."""
    makefile = (ROOT / "Makefile").read_text()
    options = re.search(r"^SPHINXOPTS := (.*)$", makefile, re.M)[1].split()
    assert "-W" in options and "$(PY) -m sphinx $(SPHINXOPTS) -b html docs docs/_build/html" in makefile
    assert re.search(r"^test: setup lint docs$", makefile, re.M)  # make test builds them
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("_build", "_generated"))
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path)
    build = [sys.executable, "-m", "sphinx", *options, "-c", str(ROOT / "docs"), "-b", "html", str(docs),
             str(tmp_path / "html")]
    ok = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-3000:]
    with (docs / "index.md").open("a") as f:
        f.write("\nSee [the budget](search-budget.md#no-such-heading) and [the FAQ](faq.md).\n")
    broken = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0
    assert "local id not found in doc 'search-budget': 'no-such-heading'" in broken.stderr
    assert "cross-reference target not found: 'faq.md'" in broken.stderr


def test_the_readme_is_short_and_its_links_lead_to_pages_and_files():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 8
    assert [link for link in local if not (ROOT / link).exists()] == []
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert {Path(link).name for link in local if link.startswith("docs/")} >= pages - {"changelog.md"}
