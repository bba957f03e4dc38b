"""Every GLUE task and any dataset in that layout: metrics, regression, extra evaluation splits, bad input."""
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from conftest import TINY, compose_config, load
from sweeper.config import choices
from sweeper.data import dataset, source
from sweeper.errors import ConfigError
from sweeper.train.metrics import METRICS, compute_metrics, direction
from sweeper.validate import validate

WORDS = "the a cat dog sat ran on under mat log quickly slowly red blue big small".split()
GLUE = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}


def write_split(path: Path, columns: dict, n: int, seed: int = 0) -> None:
    """A parquet split of n rows: random sentences in each text column, plus the given label column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    table = {c: [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(n)] if v == "text"
             else v(rng, n) for c, v in columns.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), path)


def classes(k):
    return lambda rng, n: (np.arange(n) % k).astype(np.int64)  # every class present


def write_glue(root: Path, name: str, n: int = 48) -> Path:
    """A small stand-in for a GLUE task that the local copy lacks, in nyu-mll/glue's layout and columns."""
    spec = {"qqp": ({"question1": "text", "question2": "text", "label": classes(2)}, ["train", "validation"]),
            "qnli": ({"question": "text", "sentence": "text", "label": classes(2)}, ["train", "validation"]),
            "mnli": ({"premise": "text", "hypothesis": "text", "label": classes(3)},
                     ["train", "validation_matched", "validation_mismatched"])}[name]
    for i, split in enumerate(spec[1]):
        write_split(root / name / f"{split}-00000-of-00001.parquet", spec[0], n, seed=i)
    return root


def test_all_nine_glue_tasks_are_configured():
    assert GLUE <= set(choices("task"))
    assert compose_config("task=stsb").task.num_labels == 1
    mnli = compose_config("task=mnli").task
    assert mnli.eval_split == "validation_matched" and list(mnli.extra_eval_splits) == ["validation_mismatched"]


def test_metrics_match_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    got = compute_metrics(y, p, ["accuracy", "f1", "matthews_correlation"])
    assert got == pytest.approx({"accuracy": sklearn.metrics.accuracy_score(y, p),
                                 "f1": sklearn.metrics.f1_score(y, p),
                                 "matthews_correlation": sklearn.metrics.matthews_corrcoef(y, p)})
    s, q = rng.uniform(0, 5, 40), rng.uniform(0, 5, 40)
    got = compute_metrics(s, s + q, ["pearson", "spearman", "mse", "mae"])
    assert got == pytest.approx({"pearson": scipy.stats.pearsonr(s, s + q)[0],
                                 "spearman": scipy.stats.spearmanr(s, s + q)[0],
                                 "mse": sklearn.metrics.mean_squared_error(s, s + q),
                                 "mae": sklearn.metrics.mean_absolute_error(s, s + q)})
    assert 0.5 < got["pearson"] < 1 and got["mse"] > 1
    # An untrained regressor predicting a constant has no correlation: 0, not NaN (the pruner must rank it).
    assert compute_metrics(s, np.full(40, 2.5), ["pearson", "spearman"]) == {"pearson": 0.0, "spearman": 0.0}


def test_direction_follows_the_metric():
    assert {m: direction(m) for m in METRICS} == {
        "accuracy": "maximize", "f1": "maximize", "matthews_correlation": "maximize", "pearson": "maximize",
        "spearman": "maximize", "mse": "minimize", "mae": "minimize"}
    assert direction("total_train_seconds") == direction("loss") == "minimize"
    assert direction("validation_mismatched_accuracy") == "maximize"


@pytest.mark.parametrize("overrides,needle", [
    (["task.metrics=[accuracy,auc]"], r"task.metrics=\['accuracy', 'auc'\]: \['auc'\] not for 2 classes; "
                                      r"allowed: accuracy, f1, matthews_correlation"),
    (["task=stsb", "task.metrics=[pearson,accuracy]", "task.objective=pearson"],
     r"\['accuracy'\] not for a regression \(num_labels=1\); allowed: mae, mse, pearson, spearman"),
    (["task=mnli", "task.metrics=[accuracy,f1]"], r"\['f1'\] not for 3 classes; allowed: accuracy, matthews"),
    (["task=cola", "task.objective=f1"], r"task.objective=f1; allowed: one of task.metrics"),
    (["study.objectives=[f1,seconds]"], r"study.objectives has seconds; allowed: accuracy, f1, loss"),
    (["study.objectives=[f1,f1]"], r"names one twice"),
    (["task.num_labels=0"], r"task.num_labels=0; allowed: 1 \(regression\)"),
])
def test_bad_metrics_and_objectives_name_the_value(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(compose_config(*overrides))


def test_a_glue_task_missing_from_the_local_copy_names_the_hub(glue_dir):
    with pytest.raises(ConfigError, match=rf"data_dir={glue_dir} has no qqp/train-\*.parquet; tasks there: "
                                          r"cola, mrpc, rte, sst2, stsb, wnli; allowed: .* or data_dir=null"):
        source.check(compose_config("task=qqp").task, glue_dir)


@pytest.mark.parametrize("name,columns", [("qqp", 2), ("qnli", 2), ("mnli", 2)])
def test_glue_tasks_in_a_written_copy_load(tmp_path, name, columns):
    root = write_glue(tmp_path, name)
    cfg = compose_config(f"task={name}", "model=tiny")
    source.check(cfg.task, str(root))
    task = dataset.load_task(cfg.task, cfg.model.path, str(root), seed=0)
    assert len(task.train) == len(task.eval) == 48
    assert 1 in task.train[0]["token_type_ids"]  # a sentence pair
    assert set(task.train["labels"]) == set(range(cfg.task.num_labels))
    assert list(task.extra_evals) == (["validation_mismatched"] if name == "mnli" else [])


def custom(tmp_path, label=None):
    """A 4-topic dataset of one's own, in <dir>/<split>.parquet, and the overrides that describe it."""
    for i, split in enumerate(["train", "validation"]):
        write_split(tmp_path / "reviews" / f"{split}.parquet", {"body": "text", "topic": label or classes(4)}, 40, i)
    return [f"task.dataset={tmp_path}/reviews", "task.name=reviews", "task.text_columns=[body]",
            "task.label_column=topic", "task.num_labels=4", "task.label_names=[]",
            "task.metrics=[accuracy,matthews_correlation]", "task.objective=accuracy"]


def test_a_dataset_of_ones_own_loads_by_config(tmp_path):
    cfg = compose_config(*custom(tmp_path), "model=tiny")
    validate(cfg)
    source.check(cfg.task, None)
    task = dataset.load_task(cfg.task, cfg.model.path, None, seed=0)
    assert len(task.train) == 40 and set(task.train["labels"]) == {0, 1, 2, 3}
    assert source.resolve(compose_config("task.dataset=org/reviews").task, None).hub == "org/reviews"


@pytest.mark.parametrize("change,needle", [
    ({"overrides": ["task.label_column=stars"]}, r"task.label_column=stars: task.dataset=.* split train has no such "
                                                 r"column; columns there: body, topic"),
    ({"overrides": ["task.text_columns=[title,body]"]}, r"task.text_columns=\['title', 'body'\]: .* has no title"),
    ({"overrides": ["task.num_labels=3"]}, r"task.num_labels=3: .* split train has labels 0..3; allowed: 0..2"),
    ({"overrides": ["task.num_labels=5"]}, r"task.num_labels=5: .* has 4 distinct labels \(0, 1, 2, 3\); "
                                           r"allowed: task.num_labels=4"),
    ({"label": lambda rng, n: rng.uniform(size=n)}, r"task.label_column=topic: .* holds float64 labels; allowed: "
                                                    r"integers"),
    ({"overrides": ["task.train_split=training"]}, r"has no training.parquet or training-\*.parquet; splits there: "
                                                   r"train, validation"),
    ({"overrides": ["task.dataset=./no/such/dir"]}, r"task.dataset=./no/such/dir: no/such/dir is not a directory"),
])
def test_data_that_does_not_fit_the_task_fails_before_training(tmp_path, change, needle):
    overrides = custom(tmp_path, **({"label": change["label"]} if "label" in change else {}))
    cfg = compose_config(*overrides, *change.get("overrides", []))
    with pytest.raises(ConfigError, match=needle):
        source.check(cfg.task, None)


def test_stsb_regression_trains_and_scores_correlations(compose_cfg, glue_dir):
    """The regression task end to end in-process: float labels, one output, MSE loss, correlations per epoch;
    the reference trial and the median pruner work on it as on a classification task."""
    from sweeper.job import run_study

    cfg = compose_cfg(*TINY, "task=stsb", "study.n_trials=3", "search.space.train.epochs=2",
                      "search.space.train.batch_size=16",
                      "search.portfolio=[{optimizer.lr:5e-5,train.epochs:2,train.batch_size:16}]", "pruner=plateau",
                      "train.evals_per_epoch=1")
    task = dataset.load_task(cfg.task, cfg.model.path, glue_dir, seed=0)
    assert task.train.features["labels"].dtype == "float32"
    assert run_study(cfg) is not None
    study = load(cfg.study.storage, cfg.study.name)
    assert study.direction.name == "MAXIMIZE" and len(study.trials) == 3
    assert study.trials[0].params == {"optimizer.lr": 5e-5}  # the portfolio's trial
    for t in study.trials:
        assert -1 <= t.value <= 1 if t.value is not None else t.state.name == "PRUNED"
        assert {"pearson", "spearman", "mse", "loss"} <= set(t.user_attrs)
        assert t.intermediate_values  # reported per epoch: the pruner sees them
        assert t.user_attrs["mse"] > 0 and np.isfinite(t.user_attrs["loss"])


def test_mse_objective_is_minimized(compose_cfg):
    from sweeper.study.run import load_study
    from sweeper.study.storage import open_storage

    cfg = compose_cfg(*TINY, "task=stsb", "task.objective=mse")
    study = load_study(open_storage(cfg.study), cfg)
    assert study.direction.name == "MINIMIZE"
    with pytest.raises(ConfigError, match=r"study stsb-tiny was created with another definition: "
                                          r".*study.directions: stored \[minimize\], now \[maximize\]"):
        load_study(open_storage(cfg.study), compose_cfg(*TINY, "task=stsb"))


def test_multi_objective_study_keeps_a_pareto_front(tmp_path, caplog):
    """MNLI (3 classes, matched and mismatched validation) against training time: no pruning, the Pareto
    front logged and marked in trials.csv, the objectives named for optuna-dashboard."""
    import pandas as pd

    from sweeper.job import run_study

    root = write_glue(tmp_path / "glue", "mnli")
    cfg = compose_config(*TINY, "task=mnli", f"data_dir={root}", f"out_dir={tmp_path}",
                         f"study.storage=sqlite:///{tmp_path}/s.db", "study.n_trials=3",
                         "search.space.train.epochs=range(1,2)",
                         "study.objectives=[accuracy,total_train_seconds]", "study.keep_checkpoints=best")
    validate(cfg)
    with caplog.at_level("INFO"):
        assert run_study(cfg) is None  # no single best value
    study = load(cfg.study.storage, cfg.study.name)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "total_train_seconds"]
    assert "pruner PlateauHalvingPruner is off" in caplog.text and "Pareto front (accuracy maximize" in caplog.text
    assert all(t.state.name == "COMPLETE" and not t.intermediate_values for t in study.trials)
    for t in study.trials:
        assert t.values == [t.user_attrs["accuracy"], t.user_attrs["total_train_seconds"]]
        assert 0 <= t.user_attrs["validation_mismatched_accuracy"] <= 1
        assert t.user_attrs["total_train_seconds"] >= t.user_attrs["train_seconds"]
    table = pd.read_csv(tmp_path / cfg.study.name / "trials.csv")
    assert set(table.loc[table.pareto, "number"]) == {t.number for t in study.best_trials} != set()
    assert sorted(p.name for p in (tmp_path / cfg.study.name / "checkpoints").iterdir()) == sorted(
        f"trial-{t.number}" for t in study.best_trials)  # keep_checkpoints=best keeps the front
