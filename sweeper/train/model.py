"""Model config -> a sequence classifier: weights read from disk once per study, a fresh copy per trial with the
trial's model knobs (dropout, re-initialised top layers, the head's pooling)."""
from __future__ import annotations

import copy

import torch

DROPOUTS = {"hidden": "hidden_dropout_prob", "attention": "attention_probs_dropout_prob",
            "classifier": "classifier_dropout"}  # model.dropout.<key> -> the config.json field it sets


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


def fresh_model(template: torch.nn.Module, model_cfg=None, seed: int = 0) -> torch.nn.Module:
    """An independent copy: what one trial does to it never reaches the next trial. With `model_cfg`, its knobs
    applied: dropout probabilities, the top reinit_layers layers (and pooler) drawn afresh with `seed`, pooling."""
    model = copy.deepcopy(template).train()
    if model_cfg is None:
        return model
    set_dropout(model, {k: v for k, v in model_cfg.get("dropout", {}).items() if v is not None})
    if model_cfg.get("reinit_layers", 0):
        reinit_top_layers(model, model_cfg.reinit_layers, seed)
    if model_cfg.get("pooling", "cls") == "mean":
        from sweeper.train.pooling import mean_pooled

        mean_pooled(model)
    return model


def set_dropout(model: torch.nn.Module, dropout: dict[str, float]) -> None:
    """model.dropout.{hidden, attention, classifier}: every such Dropout module's p, and config.json's field (the
    exported model says what it trained with). Attention dropout is BERT's self-attention module's `dropout`."""
    if not dropout:
        return
    base = model.base_model
    hidden = [m for name, m in base.named_modules() if isinstance(m, torch.nn.Dropout)
              and not name.endswith("attention.self.dropout")]
    attention = [m for name, m in base.named_modules() if name.endswith("attention.self.dropout")]
    head = [m for name, m in model.named_children() if isinstance(m, torch.nn.Dropout)]
    for key, modules in (("hidden", hidden), ("attention", attention), ("classifier", head)):
        if key in dropout:
            for m in modules:
                m.p = float(dropout[key])
            setattr(model.config, DROPOUTS[key], float(dropout[key]))


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer layers (BERT/RoBERTa/ELECTRA: encoder.layer)."""
    encoder = getattr(model.base_model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"model.reinit_layers: no encoder.layer list in {type(model).__name__}; allowed: 0")
    return layers


def reinit_top_layers(model: torch.nn.Module, n: int, seed: int) -> None:
    """Draw the top `n` layers and the pooler afresh as the model's own initialisation does (Zhang et al. 2021):
    their pretrained weights are specialised to pretraining and transfer worst."""
    layers = encoder_layers(model)
    if not 0 < n <= len(layers):
        raise ValueError(f"model.reinit_layers={n}; allowed: 0 to the model's {len(layers)} layers")
    with torch.random.fork_rng():  # the trial's own seed stream is left as it was
        torch.manual_seed(seed)
        for module in [*layers[-n:], getattr(model.base_model, "pooler", None)]:
            if module is not None:
                for sub in module.modules():
                    reset(model, sub)


def reset(model: torch.nn.Module, module: torch.nn.Module) -> None:
    """One module's initialisation as from_config draws it: normal(0, initializer_range) weights, zero biases,
    LayerNorm at (1, 0)."""
    std = model.config.initializer_range
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, torch.nn.LayerNorm):
        torch.nn.init.ones_(module.weight)
        torch.nn.init.zeros_(module.bias)
