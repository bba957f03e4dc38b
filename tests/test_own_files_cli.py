"""The real CLI on one's own JSON Lines and CSV files with names as labels: bad files refused in one line
before anything is written, a small study whose best model is named, and a resume refused once a file changed."""
import json

import pytest
from test_own_files import TASK, frame, write

from conftest import TINY, cli, load

pytestmark = pytest.mark.slow
ONE_EPOCH = ["search.space.train.epochs=1", "search.reference.train.epochs=1", "search.space.train.batch_size=16",
             "search.reference.train.batch_size=16",
             "search.portfolio=[{optimizer.lr:5e-5,train.epochs:1,train.batch_size:16}]"]


@pytest.mark.parametrize("train,error", [
    ('body,sentiment\n"a cat sat,pos\nthe dog,neg\n', "train.csv is not readable CSV (ParserError: Error tokenizing "
                                                      "data. C error: EOF inside string starting at row 1)"),
    ("body,sentiment\na cat,pos\nthe dog,mixed\n", "label 'mixed' in split train is not in task.label_names=[neg, "
                                                   "neutral, pos]; allowed: those"),
], ids=["unparsable", "unknown-name"])
def test_a_bad_file_is_one_error_line_and_nothing_is_written(tmp_path, train, error):
    (tmp_path / "train.csv").write_text(train)
    write(tmp_path / "validation.csv", frame(9))
    result = cli(*TINY, *TASK, "task.label_names=[neg,neutral,pos]", f"out_dir={tmp_path}/out",
                 f"study.storage=sqlite:///{tmp_path}/s.db", "data_dir=null",
                 f"+task.data_files={{train:{tmp_path}/train.csv,validation:{tmp_path}/validation.csv}}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and error in result.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "out").exists()


def test_a_study_on_json_lines_with_names(tmp_path):
    data = tmp_path / "data"
    write(data / "train.jsonl", frame(48))
    path = write(data / "validation.jsonl", frame(16, seed=1))
    storage = f"sqlite:///{tmp_path}/s.db"
    args = [*TINY, *TASK, f"task.dataset={data}", "data_dir=null", "study.n_trials=2", *ONE_EPOCH,
            f"study.storage={storage}", f"out_dir={tmp_path}"]
    result = cli(*args, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load(storage, "reviews-tiny")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert "study reviews-tiny: 2 complete, 0 pruned, 0 failed" in result.stdout
    config = json.loads((tmp_path / "reviews-tiny" / "best-model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "neutral", "2": "pos"}

    write(path, frame(16, seed=2))  # other validation rows under the same name
    again = cli(*args, "study.n_trials=3")
    assert again.returncode == 2 and again.stderr.startswith("error: study reviews-tiny was created with another "
                                                             "definition: data.content: stored sha256:")
    assert len(load(storage, "reviews-tiny").trials) == 2
