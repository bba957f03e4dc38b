"""The checks a config schema cannot express (sweeper/config.py types the keys): each raises a ConfigError naming
the bad value and what is allowed, before anything trains."""
from __future__ import annotations

from sweeper.errors import ConfigError

PRUNERS = {
    "optuna.pruners.MedianPruner",
    "optuna.pruners.HyperbandPruner",
    "optuna.pruners.SuccessiveHalvingPruner",
    "optuna.pruners.NopPruner",
    "sweeper.search.pruning.PlateauMedianPruner",
    "sweeper.search.pruning.PlateauHalvingPruner",
}
SAMPLERS = {
    "optuna.samplers.TPESampler",
    "optuna.samplers.RandomSampler",
    "optuna.samplers.GPSampler",
    "optuna.samplers.QMCSampler",
}



def validate(cfg) -> None:
    """The checks a schema cannot express; raises ConfigError naming the value and what is allowed."""
    from sweeper.search.space import check as check_space

    s = cfg.search
    validate_run(cfg)
    space = check_space(cfg, validate_run)  # every bound of the space, set on a copy, passes validate_run too
    st, p = cfg.study, s.probe
    if p.trials and not (p.epochs > 0 and 1 <= p.keep <= p.trials and p.trials + p.keep <= st.n_trials):
        raise ConfigError(f"search.probe: trials={p.trials} epochs={p.epochs} keep={p.keep} with study.n_trials="
                          f"{st.n_trials}; allowed: epochs > 0, 1 <= keep <= trials, trials + keep <= n_trials "
                          "(or trials=0: off)")
    if p.trials and len(st.objectives) > 1:
        raise ConfigError(f"search.probe.trials={p.trials} with study.objectives={list(st.objectives)}: probes are "
                          "ranked by one objective; allowed: search.probe.trials=0, or one objective")
    if st.n_trials < 1:
        raise ConfigError(f"study.n_trials={st.n_trials}; need an integer >= 1")
    if st.progress_every < 1:
        raise ConfigError(f"study.progress_every={st.progress_every}; need an integer >= 1 (seconds)")
    if not 0 <= st.max_failed_fraction <= 1:
        raise ConfigError(f"study.max_failed_fraction={st.max_failed_fraction}; need 0..1")
    if st.heartbeat_interval < 1 or st.grace_period <= st.heartbeat_interval:
        raise ConfigError(
            f"study.heartbeat_interval={st.heartbeat_interval} grace_period={st.grace_period};"
            " need 1 <= heartbeat_interval < grace_period"
        )
    if st.storage_patience < 0:
        raise ConfigError(f"study.storage_patience={st.storage_patience}; need seconds >= 0")
    for key in ("budget_epochs", "budget_minutes"):
        if st.get(key) is not None and not st[key] > 0:
            raise ConfigError(f"study.{key}={st[key]}; allowed: null (no budget) or a number > 0")
    if cfg.train.evals_per_epoch < 1:
        raise ConfigError(f"train.evals_per_epoch={cfg.train.evals_per_epoch}; allowed: an integer >= 1")
    resource = cfg.pruner.get("min_resource")
    epochs = space.get("train.epochs", cfg.train.epochs)
    most = getattr(epochs, "high", max(getattr(epochs, "choices", [epochs])))
    if cfg.train.evals_per_epoch > 1 and isinstance(resource, int) and resource <= most:
        raise ConfigError(f"pruner.min_resource={resource} with train.evals_per_epoch={cfg.train.evals_per_epoch}: "
                          "steps are then training samples, not epochs; allowed: train.evals_per_epoch=1 (Optuna's "
                          "halving over epochs), or a number of training samples (about the training set's size / "
                          "evals_per_epoch) with pruner.max_resource=auto or samples, or pruner=asha (the default)")
    if cfg.train.checkpoint_minutes is not None and not cfg.train.checkpoint_minutes > 0:
        raise ConfigError(f"train.checkpoint_minutes={cfg.train.checkpoint_minutes}; allowed: minutes > 0, or null "
                          "(checkpoints at epoch ends only)")
    if cfg.train.eval_subset is not None and cfg.train.eval_subset < 1:
        raise ConfigError(f"train.eval_subset={cfg.train.eval_subset}; allowed: null (the whole split) or an "
                          "integer >= 1")
    validate_metrics(cfg.task, st)
    for key in ("max_train_samples", "max_eval_samples"):
        n = cfg.task[key]
        if n is not None and n < 1:
            raise ConfigError(f"task.{key}={n}; need null (all) or an integer >= 1")
    validate_verdict(cfg)
    if cfg.pruner.get("_target_") not in PRUNERS:
        raise ConfigError(f"pruner._target_={cfg.pruner.get('_target_')}; allowed: {sorted(PRUNERS)}")
    if cfg.sampler.get("_target_") not in SAMPLERS:
        raise ConfigError(f"sampler._target_={cfg.sampler.get('_target_')}; allowed: {sorted(SAMPLERS)}")
    if cfg.retrain.seeds < 1:
        raise ConfigError(f"retrain.seeds={cfg.retrain.seeds}; need an integer >= 1")
    if cfg.train.threads is not None and cfg.train.threads < 1:
        raise ConfigError(f"train.threads={cfg.train.threads}; need null (all cores, shared among local workers) "
                          "or an integer >= 1")
    worker = cfg.get("worker", 0)  # not in the schema: `+worker='range(4)'` adds it (docs/scaling.md)
    if not isinstance(worker, int) or isinstance(worker, bool) or worker < 0:
        raise ConfigError(f"worker={worker}; need an integer >= 0, e.g. -m +worker='range(4)'")
    if cfg.train.eval_batch_size < 1 or cfg.train.log_every < 1:
        raise ConfigError("train.eval_batch_size and train.log_every must be >= 1")


def validate_run(cfg) -> None:
    """What one training run takes (the study's config, and each trial's: sweeper/search/space.py)."""
    o, t, m = cfg.optimizer, cfg.train, cfg.model
    if not o.lr > 0:
        raise ConfigError(f"optimizer.lr={o.lr}; allowed: a learning rate > 0")
    if t.epochs < 1 or t.batch_size < 1:
        raise ConfigError(f"train.epochs={t.epochs} train.batch_size={t.batch_size}; allowed: integers >= 1")
    if not 0 <= o.warmup_ratio < 1:
        raise ConfigError(f"optimizer.warmup_ratio={o.warmup_ratio}; allowed: 0 <= warmup_ratio < 1")
    if not 0 < o.layer_decay <= 1:
        raise ConfigError(f"optimizer.layer_decay={o.layer_decay}; allowed: 0 < layer_decay <= 1 (1 = off)")
    if o.max_grad_norm is not None and not o.max_grad_norm > 0:
        raise ConfigError(f"optimizer.max_grad_norm={o.max_grad_norm}; allowed: null (no clipping) or a norm > 0")
    if m.reinit_layers < 0:
        raise ConfigError(f"model.reinit_layers={m.reinit_layers}; allowed: 0 (off) or a number of top layers")
    for key, p in m.dropout.items():
        if p is not None and not 0 <= p < 1:
            raise ConfigError(f"model.dropout.{key}={p}; allowed: null (the checkpoint's) or 0 <= p < 1")
    if t.keep_best:
        from sweeper.train.metrics import objectives

        names = objectives(cfg.task, cfg.study)
        if len(names) > 1 or names[0] not in cfg.task.metrics:
            raise ConfigError(f"train.keep_best=true with objectives {names}: the best epoch is the best of one "
                              "task metric; allowed: train.keep_best=false, or one objective of "
                              f"{list(cfg.task.metrics)}")


def validate_verdict(cfg) -> None:
    """A selection split of a size the training set can give, and a verdict only where the search never saw
    the data it scores on (sweeper/results/verdict.py)."""
    n, v = cfg.task.get("selection_size"), cfg.get("verdict")
    if n is not None and not (0 < n < 1 or (n >= 1 and n == int(n))):
        raise ConfigError(f"task.selection_size={n}; allowed: null (select on {cfg.task.eval_split}), a share "
                          "of the training set in (0, 1), or a count of training examples >= 1")
    if v is None or not v.top:
        return
    if v.top < 0 or v.seeds < 2 or not 0 <= v.share < 1 or not 0.5 <= v.confidence < 1 or v.max_seeds < v.seeds:
        raise ConfigError(f"verdict.top={v.top} seeds={v.seeds} share={v.share} confidence={v.confidence} "
                          f"max_seeds={v.max_seeds}; allowed: top >= 0 (0 = off), seeds >= 2 (the test needs the "
                          "seeds' spread), 0 <= share < 1, 0.5 <= confidence < 1, max_seeds >= seeds")
    if n is None:
        raise ConfigError(f"verdict.top={v.top} without a selection split: the verdict would score on "
                          f"{cfg.task.eval_split}, the split the search selected on; allowed: verdict.top=0, or "
                          "task.selection_size set (e.g. 0.2)")
    if len(cfg.study.objectives) > 1:
        raise ConfigError(f"verdict.top={v.top} with study.objectives={list(cfg.study.objectives)}: a Pareto "
                          "front has no top configurations; allowed: verdict.top=0, or one objective")


def validate_metrics(task, study) -> None:
    """Metrics exist and suit the task (regression or classes); objectives are among what a trial stores."""
    from sweeper.train.metrics import METRICS, REGRESSION, measured

    if task.num_labels < 1:
        raise ConfigError(f"task.num_labels={task.num_labels}; allowed: 1 (regression) or the number of classes")
    allowed = sorted(REGRESSION) if task.num_labels == 1 else sorted(set(METRICS) - REGRESSION)
    if task.num_labels > 2:
        allowed.remove("f1")  # GLUE's F1 is of the positive class: binary tasks only
    bad = [m for m in task.metrics if m not in allowed]
    if bad or not task.metrics:
        kind = "a regression (num_labels=1)" if task.num_labels == 1 else f"{task.num_labels} classes"
        raise ConfigError(f"task.metrics={list(task.metrics)}: {bad or 'empty'} not for {kind}; "
                          f"allowed: {', '.join(allowed)}")
    if task.objective not in task.metrics:
        raise ConfigError(
            f"task.objective={task.objective}; allowed: one of task.metrics {list(task.metrics)}"
        )
    known = measured(task)
    for name in study.objectives:
        if name not in known:
            raise ConfigError(f"study.objectives has {name}; allowed: {', '.join(known)}")
    if len(set(study.objectives)) != len(study.objectives):
        raise ConfigError(f"study.objectives={list(study.objectives)} names one twice; allowed: distinct names")
