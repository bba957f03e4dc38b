"""The promises the README makes about setup and CI hold in the files that keep them."""
import re

from conftest import ROOT


def test_ci_installs_fresh_and_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make test    #" in readme
    assert re.search(r"^rm -rf \"\$VENV\"$", ci, re.M)  # a fresh virtual environment every run
    assert re.search(r"^(time )?make test\b", ci, re.M)
    test_target = makefile.split("\ntest: setup lint docs\n")[1].split("\n\n")[0]
    assert '-m "not slow"' in test_target and "-m slow" in test_target  # both halves
    assert 'pip install -q "$(TORCH)"' in makefile and "TORCH ?= torch==2.13.0" in makefile


def test_make_test_installs_what_its_tests_need_and_builds_the_docs():
    """A fresh clone runs every test rather than skipping: the browser as PostgreSQL (Debian's packages)."""
    makefile = (ROOT / "Makefile").read_text()
    test_target = makefile.split("\ntest: setup lint docs\n")[1].split("\n\n")[0]
    fast, slow = test_target.index('-m "not slow"'), test_target.index("-m slow")
    assert fast < test_target.index("bash .ci/chromium") < slow and "bash .ci/postgres" in test_target
    assert "apt-get install -y -qq chromium" in (ROOT / ".ci" / "chromium").read_text()


def test_outputs_is_ignored_but_kept():
    assert (ROOT / "outputs" / ".gitkeep").exists()
    ignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "outputs/*" in ignore and "!outputs/.gitkeep" in ignore
