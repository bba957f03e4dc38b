"""The search benchmark in compute units: what each way of choosing hyperparameters finds for the same training
compute, proven on data no search saw.

    python bench/compute.py [--tasks mrpc rte cola] [--arms sweeper trainer course] [--budget-epochs 9]
    python bench/compute.py --tasks mrpc --arms probes    # a candidate default (VARIANTS), beside the others

Per task (all training examples, MiniLM): 20% of the training split is held out as the selection split every search
selects on; the validation split is scored only by the re-validation. Arms, each given --budget-epochs epochs of
the rest of the training split (evaluation counts a third of a training sample, as study.budget_epochs does):
- sweeper: the real CLI with its defaults (a subprocess; its study resumes from bench/runs/<task>/sweeper.db);
- trainer: Trainer.hyperparameter_search(backend="optuna") with its default space and sampler, one trial at a time
  until its trials trained the same budget (its last trial may overshoot: the comparison then favours it);
- course:  the course settings (lr 5e-5, 3 epochs, batch 8), no search.
Every arm computes in --precision (fp32 by default: the same figures on any machine; rows of another precision
are compared only with each other). Each arm's pick is trained with --seeds on the same training examples and
scored on the validation split. One row per (task, arm, precision, seed) is appended
to --out as it ends, and each search's pick to --out's -picks.csv as the search ends; a rerun skips rows there and
trains a recorded pick without searching again (and reuses a run of the same configuration, seed and precision
another arm already paid for), so the benchmark runs across sessions, in the background, or on a GPU machine.
Prints per task each arm's mean +- std, its search compute, and the targets of issue #18."""
from __future__ import annotations

import argparse
import functools
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

PICK = ["task", "arm", "precision", "lr", "epochs", "batch_size", "search_epochs", "search_trials", "search_value"]
FIELDS = [*PICK[:3], "seed", *PICK[3:], "objective", "value", "train_size", "train_seconds"]
import rows as rows_file  # noqa: E402  (bench/rows.py)
from rows import read  # noqa: E402

COURSE = {"lr": 5e-5, "epochs": 3, "batch_size": 8}
# Candidates for sweeper's defaults, measured beside them: the CLI with these overrides (outside the targets).
VARIANTS = {"probes": ["search.probe.trials=8", "search.probe.keep=2"]}
SELECTION = 0.2
RUNS = ROOT / "bench" / "runs"


def append(out: Path, row: dict) -> None:
    rows_file.append(out, FIELDS, row)
    print({k: row[k] for k in ("task", "arm", "seed", "lr", "epochs", "batch_size", "value", "search_epochs")},
          flush=True)


def picks_file(out: Path) -> Path:
    """Where each finished search's pick is kept (beside --out), so its seeds can be trained in a later session
    even when the search's study (git-ignored, under --runs) is gone."""
    return out.with_name(f"{out.stem}-picks.csv")


def recorded_pick(out: Path, task: str, arm: str, precision: str) -> dict | None:
    row = next((r for r in read(picks_file(out))
                if (r["task"], r["arm"], r["precision"]) == (task, arm, precision)), None)
    return {k: row[k] for k in PICK[3:]} if row else None


def compose(task: str, glue: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sweeper.config import CONF_DIR, register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[f"task={task}", f"data_dir={glue}", "train.progress=false",
                                                  f"out_dir={RUNS / task}", f"task.selection_size={SELECTION}",
                                                  *overrides])


def sweeper_arm(task: str, glue: str, budget: float, overrides: list[str], arm: str = "sweeper") -> dict:
    """Run (or resume) the CLI's study with its defaults (and a variant's overrides) and the budget; its pick is
    the study's best trial."""
    import optuna

    from sweeper.study import budget as spent

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
    return {**{k: best.params[k] for k in COURSE}, "search_value": round(best.value, 4),
            "search_epochs": round(spent.spent(study).samples / train_size, 3),
            "search_trials": sum(t.state.is_finished() for t in study.trials)}


def trainer_arm(task: str, glue: str, budget: float, objective) -> dict:
    """Trainer.hyperparameter_search, optuna backend, default space and sampler, selecting on the task's metric of
    the selection split; one trial per call on a stored study until the budget is trained."""
    import numpy as np
    import optuna
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from sweeper.study.budget import EVAL_WEIGHT
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
    return {"lr": best.params["learning_rate"], "epochs": best.params["num_train_epochs"],
            "batch_size": best.params["per_device_train_batch_size"], "search_value": round(best.value, 4),
            "search_epochs": round(epochs_spent(), 3), "search_trials": len(study.trials)}


def revalidate(objective, pick: dict, seed: int) -> dict:
    """The pick trained with `seed` on the search's training examples, scored on the validation split."""
    from sweeper.train.loop import Hparams

    data = objective.data
    view = type(data)(**{**data.__dict__, "eval": data.unseen[0], "eval_lengths": data.unseen[1]})
    history = objective.fit(Hparams(lr=float(pick["lr"]), epochs=int(pick["epochs"]),
                                    batch_size=int(pick["batch_size"])), seed,
                            on_epoch_end=lambda epoch, metrics: None, data=view)
    objective.release()
    name = objective.cfg.task.objective
    return {"objective": name, "value": round(history[-1][name], 4), "train_size": len(data.train),
            "train_seconds": round(sum(h["train_seconds"] for h in history), 1)}


def same_run(rows: list[dict], task: str, precision: str, pick: dict, seed: int) -> dict | None:
    for r in rows:
        if ((r["task"], r["precision"], int(r["seed"])) == (task, precision, seed)
                and math.isclose(float(r["lr"]), float(pick["lr"]))
                and (int(r["epochs"]), int(r["batch_size"])) == (int(pick["epochs"]), int(pick["batch_size"]))):
            return r
    return None


def run(args) -> None:
    from sweeper.study.objective import Objective

    glue = os.environ.get("GLUE_DIR", str(ROOT.parent / "shared" / "data" / "glue"))

    @functools.cache
    def objective(task: str) -> Objective:
        """The task's data tokenized and weights read once, for every arm, when an arm first trains in-process."""
        return Objective(compose(task, glue, args.override), RUNS / task / "objective")

    for task in args.tasks:
        for arm in args.arms:
            rows = read(args.out)
            todo = [s for s in args.seeds if not any((r["task"], r["arm"], r["precision"], int(r["seed"]))
                                                     == (task, arm, args.precision, s) for r in rows)]
            if not todo:
                continue
            pick = recorded_pick(args.out, task, arm, args.precision)
            if pick is None:
                if arm == "sweeper" or arm in VARIANTS:
                    pick = sweeper_arm(task, glue, args.budget_epochs, [*args.override, *VARIANTS.get(arm, [])], arm)
                elif arm == "trainer":
                    pick = trainer_arm(task, glue, args.budget_epochs, objective(task))
                else:
                    pick = {**COURSE, "search_value": "", "search_epochs": 0, "search_trials": 0}
                rows_file.append(picks_file(args.out), PICK,
                                 {"task": task, "arm": arm, "precision": args.precision, **pick})
            for seed in todo:
                known = same_run(read(args.out), task, args.precision, pick, seed)
                result = ({k: known[k] for k in ("objective", "value", "train_size", "train_seconds")} if known
                          else revalidate(objective(task), pick, seed))
                append(args.out, {"task": task, "arm": arm, "precision": args.precision, "seed": seed, **pick,
                                  **result})


def pooled(a: tuple, b: tuple) -> float:
    """The pooled standard deviation of two arms' (mean, std, n)."""
    return math.sqrt((a[1] ** 2 + b[1] ** 2) / 2)


def report(rows: list[dict], tasks: list[str]) -> None:
    """Per task: each arm's re-validated mean +- std, search compute and pick; then the targets."""
    print("| task | arm | pick (lr, epochs, batch) | search compute (epochs) | trials | re-validated mean +- std |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    for task, precision in dict.fromkeys((r["task"], r["precision"]) for r in rows if r["task"] in tasks):
        arms = {}
        for r in rows:
            if (r["task"], r["precision"]) == (task, precision):
                arms.setdefault(r["arm"], []).append(r)
        for arm, rs in arms.items():
            values = [float(r["value"]) for r in rs]
            m, s = statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
            r0 = rs[0]
            print(f"| {task} ({precision}) | {arm} | {float(r0['lr']):.2g}, {r0['epochs']}, {r0['batch_size']} | "
                  f"{float(r0['search_epochs']):.2f} | {r0['search_trials']} | {m:.4f} +- {s:.4f} "
                  f"({len(values)} seeds, {r0['objective']}) |")
            arms[arm] = (m, s, len(values))
        if "sweeper" in arms:
            me = arms["sweeper"]
            others = {a: v for a, v in arms.items() if a != "sweeper" and a not in VARIANTS}
            best_of_all = all(me[0] >= v[0] for v in others.values())
            course = arms.get("course")
            beyond = course and me[0] - course[0] > pooled(me, course)
            verdicts.append((f"{task} ({precision})", best_of_all, bool(beyond)))
            for variant in VARIANTS.keys() & arms.keys():
                v = arms[variant]
                print(f"{task} ({precision}): {variant} ({' '.join(VARIANTS[variant])}) against sweeper's defaults: "
                      f"{v[0] - me[0]:+.4f} (pooled std {pooled(me, v):.4f})")
    for task, best_of_all, beyond in verdicts:
        print(f"{task}: sweeper's pick at least as good as every other arm: {'met' if best_of_all else 'NOT met'}; "
              f"beats the course settings by more than the pooled std: {'yes' if beyond else 'no'}")
    if verdicts:
        n = sum(b for _, _, b in verdicts)
        print(f"target: beyond the pooled std on >= 2 of 3 tasks: {n} of {len(verdicts)} "
              f"({'met' if n >= 2 else 'not met'})")


def main() -> None:
    global RUNS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["mrpc", "rte", "cola"])
    p.add_argument("--arms", nargs="+", default=["course", "sweeper", "trainer"],
                   choices=["course", "sweeper", "trainer", *VARIANTS],
                   help=f"variants of sweeper's defaults, measured beside them: {VARIANTS}")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--budget-epochs", type=float, default=9.0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "compute.csv")
    p.add_argument("--runs", type=Path, default=RUNS, help="the arms' studies and logs (resumed from there)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="every arm's arithmetic (train.precision); rows of one precision are compared with each other "
                        "only. fp32, the default, computes the same on any machine; bf16 is faster where the CPU "
                        "or GPU has it")
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every arm (tests: model=tiny)")
    p.add_argument("--report-only", action="store_true", help="print the table of the rows there, train nothing")
    args = p.parse_args()
    RUNS = args.runs
    args.override = [f"train.precision={'no' if args.precision == 'fp32' else args.precision}", *args.override]
    if not args.report_only:
        run(args)
    report(read(args.out), args.tasks)


if __name__ == "__main__":
    main()
