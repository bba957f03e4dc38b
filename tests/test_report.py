"""report.html's learning curves: reports stored in training samples (train.evals_per_epoch > 1) or epoch indices
(= 1) are drawn against epochs of training, the unit named on the axis, the samples in the hover."""
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeper.results.plots import learning_curves
from sweeper.results.report import write_report
from sweeper.search.pruning import SAMPLES, STEP_UNIT


def study_with(train_size, *trials):
    study = optuna.create_study(study_name="mrpc-tiny", direction="maximize")
    if train_size is not None:
        study.set_user_attr("train_size", train_size)
    for state, values, attrs in trials:
        study.add_trial(create_trial(state=state, value=max(values.values()) if state == TrialState.COMPLETE else None,
                                     params={"lr": 5e-5}, distributions={"lr": FloatDistribution(1e-5, 1e-4, log=True)},
                                     intermediate_values=values, user_attrs=attrs))
    return study


def test_sample_steps_and_epoch_indices_are_drawn_in_epochs():
    study = study_with(300, (TrialState.PRUNED, {100: 0.70}, {STEP_UNIT: SAMPLES}),  # stopped at 1/3 epoch
                       (TrialState.COMPLETE, {100: 0.71, 200: 0.75, 300: 0.80, 600: 0.82}, {STEP_UNIT: SAMPLES}),
                       (TrialState.COMPLETE, {0: 0.78, 1: 0.81}, {}))  # an epoch-unit trial: index 0 = epoch 1
    fig = learning_curves(study, "f1")
    assert fig.layout.xaxis.title.text == "epochs of training (1 epoch = the 300 training examples once)"
    assert fig.layout.yaxis.title.text == "f1"
    pruned, complete, by_epoch = fig.data
    assert pruned.name == "trial 0 (pruned)" and list(pruned.x) == pytest.approx([1 / 3])
    assert list(complete.x) == pytest.approx([1 / 3, 2 / 3, 1, 2]) and list(complete.customdata) == [100, 200, 300, 600]
    assert "training samples" in complete.hovertemplate
    assert list(by_epoch.x) == [1.0, 2.0] and "end of epoch" in by_epoch.hovertemplate


def test_without_the_training_set_size_the_axis_says_it_shows_raw_steps():
    fig = learning_curves(study_with(None, (TrialState.COMPLETE, {100: 0.7}, {STEP_UNIT: SAMPLES})), "f1")
    assert list(fig.data[0].x) == [100] and fig.layout.xaxis.title.text.startswith("report step (training samples")


def test_the_report_page_names_the_unit(tmp_path):
    study = study_with(300, (TrialState.COMPLETE, {100: 0.7, 300: 0.8}, {STEP_UNIT: SAMPLES}))
    page = write_report(study, tmp_path / "report.html").read_text()
    assert "epochs of training (1 epoch = the 300 training examples once)" in page
    assert "<h2 id='learning-curves'>Learning curves (intermediate values)</h2>" in page  # report.html#learning-curves
    assert '"xaxis":{"title":{"text":"epoch"}' not in page.replace(" ", "")
