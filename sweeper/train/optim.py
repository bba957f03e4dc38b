"""A trial's optimizer and schedule: AdamW over parameter groups (one learning rate per layer with layer-wise decay)
and the learning rate's shape over the steps (warmup, then linear or cosine decay, or constant)."""
from __future__ import annotations

import math
import re

import torch

SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}  # ours -> transformers'
_LAYER = re.compile(r"\.layers?\.(\d+)\.")  # encoder.layer.3. (BERT, RoBERTa, ELECTRA), transformer.layer.3.


def depth(name: str, n_layers: int) -> int:
    """A parameter's place from the input: embeddings 0, layer i at i + 1, the rest (pooler, head) n_layers + 1."""
    if (m := _LAYER.search(name)) is not None:
        return int(m.group(1)) + 1
    return 0 if "embeddings" in name else n_layers + 1


def parameter_groups(model: torch.nn.Module, lr: float, layer_decay: float) -> list[dict]:
    """One group per depth; depth d of L layers gets lr * layer_decay ** (L + 1 - d), so the head trains at lr and
    each layer below at layer_decay times the one above (ELECTRA: 0.8; Sun et al. 2019: 0.95). 1.0 = one lr."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_decay == 1.0:
        return [{"params": [p for _, p in named], "lr": lr}]
    layers = {int(m.group(1)) for n, _ in named if (m := _LAYER.search(n))}
    if not layers:
        raise ValueError(f"optimizer.layer_decay={layer_decay}: no numbered layers in {type(model).__name__}'s "
                         "parameter names; allowed: 1.0 for this model")
    n_layers = max(layers) + 1
    groups: dict[int, list] = {}
    for name, p in named:
        groups.setdefault(depth(name, n_layers), []).append(p)
    return [{"params": ps, "lr": lr * layer_decay ** (n_layers + 1 - d), "depth": d}
            for d, ps in sorted(groups.items())]


def make_optimizer(optimizer_fn, model, lr: float, layer_decay: float, device: torch.device):
    """optimizer.fused=null picks the fused kernel where torch has one (CPU, CUDA): it does the whole
    AdamW update in one pass, 5x cheaper per step than the default loop over parameters here."""
    fused = optimizer_fn.keywords.get("fused")
    fused = device.type in ("cpu", "cuda") if fused is None else fused
    return optimizer_fn(parameter_groups(model, lr, layer_decay), lr=lr, fused=fused)


def make_scheduler(optimizer, schedule: str, warmup_ratio: float, steps: int):
    """The lr multiplier over `steps`: a linear rise over the first warmup_ratio of them, then `schedule`."""
    from transformers import get_scheduler

    return get_scheduler(SCHEDULES[schedule], optimizer, num_warmup_steps=math.ceil(warmup_ratio * steps),
                         num_training_steps=steps)
