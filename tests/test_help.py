"""`python -m sweeper --help` through the real CLI: what sweeper does, its main commands, and the config
groups with the options a command line can select (none of the schemas registered beside them)."""
import pytest

from conftest import cli
from sweeper.config import choices

pytestmark = pytest.mark.slow


def test_help_says_what_sweeper_does_and_lists_only_selectable_options():
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("sweeper: hyperparameter sweeps for fine-tuning transformer classifiers.")
    for command in ("python -m sweeper -m task=mrpc,sst2", "python -m sweeper +mrpc-minilm=best",
                    "mode=retrain", "optuna-dashboard sqlite:///outputs/sweeper.db --artifact-dir outputs/artifacts"):
        assert command in text, command
    assert "_schema" not in text
    groups = dict(line.split(": ", 1) for line in text.split("== Config groups (group=option) ==\n")[1]
                  .split("\n\n")[0].splitlines())
    assert list(groups) == ["task", "model", "optimizer", "search", "pruner", "hydra/launcher"]
    assert groups["task"].startswith("cola, mnli, mrpc, ")
    for group in ("task", "model", "optimizer", "search", "pruner"):
        assert groups[group] == ", ".join(choices(group)), group  # the files in conf/<group>
    assert {"basic", "joblib", "slurm", "submitit_slurm"} <= set(groups["hydra/launcher"].split(", "))
