"""A dataset of one's own as CSV, TSV or JSON Lines files (a directory, or task.data_files per split): read
fresh, labels given as names mapped to ids in a stable order that the exported model keeps, bad files refused
in one line before any training, and a changed file refused on resume."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, compose_config
from sweeper.data import dataset, source
from sweeper.errors import ConfigError

WORDS = "the a cat dog sat ran on under mat log quickly slowly red blue big small".split()
NAMES = ["pos", "neutral", "neg"]  # as a file holds them; sorted: neg, neutral, pos


def frame(n: int, seed: int = 0, names=NAMES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"body": [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(n)],
                         "sentiment": [names[i % len(names)] for i in range(n)]})


def write(path: Path, table: pd.DataFrame) -> Path:
    """A table as the file its suffix names, the way pandas writes each format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix[1:]
    if suffix in ("csv", "tsv"):
        table.to_csv(path, sep="\t" if suffix == "tsv" else ",", index=False)
    elif suffix in ("jsonl", "json"):
        table.to_json(path, orient="records", lines=True)
    else:
        table.to_parquet(path, index=False)
    return path


TASK = ["task.name=reviews", "task.text_columns=[body]", "task.label_column=sentiment", "task.num_labels=3",
        "task.label_names=[]", "task.metrics=[accuracy,matthews_correlation]", "task.objective=accuracy"]


def own(directory: Path, *overrides: str):
    return compose_config("model=tiny", "data_dir=null", f"task.dataset={directory}", *TASK, *overrides)


@pytest.mark.parametrize("layout", [
    {"train.csv": 40, "validation.csv": 12},
    {"train.tsv": 40, "validation.tsv": 12},
    {"train.jsonl": 40, "validation.jsonl": 12},
    {"train.json": 40, "validation.json": 12},
    {"train.parquet": 40, "validation.parquet": 12},  # names in parquet too
    {"train-00000-of-00002.csv": 25, "train-00001-of-00002.csv": 15, "validation.jsonl": 12},  # shards; a format
])                                                                                               # of its own each
def test_each_format_and_layout_loads_with_names_as_sorted_ids(tmp_path, layout):
    tables = {name: frame(n, seed=i) for i, (name, n) in enumerate(layout.items())}
    for name, table in tables.items():
        write(tmp_path / "reviews" / name, table)
    cfg = own(tmp_path / "reviews")
    source.check(cfg.task, None)
    data = dataset.load_task(cfg.task, cfg.model.path, None, seed=0)
    assert len(data.train) == 40 and len(data.eval) == 12
    assert data.label_names == ["neg", "neutral", "pos"]
    raw = dataset.load_subsampled(cfg.task, None, seed=0)["train"]  # all rows, in file order
    train = pd.concat([t for name, t in tables.items() if name.startswith("train")])
    assert list(raw["body"]) == train.body.tolist()
    assert list(raw["sentiment"]) == [["neg", "neutral", "pos"].index(s) for s in train.sentiment]


def test_data_files_name_each_split_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mine" / "part-1.csv", frame(20, 0))
    write(tmp_path / "mine" / "part-2.csv", frame(20, 1))
    write(tmp_path / "held-out.jsonl", frame(10, 2))
    cfg = compose_config("model=tiny", "data_dir=null", *TASK,
                         "+task.data_files={train:./mine/part-*.csv,validation:./held-out.jsonl}")
    source.check(cfg.task, None)
    data = dataset.load_task(cfg.task, cfg.model.path, None, seed=0)
    assert len(data.train) == 40 and len(data.eval) == 10 and data.label_names == ["neg", "neutral", "pos"]
    with pytest.raises(ConfigError, match=r"task.data_files has no validation; given: train; allowed: a file"):
        source.check(compose_config(*TASK, "+task.data_files={train:./mine/part-1.csv}").task, None)
    with pytest.raises(ConfigError, match=r"task.data_files.validation=./gone.csv: no such file; allowed: a file "
                                          rf"\(or a glob\) relative to {tmp_path}"):
        source.check(compose_config(*TASK, "+task.data_files={train:./held-out.jsonl,validation:./gone.csv}").task,
                     None)
    with pytest.raises(ConfigError, match=r"task.dataset=./mine is set too; allowed: one of them"):
        source.check(compose_config(*TASK, "task.dataset=./mine", "+task.data_files={train:./a.csv}").task, None)


def test_names_map_to_ids_in_a_stable_order_or_that_of_label_names(tmp_path):
    from sweeper.data.labels import exported

    write(tmp_path / "a" / "train.csv", frame(30))
    write(tmp_path / "a" / "validation.csv", frame(9, names=NAMES[::-1]))  # another first name: same ids
    write(tmp_path / "b" / "train.csv", frame(30).sample(frac=1, random_state=1))  # rows in another order
    write(tmp_path / "b" / "validation.csv", frame(9))
    first, second = (dataset.load_subsampled(own(tmp_path / d).task, None, seed=0) for d in "ab")
    for splits in (first, second):
        assert splits["train"].features["sentiment"].names == ["neg", "neutral", "pos"]
    assert list(first["validation"]["sentiment"]) == [0, 1, 2] * 3  # neg, neutral, pos
    assert list(second["validation"]["sentiment"]) == [2, 1, 0] * 3  # pos, neutral, neg

    ordered = own(tmp_path / "a", "task.label_names=[pos,neutral,neg]").task
    splits = dataset.load_subsampled(ordered, None, seed=0)
    assert list(splits["validation"]["sentiment"]) == [2, 1, 0] * 3 and exported(ordered, splits["train"]) == NAMES

    write(tmp_path / "a" / "validation.csv", frame(9, names=["pos", "mixed", "neg"]))
    with pytest.raises(ConfigError, match=r"^task.label_column=sentiment: label 'mixed' in split validation is not "
                                          r"in task.label_names=\[pos, neutral, neg\]; allowed: those$"):
        source.check(ordered, None)
    with pytest.raises(ConfigError, match=r"label 'mixed' in split validation is not in split train's labels="
                                          r"\[neg, neutral, pos\]; allowed: those, or task.label_names listing"):
        dataset.load_subsampled(own(tmp_path / "a").task, None, seed=0)


def test_integer_labels_keep_their_ids_and_label_names_name_them(tmp_path):
    for split, n in (("train", 30), ("validation", 9)):
        write(tmp_path / f"{split}.csv", frame(n).assign(sentiment=lambda t: np.arange(len(t)) % 3,
                                                         body=lambda t: np.arange(len(t)) * 7))  # numbers as text
    cfg = own(tmp_path)
    data = dataset.load_task(cfg.task, cfg.model.path, None, seed=0)
    assert data.label_names == [] and sorted(set(data.train["labels"])) == [0, 1, 2]  # LABEL_0, ... on export
    assert list(dataset.load_subsampled(cfg.task, None, seed=0)["validation"]["body"])[:3] == ["0", "7", "14"]
    named = own(tmp_path, "task.label_names=[neg,neutral,pos]")
    assert dataset.load_task(named.task, named.model.path, None, seed=0).label_names == ["neg", "neutral", "pos"]


BAD = {  # name -> (file contents of train.csv or what to write, overrides, the error)
    "unclosed quote": ('body,sentiment\n"a cat sat,pos\nthe dog,neg\n', [],
                       r"train.csv is not readable CSV \(ParserError: Error tokenizing data. C error: EOF inside "
                       r"string starting at row 1\); allowed: CSV with a header row"),
    "extra field": ("body,sentiment\na cat,pos,3\nthe dog,neg\n", [],
                    r"train.csv is not readable CSV \(ParserWarning: Length of header or names does not match"),
    "too few fields": ("body,sentiment\na cat,pos\nthe dog\nmat,neg\n", [],
                       r"train.csv line 3 has no sentiment \(1 rows without\); allowed: a value in every row"),
    "empty text": ("body,sentiment\na cat,pos\n,neg\nmat,neg\n", [], r"train.csv line 3 has no body"),
    "empty file": ("", [], r"train.csv is not readable CSV \(EmptyDataError: No columns to parse from file\)"),
    "too many names": ("body,sentiment\na,pos\nb,neg\nc,neutral\nd,mixed\n", [],
                       r"^task.num_labels=3: split train has 4 label names \(mixed, neg, neutral, pos\); allowed: "
                       r"task.num_labels=4$"),
    "label_names of another length": ("body,sentiment\na,pos\nb,neg\nc,neutral\n", ["task.label_names=[pos,neg]"],
                                      r"^task.label_names=\[pos, neg\]: 2 names for task.num_labels=3; allowed: 3 "
                                      r"names, or task.label_names=\[\]"),
    "float labels": ("body,sentiment\na,0.5\nb,1.5\nc,2.5\n", [],
                     r"split train holds float64 labels; allowed: integers 0..num_labels-1, names \(text\)"),
    "missing column": ("text,sentiment\na,pos\nb,neg\nc,neutral\n", [],
                       r"task.text_columns=\['body'\]: task.dataset=.* split train has no body; columns there: text"),
    "names in a regression": ("body,sentiment\na,pos\nb,neg\nc,neutral\n",
                              ["task.num_labels=1", "task.metrics=[pearson]", "task.objective=pearson"],
                              r"task.num_labels=1 \(regression\): .* column sentiment holds text; allowed: numbers"),
}


@pytest.mark.parametrize("name", BAD)
def test_files_that_do_not_fit_fail_preflight_in_one_line(tmp_path, name):
    text, overrides, needle = BAD[name]
    (tmp_path / "train.csv").write_text(text)
    write(tmp_path / "validation.csv", frame(9))
    with pytest.raises(ConfigError, match=needle) as e:
        source.check(own(tmp_path, *overrides).task, None)
    assert "\n" not in str(e.value)


def test_mixed_formats_and_mixed_label_types_are_refused(tmp_path):
    write(tmp_path / "train.csv", frame(12))
    write(tmp_path / "train-2.jsonl", frame(12))
    write(tmp_path / "validation.csv", frame(9))
    with pytest.raises(ConfigError, match=r"split train mixes formats \(train.csv, train-2.jsonl\); allowed: one "
                                          r"format per split"):
        source.check(own(tmp_path).task, None)
    (tmp_path / "train-2.jsonl").unlink()
    write(tmp_path / "train-2.csv", frame(12).assign(sentiment=1))  # a shard of ids beside one of names
    with pytest.raises(ConfigError, match=r"the train files train.csv, train-2.csv differ in columns or types "
                                          r"\(.*\); allowed: shards of one table"):
        source.check(own(tmp_path).task, None)
    (tmp_path / "train-2.csv").unlink()
    (tmp_path / "validation.csv").unlink()
    (tmp_path / "validation.jsonl").write_text('{"body": "a cat", "sentiment": "pos"}\n'
                                               '{"body": "a dog", "sentiment": 2}\n')
    with pytest.raises(ConfigError, match=r"validation.jsonl holds labels of mixed types; allowed: all integers"):
        source.check(own(tmp_path).task, None)
    (tmp_path / "validation.jsonl").write_text('{"body": "a cat", "sentiment": "pos"}\n{"body": "a dog", "sent')
    with pytest.raises(ConfigError, match=r"validation.jsonl is not readable JSON Lines \(.*\); allowed: one JSON "
                                          r"object per line"):
        source.check(own(tmp_path).task, None)


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_changed_file_is_read_as_it_is_now(tmp_path, suffix):
    """Rewritten with the same size and modification time: datasets' own cache would serve the old rows."""
    cfg = own(tmp_path)
    write(tmp_path / f"validation.{suffix}", frame(9))
    path = write(tmp_path / f"train.{suffix}", frame(30))
    stat = path.stat()
    before = dataset.load_subsampled(cfg.task, None, seed=0)["train"]
    changed = frame(30).assign(body=lambda t: t.body.str.replace("cat", "dog"))
    assert changed.body.tolist() != frame(30).body.tolist()
    write(path, changed)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    after = dataset.load_subsampled(cfg.task, None, seed=0)["train"]
    assert list(before["body"]) == frame(30).body.tolist() and list(after["body"]) == changed.body.tolist()


def test_the_study_refuses_a_resume_after_a_file_changed(tmp_path):
    from sweeper.study.run import load_study
    from sweeper.study.storage import open_storage

    data = tmp_path / "data"
    write(data / "validation.tsv", frame(9))
    path = write(data / "train.tsv", frame(30))
    cfg = own(data, f"out_dir={tmp_path}", f"study.storage=sqlite:///{tmp_path}/s.db")
    load_study(open_storage(cfg.study), cfg)
    load_study(open_storage(cfg.study), cfg)  # the same files: the same study
    write(path, frame(30, names=["neg", "neutral", "pos"]))  # the same rows, other labels
    with pytest.raises(ConfigError, match=r"study reviews-tiny was created with another definition: data.content: "
                                          r"stored sha256:\w+, now sha256:\w+; allowed: run it under a new study.name"):
        load_study(open_storage(cfg.study), cfg)


def test_a_study_on_csv_exports_its_names_and_retrain_submits_them(tmp_path):
    """A trial end to end in-process on CSV files with names as labels; the best model's config.json and
    mode=retrain's submission (for a test.csv without labels) hold the names."""
    from transformers import AutoModelForSequenceClassification

    from sweeper.job import run_study
    from sweeper.results.retrain import run_retrain

    data = tmp_path / "data"
    write(data / "train.csv", frame(48))
    write(data / "validation.csv", frame(16, seed=1))
    write(data / "test.csv", frame(6, seed=2).drop(columns="sentiment"))
    cfg = own(data, *TINY, f"out_dir={tmp_path}", f"study.storage=sqlite:///{tmp_path}/s.db", "study.n_trials=1",
              "search.reference.train.epochs=1", "search.reference.train.batch_size=16",
              "task.submission_file=reviews.tsv",
              "search.portfolio=[{optimizer.lr:5e-5,train.epochs:1,train.batch_size:16}]",
              "retrain.seeds=1")
    assert run_study(cfg) is not None
    config = json.loads((tmp_path / "reviews-tiny" / "best-model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"}
    assert config["label2id"] == {"neg": 0, "neutral": 1, "pos": 2}
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "reviews-tiny" / "best-model").num_labels == 3

    run_retrain(cfg)
    submission = pd.read_csv(tmp_path / "reviews-tiny" / "retrain" / "reviews.tsv", sep="\t")
    assert submission["index"].tolist() == list(range(6)) and set(submission.prediction) <= {"neg", "neutral", "pos"}
    retrained = json.loads((tmp_path / "reviews-tiny" / "retrain" / "best-model" / "config.json").read_text())
    assert retrained["id2label"] == config["id2label"]
