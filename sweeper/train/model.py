"""Model config -> a sequence classifier: weights read from disk once per study, a fresh copy per trial."""
from __future__ import annotations

import copy

import torch


def load_template(model_cfg, num_labels: int, seed: int) -> torch.nn.Module:
    """The study's untrained classifier. Trials train copies of it, never the template itself."""
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # the "newly initialized classifier" report is expected
    transformers.logging.disable_progress_bar()
    overrides = dict(model_cfg.overrides)
    torch.manual_seed(seed)  # the classifier head's initialisation, the same for every trial
    if model_cfg.random_init:
        config = AutoConfig.from_pretrained(model_cfg.path, num_labels=num_labels, **overrides)
        template = AutoModelForSequenceClassification.from_config(config)
    else:
        template = AutoModelForSequenceClassification.from_pretrained(
            model_cfg.path, num_labels=num_labels, **overrides)
    return template.eval()


def fresh_model(template: torch.nn.Module) -> torch.nn.Module:
    """An independent copy: what one trial does to it never reaches the next trial."""
    return copy.deepcopy(template).train()
