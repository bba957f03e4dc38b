"""The search benchmark (bench/compute.py) as its command runs it, on a tiny model: every arm's pick is recorded and
re-validated once per seed, and a rerun in a new checkout (no studies left) trains only the seeds that are missing,
from the recorded picks, without searching again."""
import csv
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
TINY = ["model=tiny", "task.max_train_samples=64", "task.max_eval_samples=32"]


def bench(tmp_path, glue_dir, *seeds: int, arms=("course", "sweeper", "trainer")) -> str:
    out = subprocess.run([sys.executable, "bench/compute.py", "--tasks", "mrpc", "--seeds", *map(str, seeds),
                          "--arms", *arms,
                          "--budget-epochs", "1", "--out", str(tmp_path / "c.csv"), "--runs", str(tmp_path / "runs"),
                          "--predictions", str(tmp_path / "p"),
                          "--override", *TINY],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "GLUE_DIR": glue_dir, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_the_benchmark_records_picks_and_a_rerun_trains_only_missing_seeds(tmp_path, glue_dir):
    bench(tmp_path, glue_dir, 42)
    first, picks = rows(tmp_path / "c.csv"), rows(tmp_path / "c-picks.csv")
    assert sorted(r["arm"] for r in first) == ["course", "sweeper", "trainer"]
    assert {r["precision"] for r in first} == {"fp32"}
    assert {r["arm"] for r in picks} == {"course", "sweeper", "trainer"}
    sweeper = next(p for p in picks if p["arm"] == "sweeper")
    assert float(sweeper["search_epochs"]) >= 1 and int(sweeper["search_trials"]) >= 1  # it spent the budget
    trainer = next(p for p in picks if p["arm"] == "trainer")
    assert float(trainer["search_epochs"]) >= 1
    for r in first:  # each seed row trains the arm's recorded pick, its predictions kept for the paired test
        pick = next(p for p in picks if p["arm"] == r["arm"])
        assert (r["lr"], r["epochs"], r["batch_size"], r["config"]) == (pick["lr"], pick["epochs"],
                                                                          pick["batch_size"], pick["config"])
        predictions = tmp_path / "p" / f"mrpc-fp32-seed42-{r['run']}.txt"
        assert len(predictions.read_text().split()) == 32
    assert len((tmp_path / "p" / "mrpc-labels.txt").read_text().split()) == 32

    shutil.rmtree(tmp_path / "runs")  # a new checkout: the git-ignored studies are gone, the CSVs are not
    report = bench(tmp_path, glue_dir, 42, 43)
    second = rows(tmp_path / "c.csv")
    assert second[:3] == first  # the seed-42 rows stay as they were
    assert sorted((r["arm"], r["seed"]) for r in second[3:]) == [("course", "43"), ("sweeper", "43"), ("trainer", "43")]
    assert rows(tmp_path / "c-picks.csv") == picks  # no search ran again
    assert not (tmp_path / "runs" / "mrpc" / "sweeper.db").exists()
    assert not (tmp_path / "runs" / "mrpc" / "trainer.db").exists()
    assert "| mrpc (fp32) | sweeper |" in report and "(2 seeds, f1)" in report
    assert "sweeper: beats the course settings at 95%" in report


def test_a_wide_space_arm_records_its_whole_configuration(tmp_path, glue_dir):
    import json

    bench(tmp_path, glue_dir, 42, arms=("wide-9",))
    [pick] = rows(tmp_path / "c-picks.csv")
    config = json.loads(pick["config"])
    assert {"model.dropout.hidden", "model.reinit_layers", "model.pooling", "train.keep_best"} <= set(config)
    [row] = rows(tmp_path / "c.csv")
    assert row["arm"] == "wide-9" and row["config"] == pick["config"]


def test_a_candidate_default_runs_the_cli_with_its_overrides_in_its_own_study(tmp_path, glue_dir):
    import optuna

    bench(tmp_path, glue_dir, 42, arms=("probes",))
    [pick] = rows(tmp_path / "c-picks.csv")
    assert pick["arm"] == "probes" and float(pick["search_epochs"]) >= 1
    study = optuna.load_study(study_name="bench-mrpc-probes", storage=f"sqlite:///{tmp_path}/runs/mrpc/probes/sweeper.db")
    assert sum("probe" in t.user_attrs for t in study.trials) == 8  # bench/compute.py's ARMS["probes"]
    assert [r["arm"] for r in rows(tmp_path / "c.csv")] == ["probes"]
