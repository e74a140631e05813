"""Does the sink's share grow with the number of keys? Attention to the sink against the query's position.

    >>> res = sink_by_position(model, data, bins=48)                  # rows: layer, q_low, q_high, value
    >>> res.filter(metric="sink_attention_by_position", layer=10).df

The sum-to-one account of the sink (Gu et al. 2025; Xiao et al. 2024) predicts that a query with more keys
to spread over puts more of its weight on the sink when it has nothing to attend to. This probe averages
A[q, sink] over heads and sequences for every query position, per layer, and reports it in log-spaced
position bins (a few dozen rows per layer, whatever T is). It reads `hook_pattern` one query block at a time
when the pass runs blockwise (workbench.attention), so it works at T = 8k-32k in linear memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from workbench import attention
from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import check_range
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.core.sites import SinkSpec
from workbench.passes import Hook, PassContext, probe_pass


def position_bins(length: int, bins: int) -> np.ndarray:
    """Edges [e0=1, ..., length] of at most `bins` log-spaced, non-empty bins of query positions 1..length-1."""
    edges = np.unique(np.round(np.geomspace(1, length, bins + 1)).astype(int))
    return edges if edges[-1] == length else np.append(edges, length)


def sink_by_position(model: Any, data: Dataset, sink: Any = "bos", layers: Any = None, bins: int = 48,
                     batch_size: int = 1, progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """Rows {metric "sink_attention_by_position", layer, q_low, q_high (query positions of the bin, q_high
    exclusive), n (queries averaged), value}: mean attention to the sink over heads and sequences."""
    started = time.perf_counter()
    model_info = info(model)
    check_range("position bins", bins, 1, 10_000)
    spec = SinkSpec.parse(sink)
    layer_ids = sites.parse_layers(layers, model)
    length = max(len(s) for s in data.sequences)
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    sums = torch.zeros(len(layer_ids), length, dtype=torch.float64)  # per query position
    counts = torch.zeros(length, dtype=torch.float64)

    def on_mass(layer: int, mass: torch.Tensor, ctx: PassContext) -> None:
        block = ctx.query_block
        mass = mass.mean(1)  # [b, q]: the attention on the sink, mean over heads
        queries = ctx.queries.float()  # [b, q] of this block
        rows = torch.arange(block.start, block.start + queries.shape[1])
        sums[slot[layer], rows] += (mass * queries).sum(0).double().cpu()
        if slot[layer] == 0:
            counts[rows] += queries.sum(0).double().cpu()

    probe_pass(model, data, [(attention.KEY_MASS, on_mass)], layer_ids, spec, batch_size, progress,
               desc="sink by position", hooks=hooks)
    edges = position_bins(length, bins)
    rows = []
    common = {"experiment": "probe:sink-by-position", "model": model_info.name, "sink": spec.label, "head": None}
    for low, high in zip(edges[:-1], edges[1:]):
        n = float(counts[low:high].sum())
        if n == 0:
            continue
        for i, layer in enumerate(layer_ids):
            rows.append({"metric": "sink_attention_by_position", "layer": layer, "q_low": int(low),
                         "q_high": int(high), "n": int(n), "value": float(sums[i, low:high].sum() / n), **common})
    header = provenance("probe:sink-by-position", model, data, sink=spec.label, bins=bins,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)
