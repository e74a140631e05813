"""Model x data x interventions x metrics -> Results.

    >>> res = evaluate(model, data)                        # baseline loss and perplexity
"""

from __future__ import annotations

import math
import time

import torch

from workbench import models
from workbench.data import Dataset
from workbench.errors import InputError, InterventionError
from workbench.metrics import SequenceStats, token_nll
from workbench.progress import progress_bar
from workbench.results import Results, provenance


def _device(model) -> torch.device:
    return next(model.parameters()).device


def evaluate(model, data: Dataset, batch_size: int = 8, seed: int = 0, progress: bool = True) -> Results:
    """Baseline next-token loss and perplexity of a causal LM over every predicted position.

        >>> evaluate(models.load("smollm2-135m"), data).value("loss")
    """
    model_info = models.info(model)
    if not model_info.causal:
        raise InputError(f"{model_info.name} is an encoder without a trained LM head: next-token loss means "
                         "nothing there; use an embedding metric (`sinkbench run --metric embedding_cosine`)")
    started = time.perf_counter()
    stats = SequenceStats.empty()
    device = _device(model)
    batches = list(data.batches(batch_size))
    for _, tokens in progress_bar(batches, desc="eval", enabled=progress):
        with torch.no_grad():
            logits = model(tokens.to(device))
        nll = token_nll(logits, tokens)
        if not torch.isfinite(nll).all():
            raise InterventionError(f"the forward pass of {model_info.name} produced NaN/inf logits")
        stats = stats + SequenceStats.from_tokens(nll)
    rows = [stats.row("loss", seed=seed), stats.row("perplexity", seed=seed, transform=math.exp)]
    for row in rows:
        row.update(experiment="eval", model=model_info.name, intervention="none")
    header = provenance("eval", model, data, seed=seed, batch_size=batch_size,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)
