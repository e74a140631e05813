"""Which heads are sink heads, and which of those look dormant? (TransformerLens's head detector has no
sink type.)

    >>> res = heads(model, data)
    >>> res.filter(metric="head_class", label="dormant-candidate").df

Each head gets one label from two measurements over the same pass:
- its sink score (the `first_token_attention` of `workbench.probes.sinks`);
- its output norm: the mean over valid queries of ||z_q W_O^h||, relative to the median over all
  heads of the model.
Labels: `dormant-candidate` = score >= dormant_attention (0.8) and relative output norm <=
dormant_output (0.5): almost all attention on the sink and little written (the active/dormant heads of
Guo et al. 2024; zeroing such heads should barely change the loss, which the intervention catalogue
can test); `sink` = score > eps (0.3); `other` otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import check_number
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.core.sites import SinkSpec, check_eps
from workbench.passes import Hook, PassContext, gather, probe_pass
from workbench.probes._engine import w_o

LABELS = ("dormant-candidate", "sink", "other")


def heads(model: Any, data: Dataset, sink: Any = "bos", eps: float = 0.3, dormant_attention: float = 0.8,
          dormant_output: float = 0.5, layers: Any = None, batch_size: int = 8, progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """Label every head sink / dormant candidate / other.

        >>> heads(model, data).df.groupby("label").size()
    """
    started = time.perf_counter()
    model_info = info(model)
    check_eps(eps)
    check_number("dormant_attention", dormant_attention, 0.0, 1.0)
    check_number("dormant_output (a multiple of the median head output norm)", dormant_output, low=0.0,
                 low_open=True)
    spec = SinkSpec.parse(sink)
    layer_ids = sites.parse_layers(layers, model)
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    score = torch.zeros(len(layer_ids), model_info.n_heads, dtype=torch.float64)
    out_norm = torch.zeros_like(score)
    count = torch.zeros(len(layer_ids), 1, dtype=torch.float64)

    def compute(layer: int, t: dict[str, torch.Tensor], batch: PassContext) -> None:
        i = slot[layer]
        queries = batch.queries.float()  # [b, q]
        mass = (t["attn.hook_pattern"].float() * batch.sink[:, None, None, :]).sum(-1)  # [b, h, q]
        score[i] += (mass * queries[:, None, :]).sum(dim=(0, 2)).double().cpu()
        written = torch.einsum("bqhd,hdm->bqhm", t["attn.hook_z"].float(), w_o(model, layer).float()).norm(dim=-1)
        out_norm[i] += (written * queries[:, :, None]).sum(dim=(0, 1)).double().cpu()
        count[i] += float(queries.sum())

    probe_pass(model, data, gather(["attn.hook_pattern", "attn.hook_z"], compute), layer_ids, spec, batch_size,
               progress, desc="heads", hooks=hooks)
    score /= count
    out_norm /= count
    relative = out_norm / out_norm.median()
    rows = []
    for i, layer in enumerate(layer_ids):
        for head in range(model_info.n_heads):
            s, r = float(score[i, head]), float(relative[i, head])
            label = "dormant-candidate" if s >= dormant_attention and r <= dormant_output else \
                "sink" if s > eps else "other"
            rows.append({"experiment": "probe:heads", "model": model_info.name, "metric": "head_class",
                         "layer": layer, "head": head, "value": s, "label": label,
                         "output_norm": float(out_norm[i, head]), "relative_output_norm": r, "sink": spec.label})
    for label in LABELS:
        rows.append({"experiment": "probe:heads", "model": model_info.name, "metric": "head_count", "label": label,
                     "layer": None, "head": None, "value": sum(r["label"] == label for r in rows)})
    header = provenance("probe:heads", model, data, sink=spec.label, eps=eps, dormant_attention=dormant_attention,
                        dormant_output=dormant_output, layers=list(layer_ids),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def summarize(results: Results) -> str:
    frame = results.df
    counts = frame[frame.metric == "head_count"].set_index("label").value
    lines = ["head labels: " + ", ".join(f"{label} {int(counts[label])}" for label in LABELS)]
    dormant = frame[(frame.metric == "head_class") & (frame.label == "dormant-candidate")]
    for _, row in dormant.head(20).iterrows():
        lines.append(f"  L{int(row.layer)}H{int(row['head'])}: sink score {row.value:.3f}, output norm "
                     f"{row.relative_output_norm:.2f} x median")
    return "\n".join(lines)
