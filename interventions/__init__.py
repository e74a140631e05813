"""The intervention catalogue: causal edits of attention sinks, by name, composable, and extensible.

    >>> import interventions as iv
    >>> iv.get("scale-sink", gamma=0.5, layers="3-10") + iv.parse("zero-sink-value:layers=20")
    >>> iv.catalogue()                                     # name -> one-line summary

| name | what it does |
|---|---|
| `none` | nothing (the baseline) |
| `mask-sink` | for q >= 1, A[q, s] = 0 and the row renormalised |
| `zero-implicit-bias` | for q >= 1, remove A[q, s] v_s from the head output |
| `mean-implicit-bias` | for q >= 1, replace A[q, s] v_s by mean(A[q, s]) * mean(v_s) per head |
| `zero-sink-value` / `mean-sink-value` | v_s := 0 / its dataset mean, for q >= 1 |
| `patch-values` | values at chosen positions (and heads) from a source input (activation patching) |
| `scale-sink` | A[q, s] := gamma A[q, s], renormalised (ACT, ZeroTuning) |
| `softmax-plus-one` | A = exp(x) / (1 + sum exp(x)) at inference (Miller 2023) |
| `massive-activations` | massive residual dims at the sinks set to zero or to their mean (Sun et al. 2024) |
| `window-attention` | keep the first n_sinks keys plus the last W keys (StreamingLLM's mask) |
| `zero-head` | zero the heads' outputs (head ablation; the active/dormant test of Guo et al. 2024) |
| `test-time-register` | image models: an extra token takes over the register neurons' outliers (Jiang et al. 2025) |
| `prune-expert` | MoE models: experts dropped from routing (top-k re-selected, gates renormalised) or zeroed (Su et al. 2025) |
| `reroute-sink` | MoE models: the sink token sent to other experts than the router chose |
| `mask-visual-sinks` | multimodal LMs: text queries' attention on the visual sinks set to 0, rows renormalised |
| `var` | multimodal LMs: VAR, the visual sinks' attention moved to the other visual tokens in image-centric heads (Kang et al. 2025) |

Every entry takes `layers=`, `heads=` (query heads) and `sink=` (bos, positions, tok:TOKEN, first:tok:TOKEN
(its first occurrence in each sequence), cls, sep; on image models also reg, reg:K, bg, obj, top-norm,
patch:R,C; in Python also a [sequences, T] bool mask or a function tokens -> mask) where they make sense.
Write a new one in a few lines:

    >>> from interventions import AttentionEdit, in_scope_rows, register, renormalise, sink_columns
    >>> @register("sharpen-sink")
    ... class SharpenSink(AttentionEdit):
    ...     power: float = 2.0
    ...     def edit(self, pattern, ctx, layer, scores=None):
    ...         sharpened = torch.where(sink_columns(ctx), pattern ** (1 / self.power), pattern)
    ...         return renormalise(pattern, sharpened, in_scope_rows(ctx)), None

What `edit` receives and must return (the PassContext fields and their shapes, `needs_scores`, the
helpers) is written where the mechanism is defined: `interventions.mechanisms.AttentionEdit` (and
`ValueEdit`, `ResidualEdit` next to it).
"""

from __future__ import annotations

from interventions import (  # noqa: F401  (registers the catalogue)
    attention,
    bias,
    moe,
    multimodal,  # noqa: F401  (registers the multimodal entries)
    quant,
    residual,
    values,
    vision,
)
from interventions.mechanisms import (
    AttentionEdit,
    GateEdit,
    ResidualEdit,
    Scoped,
    ValueEdit,
    in_scope_rows,
    renormalise,
    sink_columns,
)
from interventions.parsing import catalogue, from_spec, get, parse
from interventions.protocol import CATALOGUE, Compose, Identity, Intervention, register

__all__ = ["CATALOGUE", "AttentionEdit", "Compose", "GateEdit", "Identity", "Intervention", "ResidualEdit", "Scoped",
           "ValueEdit", "catalogue", "from_spec", "get", "in_scope_rows", "parse", "register", "renormalise",
           "sink_columns"]
