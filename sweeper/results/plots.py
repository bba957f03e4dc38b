"""report.html's plots: Optuna's own, their axes named after the study's metric, and the learning curves in epochs
of training."""
from __future__ import annotations

from optuna.trial import TrialState

from sweeper.search.pruning import SAMPLES, STEP_UNIT, epochs_done


def figures(study) -> list[tuple[str, object]]:
    """Optuna's own plots, their axes named after the study's metric (Optuna says "Objective Value"); a
    plot its trials cannot support yet (e.g. importances before two complete trials) is named with the reason
    instead. A multi-objective study is plotted on its first objective."""
    from optuna import visualization as vis

    trials = study.get_trials(deepcopy=False)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    reported = any(t.intermediate_values for t in trials)  # none in a multi-objective study
    metric = metric_name(study)
    named = {"target_name": metric}
    if len(study.directions) > 1:
        named["target"] = lambda t: t.values[0]
    plots = [("Optimization history", vis.plot_optimization_history, named, None),
             ("Learning curves (intermediate values)", learning_curves, {"metric": metric},
              None if reported else "no trial reported per-epoch values"),
             ("Parameter importances", vis.plot_param_importances, named,
              None if complete >= 2 else "needs at least 2 complete trials"),
             ("Parallel coordinates", vis.plot_parallel_coordinate, named, None),
             ("Slices", vis.plot_slice, named, None)]
    out = []
    for title, plot, kwargs, missing in plots:
        if missing:
            out.append((title, missing))
            continue
        try:
            fig = plot(study, **kwargs)
        except Exception as e:  # a plot must not cost the study its report
            out.append((title, f"not available: {e}"))
            continue
        out.append((title, fig))
    return out


def learning_curves(study, metric: str):
    """Each trial's reports against the epochs of training behind them. Steps are training samples (within-epoch
    reports) or epoch indices (train.evals_per_epoch=1): both are shown in epochs, what a person thinks in, with the
    training samples in the hover; raw steps where the training set's size is unknown (studies made before)."""
    import plotly.graph_objects as go

    size = study.user_attrs.get("train_size")
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    in_epochs = all(epochs_done(t, 0, size) is not None for t in trials)
    fig = go.Figure()
    for t in trials:
        steps = sorted(t.intermediate_values)
        samples = t.user_attrs.get(STEP_UNIT) == SAMPLES
        fig.add_trace(go.Scatter(
            x=[epochs_done(t, s, size) for s in steps] if in_epochs else steps,
            y=[t.intermediate_values[s] for s in steps], mode="lines+markers",
            name=f"trial {t.number} ({t.state.name.lower()})", customdata=steps,
            hovertemplate=(f"trial {t.number}<br>%{{x:.2f}} epochs, " + ("%{customdata:,} training samples"
                           if samples else "end of epoch %{x:.0f}") + f"<br>{metric} %{{y:.4f}}<extra></extra>")))
    size_note = f" (1 epoch = the {size:,} training examples once)" if isinstance(size, int) else ""
    fig.update_layout(title=f"{metric} at each report", yaxis_title=metric,
                      xaxis_title=f"epochs of training{size_note}" if in_epochs else "report step (training samples "
                      "or epoch index: the study does not record its training set's size)")
    return fig


def metric_name(study) -> str:
    return (study.metric_names or ["objective"])[0]
