"""An exported classifier + a tokenized split -> predicted label ids (a regression: values), in the split's
order. Plain torch, no Accelerator: used after training, for the test split and to check an exported model."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding


@torch.no_grad()
def predict(model, split, tokenizer, batch_size: int = 64) -> np.ndarray:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    split = split.remove_columns([c for c in ("labels",) if c in split.column_names])
    loader = DataLoader(split, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer))
    out = [model(**{k: v.to(device) for k, v in batch.items()}).logits.cpu() for batch in loader]
    logits = torch.cat(out)
    return logits.squeeze(-1).float().numpy() if logits.shape[-1] == 1 else logits.argmax(-1).numpy()  # 1: regression
