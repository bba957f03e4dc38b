"""The search benchmark in compute units: what each way of choosing hyperparameters finds for the same training
compute, proven on data no search saw.

    python bench/compute.py [--tasks mrpc rte cola] [--arms course sweeper trainer ...]
    python bench/compute.py --report-only            # the tables and the targets, from the rows
    python bench/compute.py --backfill               # predictions for rows written before they were kept

Per task (all training examples, MiniLM): 20% of the training split is held out as the selection split every search
selects on; the validation split is scored only by the re-validation. Arms (ARMS), each given its budget in epochs
of the rest of the training split (evaluation counts a third of a training sample, as study.budget_epochs does):
- sweeper, sweeper-27: the real CLI with its defaults (a subprocess; its study resumes from bench/runs/<task>/...);
- wide-9, wide-27: the CLI with the wide space of conf/search/wide.yaml;
- probes: the CLI with search.probe on;
- trainer: Trainer.hyperparameter_search(backend="optuna") with its default space and sampler, one trial at a time
  until its trials trained the budget (its last trial may overshoot: the comparison then favours it);
- course: the course settings (lr 5e-5, 3 epochs, batch 8), no search; recipe: a published small-model recipe
  (10% warmup, 10 epochs, the best epoch kept), no search.
Every arm computes in --precision (fp32 by default: the same figures on any machine; rows of another precision are
compared only with each other). Each arm's pick is trained with --seeds on the same training examples and scored on
the validation split, its predictions there kept in --predictions (one file per task, configuration, precision and
seed) for the paired test of sweeper/results/significance.py. One row per (task, arm, precision, seed) is appended to
--out as it ends, and each search's pick to --out's -picks.csv as the search ends; a rerun skips rows there and trains
a recorded pick without searching again (and reuses a run of the same configuration, seed and precision another arm
or bench/knobs.py already paid for), so the benchmark runs across sessions, in the background, or on a GPU machine.
Prints per task each arm's mean +- std, its search compute, and the targets."""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PICK = ["task", "arm", "precision", "lr", "epochs", "batch_size", "search_epochs", "search_trials", "search_value",
        "config"]
FIELDS = [*PICK[:3], "seed", *PICK[3:], "run", "objective", "value", "kept_epoch", "train_size", "train_samples",
          "train_seconds"]
import rows as rows_file  # noqa: E402  (bench/rows.py)
from rows import read  # noqa: E402

COURSE = {"optimizer.lr": 5e-5, "train.epochs": 3, "train.batch_size": 8}
RECIPE = {**COURSE, "optimizer.warmup_ratio": 0.1, "train.epochs": 10, "train.keep_best": True}  # Mosbach et al.,
#   ELECTRA's RTE: warmup, longer training, the best epoch kept
# Arm -> (how it picks, its CLI overrides or fixed configuration, its budget in epochs).
ARMS = {
    "course": ("fixed", COURSE, 0),
    "sweeper": ("cli", [], 9),
    "trainer": ("trainer", [], 9),
    "probes": ("cli", ["search.probe.trials=8", "search.probe.keep=2"], 9),
    "recipe": ("fixed", RECIPE, 0),
    "sweeper-27": ("cli", [], 27),
    # The wide space's trials train up to 10 epochs, and MiniLM has mostly not left the constant prediction at 1/3
    # of an epoch on these tasks (bench/compute.py's probes arm): its first rung at 1 epoch (rungs 1, 3, 9).
    "wide-9": ("cli", ["search=wide", "pruner.min_epochs=1"], 9),
    "wide-27": ("cli", ["search=wide", "pruner.min_epochs=1"], 27),
}
SELECTION = 0.2
RUNS = ROOT / "bench" / "runs"
PREDICTIONS = ROOT / "bench" / "predictions"


def picks_file(out: Path) -> Path:
    """Where each finished search's pick is kept (beside --out), so its seeds can be trained in a later session
    even when the search's study (git-ignored, under --runs) is gone."""
    return out.with_name(f"{out.stem}-picks.csv")


def pick_values(row: dict) -> dict:
    """A pick's configuration {config key: value}: its `config` column, or (rows from before it) its three knobs."""
    if row.get("config"):
        return json.loads(row["config"])
    return {"optimizer.lr": float(row["lr"]), "train.epochs": int(row["epochs"]),
            "train.batch_size": int(row["batch_size"])}


def recorded_pick(out: Path, task: str, arm: str, precision: str) -> dict | None:
    row = next((r for r in read(picks_file(out))
                if (r["task"], r["arm"], r["precision"]) == (task, arm, precision)), None)
    return {k: row.get(k, "") for k in PICK[3:]} if row else None


def pick_row(values: dict, **search) -> dict:
    """A pick as picks.csv and the rows keep it: the three knobs in their columns, the whole configuration as JSON."""
    return {"lr": values.get("optimizer.lr", COURSE["optimizer.lr"]),
            "epochs": values.get("train.epochs", COURSE["train.epochs"]),
            "batch_size": values.get("train.batch_size", COURSE["train.batch_size"]),
            "config": json.dumps(values), **search}


def compose(task: str, glue: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweeper.config import CONF_DIR, register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[f"task={task}", f"data_dir={glue}", "train.progress=false",
                                                  f"out_dir={RUNS / task}", f"task.selection_size={SELECTION}",
                                                  *overrides])


def cli_arm(task: str, glue: str, budget: float, overrides: list[str], arm: str) -> dict:
    """Run (or resume) the CLI's study with the arm's overrides and budget; its pick is the study's best trial."""
    import optuna

    from sweeper.search import budget as spent
    from sweeper.search.space import trial_values

    out, name = (RUNS / task, f"bench-{task}") if arm == "sweeper" else (RUNS / task / arm, f"bench-{task}-{arm}")
    storage = f"sqlite:///{out}/sweeper.db"
    cmd = [sys.executable, "-m", "sweeper", f"task={task}", f"data_dir={glue}", f"out_dir={out}",
           f"task.selection_size={SELECTION}", f"study.budget_epochs={budget:g}", f"study.name={name}",
           f"study.storage={storage}", "verdict.top=0", "train.progress=false", "study.progress=log",
           f"hydra.run.dir={out}/hydra", *overrides]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sweeper.log").open("a") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
    study = optuna.load_study(study_name=name, storage=storage)
    best, train_size = study.best_trial, study.user_attrs["train_size"]
    return pick_row(trial_values(best), search_value=round(best.value, 4),
                    search_epochs=round(spent.spent(study).samples / train_size, 3),
                    search_trials=sum(t.state.is_finished() for t in study.trials))


def trainer_arm(task: str, glue: str, budget: float, objective) -> dict:
    """Trainer.hyperparameter_search, optuna backend, default space and sampler, selecting on the task's metric of
    the selection split; one trial per call on a stored study until the budget is trained."""
    import numpy as np
    import optuna
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from sweeper.search.budget import EVAL_WEIGHT
    from sweeper.train.metrics import compute_metrics
    from sweeper.train.model import fresh_model

    cfg, data = objective.cfg, objective.data
    metric, regression = cfg.task.objective, cfg.task.num_labels == 1
    storage, name = f"sqlite:///{RUNS / task}/trainer.db", f"trainer-{task}"
    n_train, n_select = len(data.train), len(data.eval)

    def epochs_spent() -> float:
        trials = optuna.load_study(study_name=name, storage=storage).trials if stored() else []
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        return sum(t.params["num_train_epochs"] * n_train + EVAL_WEIGHT * n_select for t in done) / n_train

    def stored() -> bool:
        return name in optuna.get_all_study_names(storage) if (RUNS / task / "trainer.db").exists() else False

    def metrics(p):
        predictions = p.predictions[:, 0] if regression else np.argmax(p.predictions, axis=-1)
        return compute_metrics(p.label_ids, predictions, list(cfg.task.metrics))

    args = TrainingArguments(output_dir=str(RUNS / task / "trainer"), eval_strategy="no", save_strategy="no",
                             report_to="none", logging_strategy="no", disable_tqdm=True,
                             bf16=objective.precision == "bf16",  # sweeper's precision: arms differ in search only
                             use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model_init=lambda trial=None: fresh_model(objective.template), args=args,
                      train_dataset=data.train, eval_dataset=data.eval, processing_class=data.tokenizer,
                      data_collator=DataCollatorWithPadding(data.tokenizer), compute_metrics=metrics)
    (RUNS / task).mkdir(parents=True, exist_ok=True)
    while epochs_spent() < budget:
        n = len(optuna.load_study(study_name=name, storage=storage).trials) if stored() else 0
        trainer.hyperparameter_search(direction="maximize", backend="optuna", n_trials=1,
                                      compute_objective=lambda m: m[f"eval_{metric}"], storage=storage,
                                      study_name=name, load_if_exists=True,
                                      sampler=optuna.samplers.TPESampler(seed=42 + n))  # its default sampler
    study = optuna.load_study(study_name=name, storage=storage)
    best = study.best_trial
    return pick_row({"optimizer.lr": best.params["learning_rate"], "train.epochs": best.params["num_train_epochs"],
                     "train.batch_size": best.params["per_device_train_batch_size"]},
                    search_value=round(best.value, 4), search_epochs=round(epochs_spent(), 3),
                    search_trials=len(study.trials))


# The keys a run of these benchmarks can set: a run's predictions are filed under their effective values, so one run
# serves every arm and variant that trains the same configuration (the course settings above all).
RUN_KEYS = ["optimizer.lr", "train.epochs", "train.batch_size", "optimizer.schedule", "optimizer.warmup_ratio",
            "optimizer.layer_decay", "optimizer.max_grad_norm", "optimizer.optimizer.weight_decay", "train.keep_best",
            "model.pooling", "model.reinit_layers", "model.dropout.hidden", "model.dropout.attention",
            "model.dropout.classifier"]


def config_id(cfg, values: dict) -> str:
    """A configuration's name for its predictions' file: a digest of its effective values."""
    import zlib

    from sweeper.results.verdict import effective, run_key

    full = effective(cfg, values, sorted({*RUN_KEYS, *values}))
    return f"{zlib.crc32(run_key(full, 0).encode()):08x}"


def predictions_file(root: Path, task: str, cfg, values: dict, precision: str, seed: int) -> Path:
    return root / f"{task}-{precision}-seed{seed}-{config_id(cfg, values)}.txt"


def revalidate(objective, values: dict, seed: int, predictions: Path | None = None) -> dict:
    """`values` ({config key: value}, over the course settings' defaults) trained with `seed` on the search's
    training examples, scored on the validation split; its predictions there written to `predictions`."""
    from sweeper.data.dataset import scored_on_unseen
    from sweeper.results.predict import predict
    from sweeper.search import space
    from sweeper.study.objective import hparams
    from sweeper.train.loop import kept

    data, cfg, trained = objective.data, objective.cfg, {}
    run_cfg = space.apply(cfg, values)
    hp, unseen = hparams(run_cfg), data.unseen[0]
    view, prefix = scored_on_unseen(data, hp.keep_best is not None)  # the kept epoch picked on the selection split
    history = objective.fit(run_cfg, seed, on_epoch_end=lambda epoch, metrics: None, data=view,
                            on_train_end=lambda model: trained.update(model=model))
    final = kept(history, hp)
    if predictions is not None:
        predictions.parent.mkdir(parents=True, exist_ok=True)
        labels = predictions.parent / f"{cfg.task.name}-labels.txt"
        if not labels.exists():
            labels.write_text(" ".join(str(y) for y in unseen["labels"]) + "\n")
        ids = predict(trained.pop("model"), unseen, data.tokenizer, cfg.train.eval_batch_size)
        predictions.write_text(" ".join(str(x) for x in ids.tolist()) + "\n")
    trained.clear()
    objective.release()
    name = cfg.task.objective
    return {"objective": name, "value": round(final[prefix + name], 4), "kept_epoch": final["epoch"],
            "train_size": len(data.train), "train_samples": int(history[-1]["train_samples"]),
            "train_seconds": round(sum(h["train_seconds"] for h in history), 1)}


def read_predictions(path: Path) -> list[int] | None:
    return [int(x) for x in path.read_text().split()] if path.exists() else None


def has_row(rows: list[dict], task: str, arm: str, precision: str, seed: int) -> bool:
    """Whether (task, arm, precision, seed) has its row."""
    return any((r["task"], r["arm"], r["precision"], int(r["seed"])) == (task, arm, precision, seed) for r in rows)


def same_run(rows: list[dict], task: str, precision: str, run: str, seed: int) -> dict | None:
    return next((r for r in rows if (r["task"], r["precision"], r.get("run"), int(r["seed"])) == (task, precision, run,
                                                                                                    seed)), None)


def run(args) -> None:
    from sweeper.study.objective import Objective

    glue = os.environ.get("GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))

    @functools.cache
    def objective(task: str) -> Objective:
        """The task's data tokenized and weights read once, for every arm, when an arm first trains in-process."""
        return Objective(compose(task, glue, args.override), RUNS / task / "objective")

    @functools.cache
    def config(task: str):
        return compose(task, glue, args.override)

    for task in args.tasks:
        for arm in args.arms:
            rows = read(args.out)
            todo = [s for s in args.seeds if not has_row(rows, task, arm, args.precision, s)]
            if not todo:
                continue
            pick = recorded_pick(args.out, task, arm, args.precision)
            if pick is None:
                kind, setting, budget = ARMS[arm]
                budget = args.budget_epochs or budget
                if kind == "cli":
                    pick = cli_arm(task, glue, budget, [*args.override, *setting], arm)
                elif kind == "trainer":
                    pick = trainer_arm(task, glue, budget, objective(task))
                else:
                    pick = pick_row(setting, search_value="", search_epochs=0, search_trials=0)
                rows_file.append(picks_file(args.out), PICK, {"task": task, "arm": arm, "precision": args.precision,
                                                               **pick})
            values = pick_values(pick)
            run_id = config_id(config(task), values)
            for seed in todo:
                rows = read(args.out)
                if has_row(rows, task, arm, args.precision, seed):  # a lane beside this one wrote it meanwhile
                    continue
                known = (same_run(rows, task, args.precision, run_id, seed)  # another arm's, or a screen's
                         or same_run(read(args.out.with_name("knobs.csv")), task, args.precision, run_id, seed))
                result = ({k: known[k] for k in ("objective", "value", "kept_epoch", "train_size", "train_samples",
                                                 "train_seconds")} if known
                          else revalidate(objective(task), values, seed,
                                          predictions_file(args.predictions, task, config(task), values,
                                                           args.precision, seed)))
                row = {"task": task, "arm": arm, "precision": args.precision, "seed": seed, **pick, "run": run_id,
                       **result}
                rows_file.append(args.out, FIELDS, row)
                print({k: row[k] for k in ("task", "arm", "seed", "lr", "epochs", "batch_size", "value",
                                           "search_epochs")}, flush=True)


def backfill(args) -> None:
    """Rows from before predictions were kept: their configuration trained again with their seed, its predictions
    written and its `run` filled in (the row's value stays; a differing retrained value is printed)."""
    from sweeper.study.objective import Objective

    glue = os.environ.get("GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))
    for task in args.tasks:
        cfg, objective = compose(task, glue, args.override), None
        for r in read(args.out):
            if r["task"] != task or r["precision"] != args.precision or r["arm"] not in args.arms:
                continue
            key = (r["task"], r["arm"], r["precision"], r["seed"])
            run = r.get("run") or config_id(cfg, pick_values(r))
            target = args.predictions / f"{task}-{r['precision']}-seed{r['seed']}-{run}.txt"
            if not target.exists():
                objective = objective or Objective(cfg, RUNS / task / "objective")
                again = revalidate(objective, pick_values(r), int(r["seed"]), target)
                print(f"{task} {r['arm']} seed {r['seed']}: row {r['value']}, retrained {again['value']}", flush=True)

            def fill(rows, key=key, run=run):  # the rows there now: another lane may have appended
                for row in rows:
                    if (row["task"], row["arm"], row["precision"], row["seed"]) == key:
                        row["run"] = run
                return rows

            rows_file.update(args.out, FIELDS, fill)  # after each run: a stopped backfill keeps what it did


# The protocol's seeds (42-44). Seeds added to a comparison after its first look at them (as the verdict adds seeds
# for its two finalists, up to verdict.max_seeds) are a second look at the same question: both share the level.
FIRST_LOOK = 3


def versus(a: list[dict], b: list[dict], root: Path, k: int = 1, confidence: float = 0.95):
    """The test of rows `a` against rows `b` (one configuration each, one task and precision), paired over the
    validation examples through their kept predictions, on a's seeds where b has them all. Two rules need no
    predictions: the same configuration with the same seeds is the same runs (b's are used for a), and a mean at or
    below b's is never better (a one-sided test cannot call it so: its p is left NaN). None where a test is needed
    and predictions are missing."""
    from sweeper.results import significance
    from sweeper.train.metrics import direction

    task, precision, metric = a[0]["task"], a[0]["precision"], a[0]["objective"]
    seeds = {r["seed"] for r in a}
    if seeds <= {r["seed"] for r in b}:  # against b on the same seeds (b may have more: another arm's look)
        b = [r for r in b if r["seed"] in seeds]
    if same_configuration(a[0], b[0]) and seeds == {r["seed"] for r in b}:
        a = b
    looks = 2 if max(len(a), len(b)) > FIRST_LOOK else 1
    labels = read_predictions(root / f"{task}-labels.txt")

    def predictions(rows):
        return [read_predictions(root / f"{task}-{precision}-seed{r['seed']}-{r.get('run')}.txt") for r in rows]

    va, vb = [float(r["value"]) for r in a], [float(r["value"]) for r in b]
    pa, pb = predictions(a), predictions(b)
    if labels is None or any(p is None for p in pa + pb):
        sign = 1 if direction(metric) == "maximize" else -1
        difference = sign * (statistics.fmean(va) - statistics.fmean(vb))
        if difference > 0:
            return None
        return significance.Comparison(difference, -math.inf, math.nan, (1 - confidence) / (k * looks), math.nan,
                                       math.nan)
    return significance.compare(metric, va, vb, significance.example_variance(metric, labels, pa, pb), k, confidence,
                                looks)


def same_configuration(a: dict, b: dict) -> bool:
    """Whether two rows trained the same configuration: the same run digest, or (rows from before digests, which
    record their pick: bench/compute.py's) the same effective values."""
    if a.get("run") and b.get("run"):
        return a["run"] == b["run"]
    picks = all(r.get("config") or r.get("lr") for r in (a, b))
    return picks and effective_equal(pick_values(a), pick_values(b))


def shown(test, digits: int = 4) -> str:
    """A test's outcome in a table cell: the difference and its p, or why there is none."""
    if test is None:
        return "(no predictions: --backfill)"
    if math.isnan(test.p):
        return f"{test.difference:+.{digits}f} (not above: not better)"
    return f"{test.difference:+.{digits}f} (p={test.p:.3f}{', better' if test.better else ''})"


def effective_equal(a: dict, b: dict) -> bool:
    """Whether two configurations set the same values (a key one leaves out: the course settings' default)."""
    defaults = {**COURSE, "optimizer.schedule": "linear", "optimizer.warmup_ratio": 0.0, "optimizer.layer_decay": 1.0,
                "optimizer.max_grad_norm": None, "train.keep_best": False, "model.pooling": "cls",
                "model.reinit_layers": 0}
    return {**defaults, **a} == {**defaults, **b}


def target_lines(rows: list[dict], tasks: list[str], root: Path = PREDICTIONS) -> list[str]:
    """Per search arm: on how many tasks its pick beats the course settings at 95% (the verdict's test, paired over
    the validation examples), and whether it is at least as good as every other arm."""
    lines = []
    for arm in [a for a in ARMS if a != "course"]:
        won, tried = [], []
        for task in tasks:
            mine = [r for r in rows if (r["task"], r["arm"]) == (task, arm)]
            course = [r for r in rows if (r["task"], r["arm"], r["precision"]) == (task, "course",
                                                                                mine[0]["precision"] if mine else "")]
            if not mine or not course:
                continue
            tried.append(task)
            test = versus(mine, course, root)
            if test is not None and test.better:
                won.append(task)
        if tried:
            lines.append(f"{arm}: beats the course settings at 95% (seeds and validation examples, one-sided) on "
                         f"{len(won)} of {len(tried)} tasks{': ' + ', '.join(won) if won else ''}")
    return lines


def report(rows: list[dict], tasks: list[str], root: Path = PREDICTIONS) -> None:
    """Per task: each arm's re-validated mean +- std, search compute and pick, and the test against the course
    settings (one-sided, 95%, paired over the validation examples); then the targets."""
    print("| task | arm | pick | search compute (epochs) | trials | re-validated mean +- std | vs course (p) |")
    print("|---|---|---|---|---|---|---|")
    for task, precision in dict.fromkeys((r["task"], r["precision"]) for r in rows if r["task"] in tasks):
        arms = {}
        for r in rows:
            if (r["task"], r["precision"]) == (task, precision):
                arms.setdefault(r["arm"], []).append(r)
        course = arms.get("course")
        for arm, rs in arms.items():
            values = [float(r["value"]) for r in rs]
            m, s = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            test = versus(rs, course, root) if course and arm != "course" else None
            cell = "" if arm == "course" else shown(test)
            pick = ", ".join(f"{k.split('.')[-1]} {v:.2g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                             for k, v in pick_values(rs[0]).items())
            print(f"| {task} ({precision}) | {arm} | {pick} | {float(rs[0]['search_epochs']):.2f} | "
                  f"{rs[0]['search_trials']} | {m:.4f} +- {s:.4f} ({len(values)} seeds, {rs[0]['objective']}) | "
                  f"{cell} |")
    for line in target_lines(rows, tasks, root):
        print(line)


def main() -> None:
    global RUNS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["mrpc", "rte", "cola"])
    p.add_argument("--arms", nargs="+", default=["course", "sweeper", "trainer"], choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--budget-epochs", type=float, default=None, help="every search arm's budget (default: ARMS')")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "compute.csv")
    p.add_argument("--predictions", type=Path, default=PREDICTIONS)
    p.add_argument("--runs", type=Path, default=RUNS, help="the arms' studies and logs (resumed from there)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="every arm's arithmetic (train.precision); rows of one precision are compared with each other "
                        "only. fp32, the default, computes the same on any machine; bf16 is faster where the CPU "
                        "or GPU has it")
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every arm (tests: model=tiny)")
    p.add_argument("--report-only", action="store_true", help="print the table of the rows there, train nothing")
    p.add_argument("--backfill", action="store_true", help="train again the rows of --arms that have no predictions")
    args = p.parse_args()
    RUNS = args.runs
    args.override = [f"train.precision={'no' if args.precision == 'fp32' else args.precision}", *args.override]
    if args.backfill:
        backfill(args)
    elif not args.report_only:
        run(args)
    report(read(args.out), args.tasks, args.predictions)


if __name__ == "__main__":
    main()
