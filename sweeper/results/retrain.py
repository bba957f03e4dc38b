"""mode=retrain: a study's best parameters trained again with retrain.seeds seeds, on the same data and
template through the same loop; mean and spread of the objective next to the trial's value, the best
seed's model exported, and its predictions for the task's test split in GLUE's submission format."""
from __future__ import annotations

import logging
import statistics
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from sweeper.errors import ConfigError
from sweeper.results.report import replace_whole
from sweeper.study.patience import shown
from sweeper.study.storage import open_storage, sqlite_path

log = logging.getLogger(__name__)


def find_study(cfg) -> optuna.Study:
    """The study to retrain, or a ConfigError naming it and the studies the storage holds. Reads only."""
    name, url = cfg.study.name, cfg.study.storage
    path = sqlite_path(url)
    if path is not None and not path.exists():  # opening it would create an empty database
        raise ConfigError(f"study.name={name}: study.storage={url} does not exist; allowed: the storage "  # a file
                          "of a sweep that ran, e.g. the default sqlite:///outputs/sweeper.db")
    storage = open_storage(cfg.study)
    studies = {s.study_name: s for s in storage.get_all_studies()}
    if name not in studies:
        raise ConfigError(f"study.name={name} is not in {shown(url)}; studies there: "
                          f"{', '.join(sorted(studies)) or 'none'}")
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        states = ", ".join(f"{n} {'failed' if s == TrialState.FAIL else s.name.lower()}"
                           for s, n in counts.items() if n) or "no trials"
        raise ConfigError(f"study.name={name} has no complete trial to retrain ({states}); run its sweep first: "
                          f"python -m sweeper task={cfg.task.name} model={cfg.model.name}")
    return study


def run_retrain(cfg) -> float:
    """Retrain the best trial's parameters with seeds seed, seed+1, ...; returns the objective's mean."""
    from transformers import AutoModelForSequenceClassification

    from sweeper.search import space
    from sweeper.study.objective import Objective, hparams, shown
    from sweeper.train.export import export
    from sweeper.train.loop import kept
    from sweeper.train.metrics import improves

    study = find_study(cfg)
    best, objective_name = study.best_trial, cfg.task.objective
    run_cfg = space.apply(cfg, space.trial_values(best))  # the trial's whole configuration, any space
    hp = hparams(run_cfg)
    study_dir = Path(cfg.out_dir) / cfg.study.name
    out = study_dir / "retrain"
    objective = Objective(cfg, study_dir)  # data tokenized and weights read once, for every seed
    rows, labels, trained = [], objective.data.label_names, {}  # names of labels given as names too
    for seed in range(cfg.seed, cfg.seed + cfg.retrain.seeds):
        log.info("retrain %s, trial %d's configuration, seed %d: %s", cfg.study.name, best.number, seed,
                 shown(space.trial_values(best)))
        history = objective.fit(run_cfg, seed, on_epoch_end=lambda epoch, metrics: None,
                                on_train_end=lambda model: trained.update(model=model))
        final = kept(history, hp)  # train.keep_best: the best epoch's
        row = {"seed": seed, **{m: final[m] for m in cfg.task.metrics},
               "train_seconds": sum(h["train_seconds"] for h in history),
               "train_samples": history[-1].get("train_samples", 0)}  # what this seed trained, for the compute spent
        if not rows or all(improves(objective_name, row[objective_name], r[objective_name]) for r in rows):
            export(trained["model"], objective.data.tokenizer, labels, out / "best-model",
                   {"study": cfg.study.name, "trial": best.number, "seed": seed, "value": row[objective_name]})
        rows.append(row)
        trained.clear()
        objective.release()
    values = [r[objective_name] for r in rows]
    result = {"trial": best.number, "trial_value": best.value, "seeds": [r["seed"] for r in rows], "values": values,
              "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
              "train_samples": sum(r["train_samples"] for r in rows),  # the compute spent (sweeper/search/budget.py)
              "best_model": str((out / "best-model").resolve())}
    # What a user loads (the code a mean-pooled model carries is sweeper's own: trusted).
    model = AutoModelForSequenceClassification.from_pretrained(out / "best-model", trust_remote_code=True)
    result["predictions"] = str(write_predictions(cfg, model, objective.data.tokenizer, out).resolve())
    replace_whole(study_dir / "retrain.csv", lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    study.set_user_attr("retrain", result)
    print(f"retrain {cfg.study.name}: trial {best.number} had {objective_name}={best.value:.4f}; over "
          f"{len(values)} seeds {result['mean']:.4f} +- {result['std']:.4f} ({', '.join(f'{v:.4f}' for v in values)})\n"
          f"  best seed's model: {out / 'best-model'}\n  test predictions: {result['predictions']}\n"
          f"  per seed: {study_dir / 'retrain.csv'}", flush=True)
    return result["mean"]


def write_predictions(cfg, model, tokenizer, out: Path) -> Path:
    """The test split's predictions as GLUE's submission TSV: `index` and `prediction` (label names)."""
    from sweeper.data.dataset import load_test_split, tokenize
    from sweeper.results.predict import predict

    raw = load_test_split(cfg.task, cfg.data_dir)
    task, regression = cfg.task, cfg.task.num_labels == 1
    ids = predict(model, tokenize(raw, tokenizer, task.text_columns, task.max_length, task.label_column, regression),
                  tokenizer, cfg.train.eval_batch_size)
    id2label = model.config.id2label  # the exported model's names: task.label_names or the data's (labels.py)
    predictions = [round(float(v), 3) for v in ids] if regression else [id2label[int(i)] for i in ids]
    table = pd.DataFrame({"index": raw["idx"], "prediction": predictions})
    return replace_whole(out / task.submission_file, lambda tmp: table.to_csv(tmp, sep="\t", index=False))
