"""A trained classifier -> a directory that `from_pretrained` and `pipeline` load: safetensors weights,
the tokenizer, the task's label names, and a marker saying which run it came from and how good it was (a
mean-pooled model also its code: load it with trust_remote_code=True)."""
from __future__ import annotations

import fcntl
import json
import operator
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from sweeper.train import disk, pooling

CODE = "modeling_sweeper"  # a mean-pooled model's code, saved beside its weights
MARKER = "sweeper.json"  # {"value": ..., "trial" or "seed": ...}; written before the rename, so present


def read_marker(target: Path) -> dict | None:
    try:
        return json.loads((Path(target) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def label_maps(label_names: list[str], num_labels: int) -> tuple[dict, dict]:
    names = list(label_names) or [f"LABEL_{i}" for i in range(num_labels)]
    return dict(enumerate(names)), {n: i for i, n in enumerate(names)}


def write_model(model, tokenizer, label_names: list[str], directory: Path, record: dict) -> None:
    """save_pretrained (safetensors) of model and tokenizer, labels named, marker last."""
    id2label, label2id = label_maps(label_names, model.config.num_labels)
    model.config.id2label, model.config.label2id = id2label, label2id
    # The loop may run a faster attention registered only in this process (fastpath.py); a loader
    # elsewhere must get the library's own, so save with the default and restore ours after.
    attention = model.config._attn_implementation
    try:
        model.config._attn_implementation = None
        model.save_pretrained(directory, safe_serialization=True)
    finally:
        model.config._attn_implementation = attention
    if isinstance(model, pooling.MeanPoolBertForSequenceClassification):
        with_its_code(directory)
    tokenizer.save_pretrained(directory)
    (directory / MARKER).write_text(json.dumps(record))


def with_its_code(directory: Path) -> None:
    """A mean-pooled model (model.pooling=mean) is no class of transformers': its code goes with it, and config.json
    names it, so `from_pretrained(directory, trust_remote_code=True)` and `pipeline(...)` load it anywhere."""
    shutil.copy(pooling.__file__, directory / f"{CODE}.py")
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": f"{CODE}.MeanPoolBertConfig",
                          "AutoModelForSequenceClassification": f"{CODE}.MeanPoolBertForSequenceClassification"}
    (directory / "config.json").write_text(json.dumps(config, indent=2))


def export(model, tokenizer, label_names: list[str], target: Path, record: dict,
           replace: Callable[[], bool] = lambda: True) -> bool:
    """Write the model beside `target`, then, under a lock and if `replace()` still says so, rename it
    into place: readers never see a half-written model, and concurrent workers on one file system
    decide one at a time. A full file system (checked first, and during the write) raises DiskFull.
    Returns whether it replaced `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with disk.writing(target.parent, disk.model_bytes(model), "the best model"):
            write_model(model, tokenizer, label_names, fresh, record)
        with open(target.with_name(f"{target.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not replace():
                return False
            old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
            if target.exists():
                os.rename(target, old)
            os.rename(fresh, target)
            shutil.rmtree(old, ignore_errors=True)
        return True
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def export_if_better(model, tokenizer, label_names: list[str], target: Path, record: dict,
                     is_current: Callable[[dict], bool] = lambda marker: True,
                     improves: Callable[[float, float], bool] = operator.gt) -> bool:
    """Export if record["value"] beats the marker at `target` (`improves(new, old)`: the objective's
    direction). A marker for which `is_current` is false (e.g. naming a trial the study does not hold as
    complete) counts as none."""
    def better() -> bool:
        marker = read_marker(target)
        return marker is None or not is_current(marker) or improves(record["value"], marker["value"])

    # Checked before writing too: most trials are not the best, and writing costs a second or more.
    return better() and export(model, tokenizer, label_names, target, record, replace=better)
