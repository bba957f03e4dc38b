"""A BERT classifier whose head reads the mean of the token states (padding left out) instead of the pooler's
dense layer on [CLS]: the sentence vector all-MiniLM-L6-v2 was trained to produce.

Self-contained (torch and transformers only): an exported mean-pooled model carries this file as its modeling code
(train/export.py), so `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)` loads it
anywhere; without trust_remote_code its custom model_type refuses to load rather than fall back to [CLS]."""
from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolBertConfig(BertConfig):
    model_type = "sweeper_mean_pool_bert"


class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
    config_class = MeanPoolBertConfig

    def __init__(self, config):
        super().__init__(config)
        self.bert.pooler = None  # unused: its weights would only be saved and loaded for nothing

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, **kwargs):
        states = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                           position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True,
                           **kwargs).last_hidden_state
        mask = (torch.ones(states.shape[:2], device=states.device) if attention_mask is None
                else attention_mask).unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)


def mean_pooled(model: nn.Module) -> nn.Module:
    """`model` (a BertForSequenceClassification) turned into the mean-pooled class in place: same weights, no pooler."""
    if type(model) is not BertForSequenceClassification:
        raise ValueError(f"model.pooling=mean needs a BERT classifier (BertForSequenceClassification), not "
                         f"{type(model).__name__}; allowed: model.pooling=cls")
    model.__class__ = MeanPoolBertForSequenceClassification
    model.bert.pooler = None
    model.config.__class__ = MeanPoolBertConfig  # its model_type: exported, loadable only as this class
    return model
