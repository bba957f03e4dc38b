"""The real CLI on the other GLUE tasks of the local copy, and on a dataset of one's own as a
multi-objective study."""
import pandas as pd
import pytest
from test_tasks import classes, write_split

from conftest import TINY, cli, load

pytestmark = pytest.mark.slow
# One reference trial of one epoch per study: four studies in one CLI run stay within minutes on 2 busy cores.
ONE_EPOCH = ["study.n_trials=1", "search.space.train.epochs=1", "search.reference.train.epochs=1",
             "search.space.train.batch_size=16", "search.reference.train.batch_size=16",
             "search.portfolio=[{optimizer.lr:5e-5,train.epochs:1,train.batch_size:16}]"]


def test_multirun_over_cola_stsb_rte_wnli(tmp_path, glue_dir):
    storage = f"sqlite:///{tmp_path}/s.db"
    result = cli("-m", "task=cola,stsb,rte,wnli", *TINY, *ONE_EPOCH, f"study.storage={storage}",
                 f"out_dir={tmp_path}", env={"GLUE_DIR": glue_dir}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    objective = {"cola": "matthews_correlation", "stsb": "pearson", "rte": "accuracy", "wnli": "accuracy"}
    for task, metric in objective.items():
        study = load(storage, f"{task}-tiny")
        assert study.direction.name == "MAXIMIZE"
        assert [t.state.name for t in study.trials] == ["COMPLETE"], task
        for t in study.trials:
            assert t.value == t.user_attrs[metric] and -1 <= t.value <= 1
            assert sorted(t.intermediate_values) == [16, 48, 64]  # reported to the pruner, 3 times in the epoch
            assert t.intermediate_values[64] == t.value  # the epoch's end: the whole split
        assert f"study {task}-tiny: 1 complete, 0 pruned, 0 failed" in result.stdout
    assert {"pearson", "spearman", "mse"} <= set(load(storage, "stsb-tiny").trials[0].user_attrs)


def test_own_dataset_as_a_multi_objective_study(tmp_path):
    for i, split in enumerate(["train", "validation"]):
        write_split(tmp_path / "reviews" / f"{split}.parquet", {"body": "text", "stars": classes(3)}, 48, i)
    storage = f"sqlite:///{tmp_path}/s.db"
    task = [f"task.dataset={tmp_path}/reviews", "task.name=reviews", "task.text_columns=[body]",
            "task.label_column=stars", "task.num_labels=3", "task.label_names=[]",
            "task.metrics=[accuracy,matthews_correlation]", "task.objective=accuracy"]
    args = [*TINY, *task, "study.n_trials=2", *ONE_EPOCH[1:], f"study.storage={storage}",
            f"out_dir={tmp_path}", "study.objectives=[accuracy,total_train_seconds]", "data_dir=null"]
    bad = cli(*args, "task.num_labels=2")
    assert bad.returncode == 2 and bad.stderr.startswith("error: task.num_labels=2: task.dataset=")
    assert "has labels 0..2; allowed: 0..1" in bad.stderr and not (tmp_path / "s.db").exists()

    result = cli(*args, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load(storage, "reviews-tiny")
    assert study.metric_names == ["accuracy", "total_train_seconds"]  # optuna-dashboard's axis names
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert "pruner PlateauHalvingPruner is off" in result.stdout
    assert "Pareto front (accuracy maximize, total_train_seconds minimize)" in result.stdout
    table = pd.read_csv(tmp_path / "reviews-tiny" / "trials.csv")
    assert len(table) == 2 and set(table.loc[table.pareto, "number"]) == {t.number for t in study.best_trials}
