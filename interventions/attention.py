"""Edits of the attention pattern: remove the sink, rescale it, change the softmax, or window it.

    >>> get("mask-sink", layers="3-10")               # A[q, s] = 0 for q >= 1, rows renormalised
    (renormalised = rescaled to the row's total weight before the edit: 1 for a softmax)
    >>> get("scale-sink", gamma=0.5)                    # ACT / ZeroTuning redistribution
    >>> get("softmax-plus-one", layers=20)              # Miller 2023 at inference
    >>> get("window-attention", window=32, n_sinks=4)   # StreamingLLM's mask: sinks + the last W keys

Row q = 0 of a causal model can only attend to itself: interventions that take attention away from the
sink leave that row unchanged (renormalising it would divide by zero), and so does any row whose
whole mass sits on the sink.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from interventions.mechanisms import AttentionEdit, in_scope_rows, renormalise, sink_columns
from interventions.protocol import register
from workbench.core.errors import InputError, check_number, check_range

__all__ = ["MaskSink", "ScaleSink", "SoftmaxPlusOne", "WindowAttention", "ZeroHead", "in_scope_rows", "renormalise",
           "sink_columns"]

@register("mask-sink", "for queries q >= 1 set A[q, s] = 0 and renormalise the row")
@dataclasses.dataclass(frozen=True)
class MaskSink(AttentionEdit):
    def edit(self, pattern, ctx, layer, scores=None):
        return renormalise(pattern, pattern * ~sink_columns(ctx), in_scope_rows(ctx)), None


@register("scale-sink", "A[q, s] := gamma * A[q, s], then renormalise (ACT, ZeroTuning)")
@dataclasses.dataclass(frozen=True)
class ScaleSink(AttentionEdit):
    """ZeroTuning's a_0 <- gamma a_0 / ((gamma - 1) a_0 + 1); other keys keep their ratios."""

    gamma: float = 0.5

    def validate(self, model: Any) -> None:
        super().validate(model)
        gamma = check_number("scale-sink: gamma", self.gamma)
        if gamma < 0:
            raise InputError(f"scale-sink: gamma = {gamma!r} must be >= 0 (0 = mask the sink)")

    def edit(self, pattern, ctx, layer, scores=None):
        # [b, 1, 1, k] weights in the dtype a scalar product computes in: the same numbers as where(sink, A * gamma, A)
        gamma = torch.tensor(self.gamma, dtype=torch.promote_types(pattern.dtype, torch.float32), device=pattern.device)
        weights = torch.where(sink_columns(ctx), gamma, 1.0)
        scaled = (pattern * weights).to(pattern.dtype)
        return renormalise(pattern, scaled, in_scope_rows(ctx)), None


@register("softmax-plus-one", "A = exp(x) / (1 + sum exp(x)) at inference (Miller 2023, 'off by one')")
@dataclasses.dataclass(frozen=True)
class SoftmaxPlusOne(AttentionEdit):
    """Equivalent to an extra key with logit 0 and value 0 (StreamingLLM's 'zero sink'): A' = A sigmoid(LSE(x)),
    where LSE(x) = log sum_j exp(x_j) over the visible keys. Applies to every row of the heads in scope."""

    needs_scores = True
    sink_aware = False

    def edit(self, pattern, ctx, layer, scores=None):
        lse = torch.logsumexp(scores.float(), dim=-1, keepdim=True)  # masked keys hold -inf / dtype min
        return pattern * torch.sigmoid(lse), None


@register("window-attention", "keep only the first n_sinks keys plus the last W keys in every row")
@dataclasses.dataclass(frozen=True)
class WindowAttention(AttentionEdit):
    """The mask form of StreamingLLM: key k stays visible to query q iff k < n_sinks or q - k < window
    (then the row is renormalised, which equals a softmax over the kept keys). n_sinks = 0 is plain
    window attention. Positions stay the text's, unlike StreamingLLM's cache positions."""

    window: int = 64
    n_sinks: int = 1
    causal_only = True
    sink_aware = False

    def validate(self, model: Any) -> None:
        super().validate(model)
        check_range("window-attention: window W", self.window, 1, 1 << 30)
        check_range("window-attention: n_sinks", self.n_sinks, 0, 1 << 30)

    def edit(self, pattern, ctx, layer, scores=None):
        block = ctx.query_block  # blockwise: the rows of this block; keys are every position
        first = block.start + pattern.shape[-1] - block.n_queries  # a cache's keys come before the queries
        q = torch.arange(first, first + block.size, device=pattern.device)[:, None]
        k = torch.arange(pattern.shape[-1], device=pattern.device)[None, :]
        keep = (k < self.n_sinks) | (q - k < self.window)
        everything = torch.ones_like(ctx.queries)[:, None, :, None]
        return renormalise(pattern, pattern * keep, everything), None


@register("zero-head", "zero the output of the heads in scope (head ablation: A := 0, so z = 0)")
@dataclasses.dataclass(frozen=True)
class ZeroHead(AttentionEdit):
    """Removes the heads entirely; with `heads=` and a sweep it measures which heads matter (the
    active/dormant test of Guo et al. 2024: sink-dominated 'dormant' heads barely change the loss)."""

    sink_aware = False

    def edit(self, pattern, ctx, layer, scores=None):
        return torch.zeros_like(pattern), None
