"""After a sweep, in process: the exported best model loads offline (from_pretrained, pipeline) and
reproduces its trial's metric; best.yaml composes back to the best trial; report.html is self-contained."""
import json
import re

import optuna
import pytest
import torch

from conftest import TINY, compose_config
from sweeper.train.export import MARKER, export_if_better, read_marker


@pytest.fixture(scope="module")
def swept(glue_dir, tmp_path_factory):
    """A finished tiny study (fp32, so re-evaluation must match to the last digit; the best trial's
    checkpoint kept, to compare weights), and its config."""
    from sweeper.job import run_study

    out = tmp_path_factory.mktemp("swept")
    cfg = compose_config(f"data_dir={glue_dir}", f"out_dir={out}", f"study.storage=sqlite:///{out}/s.db",
                         *TINY, "study.n_trials=3", "search.space.train.epochs=range(1,2)", "train.precision=no",
                         "study.keep_checkpoints=best")
    best = run_study(cfg)
    import optuna

    return cfg, optuna.load_study(study_name="mrpc-tiny", storage=cfg.study.storage), best, out


def test_best_model_loads_offline_and_reproduces_its_trial(swept):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from sweeper.data.dataset import load_task
    from sweeper.results.predict import predict
    from sweeper.train.checkpoints import latest
    from sweeper.train.metrics import compute_metrics

    cfg, study, best, out = swept
    path = out / "mrpc-tiny" / "best-model"
    assert (path / "model.safetensors").is_file()
    assert read_marker(path)["trial"] == study.best_trial.number and read_marker(path)["value"] == best
    assert not list((out / "mrpc-tiny").glob("best-model.*-*"))  # no temporary directories left
    model = AutoModelForSequenceClassification.from_pretrained(path)
    # The trained weights, not the template's: the same as the best trial's last checkpoint.
    checkpoint = latest(out / "mrpc-tiny" / "checkpoints" / f"trial-{study.best_trial.number}")
    trained = load_file(checkpoint / "model.safetensors")
    exported = model.state_dict()
    assert trained.keys() <= exported.keys() and all(torch.equal(v, exported[k]) for k, v in trained.items())
    assert model.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    assert model.config.label2id == {"not_equivalent": 0, "equivalent": 1}

    data = load_task(cfg.task, str(path), cfg.data_dir, cfg.seed)  # the exported tokenizer
    metrics = compute_metrics(data.eval["labels"], predict(model, data.eval, data.tokenizer), cfg.task.metrics)
    assert metrics[cfg.task.objective] == best
    assert metrics == {k: study.best_trial.user_attrs[k] for k in cfg.task.metrics}

    classify = pipeline("text-classification", model=str(path), device="cpu")
    first = data.eval[0]
    text = AutoTokenizer.from_pretrained(path).decode(first["input_ids"], skip_special_tokens=False)
    assert classify(text)[0]["label"] in {"not_equivalent", "equivalent"}


def test_no_checkpoints_are_kept_by_default():
    assert compose_config().study.keep_checkpoints.value == "none"  # the best model is exported instead


def test_export_replaces_only_with_a_better_model(tmp_path):
    from transformers import AutoTokenizer

    from sweeper.train.model import load_template

    cfg = compose_config(*TINY)
    model = load_template(cfg.model, 2, 0)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path)
    target = tmp_path / "best-model"

    def export(trial, value, is_current=lambda m: True):
        return export_if_better(model, tokenizer, ["no", "yes"], target, {"trial": trial, "value": value},
                                is_current)

    assert export(0, 0.5)
    assert not export(1, 0.4) and not export(2, 0.5)
    assert read_marker(target)["trial"] == 0
    assert export(3, 0.6) and read_marker(target)["trial"] == 3
    assert export(4, 0.1, is_current=lambda m: False)  # the marker's trial is gone: any model beats none
    assert json.loads((target / MARKER).read_text()) == {"trial": 4, "value": 0.1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-model", "best-model.lock"]
    reloaded = type(model).from_pretrained(target).state_dict()
    assert all(torch.equal(v, reloaded[k]) for k, v in model.state_dict().items())


def test_best_yaml_composes_back_to_the_best_trial(swept):
    from sweeper.job import run_study
    from sweeper.search.space import compile_space

    cfg, study, best, out = swept
    text = (out / "mrpc-tiny" / "best.yaml").read_text()
    best_params = study.best_trial.params
    as_config = compose_config(f"hydra.searchpath=[file://{out}]", "+mrpc-tiny=best", f"data_dir={cfg.data_dir}",
                               f"out_dir={out}", f"study.storage={cfg.study.storage}", "train.progress=false",
                               "train.precision=no")
    line = re.search(r"#   python -m sweeper (task=.*)", text).group(1).split()
    as_overrides = compose_config(*line, f"data_dir={cfg.data_dir}", f"out_dir={out}",
                                  f"study.storage={cfg.study.storage}", "train.progress=false", "train.precision=no")
    assert as_config == as_overrides
    c = as_config
    assert (c.task.name, c.model.name, c.task.max_train_samples, c.task.max_eval_samples) == ("mrpc", "tiny", 64, 32)
    assert compile_space(c.search) == study.best_trial.user_attrs["config"]  # every entry fixed at the trial's value
    assert set(best_params) == {"optimizer.lr", "train.epochs", "train.batch_size"}
    assert c.study.name == "mrpc-tiny-best" and c.study.n_trials == 1
    assert run_study(c) == best  # the same trial again: the same value


def test_report_is_self_contained_with_optuna_plots(swept):
    _, study, _, out = swept
    page = (out / "mrpc-tiny" / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", page)
    assert page.count("<script>") == 1 + page.count("Plotly.newPlot")  # plotly.js once, then one per plot
    for title, anchor in (("Optimization history", "optimization-history"), ("Learning curves", "learning-curves"),
                          ("Parameter importances", "parameter-importances"),
                          ("Parallel coordinates", "parallel-coordinates")):
        assert f"<h2 id='{anchor}'>{title}" in page
    assert page.count("Plotly.newPlot") == 5
    assert all(f"<td>{t.number}</td>" in page for t in study.trials)


def test_report_plots_name_the_metric_and_its_top_says_what_was_swept(swept):
    _, study, _, out = swept
    page = (out / "mrpc-tiny" / "report.html").read_text()
    assert "Objective Value" not in page and '"text":"Intermediate Value"' not in page  # Optuna's axis names
    assert '"yaxis":{"title":{"text":"f1"}}' in page  # optimization history
    assert '"title":{"text":"f1 at each report"}' in page  # learning curves, in epochs of training (test_report.py)
    assert '"text":"epochs of training (1 epoch = the 64 training examples once)"' in page
    assert '"name":"f1","orientation":"h"' in page and '"ticktext":["f1",' in page  # importances, parallel coords
    top = page[page.index("<body>"):page.index("<h2>")]
    best = study.best_trial
    for shown in ("<h1>mrpc-tiny</h1>", "<th>task</th><td>mrpc (GLUE, sha256:", "<th>model</th><td>tiny (",
                  "64 training examples (train split), 32 evaluation examples (validation split)",
                  "<th>objective</th><td>f1 (maximize)", f"f1 {best.value:.4f} (trial {best.number}: optimizer.lr="):
        assert shown in top, shown


def test_a_multi_objective_report_plots_its_first_objective_by_name(tmp_path):
    from sweeper.results.report import write_report

    study = optuna.create_study(directions=["maximize", "minimize"], study_name="pareto")
    study.set_metric_names(["f1", "total_train_seconds"])
    study.optimize(lambda t: (t.suggest_float("lr", 1e-5, 1e-4, log=True) * 1e4, t.suggest_int("epochs", 1, 3)),
                   n_trials=4)
    page = write_report(study, tmp_path / "report.html").read_text()
    assert "Objective Value" not in page and '"yaxis":{"title":{"text":"f1"}}' in page
    assert "<th>objective</th><td>f1 (maximize), total_train_seconds (minimize)" in page
    assert "<th>data</th><td>not recorded" in page  # a study sweeper did not run


def test_the_dashboard_names_the_metric_and_the_study(swept):
    cfg, study, _, out = swept
    assert study.metric_names == ["f1"]
    attrs = study.user_attrs
    assert (attrs["task"]["name"], attrs["model"]["name"], attrs["train_size"], attrs["eval_size"]) == (
        "mrpc", "tiny", 64, 32)
    assert attrs["best_model"] == str(out / "mrpc-tiny" / "best-model")
    assert attrs["search_space"]["train.batch_size"] == "CategoricalDistribution(choices=(8, 16, 32))"
