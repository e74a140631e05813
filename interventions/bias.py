"""The causal test of the implicit-attention-bias account (survey §4.3; Sun et al. 2024 §4.2).

    >>> zero = get("zero-implicit-bias")     # remove A[q, s] v_s from every head output (q >= 1)
    >>> mean = get("mean-implicit-bias")     # replace it by one constant vector per head

If the sink acts as a fixed bias, replacing its term u_q = A[q, s] v_s by a constant keeps the model
intact while zeroing it does not. The constant of head h is mean(A[q, s]) * mean(v_s): the mean of A[q, s]
over every evaluated sequence and query q >= 1, times the mean of v_s over every evaluated sequence,
collected in a first pass over the whole dataset, so the batch size never changes the result.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from interventions.mechanisms import AttentionEdit, in_scope_rows, sink_columns
from interventions.protocol import register
from workbench.core.errors import InputError
from workbench.core.modelinfo import info


@register("zero-implicit-bias", "for q >= 1 remove the sink term A[q, s] v_s from the head output")
@dataclasses.dataclass(frozen=True)
class ZeroImplicitBias(AttentionEdit):
    """A[q, s] := 0 for queries in scope, without renormalisation: the head output loses exactly A[q, s] v_s."""

    def edit(self, pattern, ctx, layer, scores=None):
        return pattern.masked_fill(sink_columns(ctx) & in_scope_rows(ctx), 0.0), None


def fixed_positions(iv: Any, model: Any) -> tuple[int, ...]:
    """The sink positions, which must be the same in every input (bos, positions; on image models also cls,
    reg, reg:K and patch:R,C)."""
    spec = iv.sink_spec()
    positions = spec.fixed_positions(model)
    if positions is None:
        raise InputError(f"{iv.name} averages over sequences at fixed sink positions; sink {spec.label} moves "
                         "between sequences: use bos or explicit positions (images: cls, reg, reg:K, patch:R,C)")
    return positions


def sink_means(model: Any, data: Any, layers: tuple[int, ...], positions: tuple[int, ...],
               batch_size: int, progress: bool) -> dict:
    """First pass: per layer, mean over sequences and queries in scope of A[q, j] per head, and mean over
    sequences of v_j per KV head, at each fixed sink position j."""
    from workbench.core.sites import SinkSpec
    from workbench.passes import gather, probe_pass

    model_info = info(model)
    lengths = set(data.lengths)
    if max(positions) >= min(lengths):
        raise InputError(f"sink position {max(positions)} is outside the shortest sequence (T = {min(lengths)})")
    stats = {layer: {"attention": torch.zeros(model_info.n_heads, len(positions), dtype=torch.float64),
                     "queries": 0.0,
                     "value": torch.zeros(len(positions), model_info.n_kv_heads, model_info.d_head, dtype=torch.float64),
                     "sequences": 0} for layer in layers}

    def compute(layer: int, t: dict, batch: Any) -> None:
        entry = stats[layer]
        pattern = t["attn.hook_pattern"].double()[..., list(positions)]  # [b, h, q, P]
        queries = batch.queries[:, None, :, None].double()
        entry["attention"] += (pattern * queries).sum(dim=(0, 2)).cpu()
        entry["queries"] += float(batch.queries.sum())
        if batch.query_block.first:  # hook_v fires once per forward; blockwise, the pattern once per block
            entry["value"] += t["attn.hook_v"].double()[:, list(positions)].sum(0).cpu()  # [P, kv, d]
            entry["sequences"] += pattern.shape[0]

    probe_pass(model, data, gather(["attn.hook_pattern", "attn.hook_v"], compute), layers,
               SinkSpec("positions", positions), batch_size, progress, desc="first pass (means)")
    out = {}
    for layer, entry in stats.items():
        out[layer] = {"attention": (entry["attention"] / entry["queries"]).float(),  # [H, P]
                      "value": (entry["value"] / entry["sequences"]).float()}  # [P, kv, d]
    return out


@register("mean-implicit-bias", "for q >= 1 replace the sink term by one constant per head (its dataset mean)")
@dataclasses.dataclass(frozen=True)
class MeanImplicitBias(AttentionEdit):
    def validate(self, model: Any) -> None:
        super().validate(model)
        fixed_positions(self, model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        model_info = info(model)
        means = sink_means(model, data, self.layer_ids(model), fixed_positions(self, model), batch_size, progress)
        constants = {}
        for layer, entry in means.items():
            value = entry["value"].repeat_interleave(model_info.group_size, dim=1)  # [P, H, d]
            constants[layer] = torch.einsum("hp,phd->hd", entry["attention"], value)  # c_h = sum_j mean A_j mean v_j
        return constants

    def edit(self, pattern, ctx, layer, scores=None):
        heads = list(self.head_ids(ctx.model))
        zeroed = torch.where(sink_columns(ctx) & in_scope_rows(ctx), torch.zeros_like(pattern), pattern)
        constant = ctx.state[layer][heads].to(pattern.device)  # [h, d]
        extra = ctx.queries[:, :, None, None].float() * constant[None, None]  # [b, q, h, d]
        return zeroed, extra
