"""Edits of a multimodal LM's visual sinks, and what they do to its answers (Kang et al. 2025, ICLR).

    >>> get("mask-visual-sinks", threshold=0.05)          # text queries: A[q, s] = 0 on the visual sinks, renormalised
    >>> get("var", threshold=0.05, p=0.6, rho=0.5)         # VAR: sink attention -> the other visual tokens
    >>> answer_accuracy(model, data, ["none", "mask-visual-sinks", "var"])   # Results: accuracy per question type

A visual sink is a visual token that receives more than `threshold` of the text queries' attention (mean over the
text queries, heads and layers of a first, read-only pass over the evaluated data: `prepare`, with
`workbench.probes.mixed.visual_sinks`; `sink_layers` picks the layers of that pass). The edits act on the text
queries only (the question and answer positions); the visual and BOS rows keep their attention.

VAR (Visual Attention Redistribution, Kang et al. 2025) works in image-centric heads: a head is image-centric for a
sequence when the share of its text queries' visual attention that lands on non-sink visual tokens is at least
`rho`. There a fraction `p` of each text query's attention on the visual sinks moves to the other visual tokens,
in proportion to what they already receive, so every row keeps its sum. (The paper's own p and rho values were not
read, see shared/LITERATURE.md; the defaults here are ours.) Identities: p = 0 and rho > 1 leave the model as it
is (tested).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import torch

from interventions.mechanisms import AttentionEdit, renormalise
from interventions.protocol import Identity, Intervention, register
from workbench.core import positions
from workbench.core.errors import InputError, check_number
from workbench.core.modelinfo import info
from workbench.core.progress import progress_bar
from workbench.core.results import Results

__all__ = ["MaskVisualSinks", "VisualAttentionRedistribution", "answer_accuracy"]

_TINY = 1e-12


def _require_multimodal(model: Any, who: str) -> None:
    model_info = info(model)
    if not model_info.is_multimodal:
        raise InputError(f"{who} edits the visual sinks of a multimodal LM; {model_info.name} is not one (use "
                         "tiny-llava, shapes-llava or a local LLaVA directory)")


def _text_rows(tokens: torch.Tensor) -> torch.Tensor:
    """[b, T] bool: the text queries (question and answer; not BOS, not the visual tokens)."""
    kinds = positions.mixed_kinds(tokens)
    rows = (kinds == positions.MIXED_TEXT) | (kinds == positions.MIXED_ANSWER)
    rows[:, 0] = False
    return rows


@dataclasses.dataclass(frozen=True)
class _VisualSinkEdit(AttentionEdit):
    """Shared by the visual-sink edits: the threshold, the layers whose attention finds the sinks, `prepare`."""

    threshold: float = 0.05
    sink_layers: Any = None

    def validate(self, model: Any) -> None:
        super().validate(model)
        _require_multimodal(model, self.name)
        check_number(f"{self.name}: threshold (the text queries' attention that makes a visual sink)", self.threshold,
                     low=0.0, high=1.0, low_open=True)
        from workbench.core import sites

        sites.parse_layers(self.sink_layers, model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        from workbench.probes.mixed import visual_sinks

        return visual_sinks(model, data, self.threshold, self.sink_layers, batch_size=batch_size)

    def prepare_key(self) -> str:
        return f"visual-sinks:{self.threshold!r}:{self.sink_layers!r}"

    def describe_state(self, state: Any) -> dict | None:
        per_sequence = state.sum(1).float()
        return {"visual_sinks_per_sequence": float(per_sequence.mean()), "sequences_with_sinks":
                int((per_sequence > 0).sum())}

    def _masks(self, pattern: torch.Tensor, ctx: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sinks [b, 1, 1, k], other visual keys [b, 1, 1, k], text rows [b, 1, q, 1]) for this unit's rows."""
        if ctx.state is None:
            raise InputError(f"{self.name} needs its prepare pass (the visual sinks of the evaluated data)")
        sinks = ctx.state[ctx.index].to(pattern.device)
        visual = positions.mixed_kinds(ctx.tokens) >= positions.MIXED_VISUAL_BG
        rows = ctx.query_block.take(_text_rows(ctx.tokens))
        return sinks[:, None, None, :], (visual & ~sinks)[:, None, None, :], rows[:, None, :, None]


@register("mask-visual-sinks", "text queries: A[q, s] = 0 on the visual sinks (visual tokens with more than "
                               "threshold of their attention), rows renormalised")
@dataclasses.dataclass(frozen=True)
class MaskVisualSinks(_VisualSinkEdit):
    def edit(self, pattern, ctx, layer, scores=None):
        sinks, _, rows = self._masks(pattern, ctx)
        return renormalise(pattern, pattern * ~sinks, rows), None


@register("var", "VAR (Kang et al. 2025): in image-centric heads, move a fraction p of the text queries' attention "
                 "on visual sinks to the other visual tokens")
@dataclasses.dataclass(frozen=True)
class VisualAttentionRedistribution(_VisualSinkEdit):
    p: float = 0.6
    rho: float = 0.5

    def validate(self, model: Any) -> None:
        super().validate(model)
        check_number("var: p (the fraction of the sink attention moved)", self.p, low=0.0, high=1.0)
        check_number("var: rho (the non-sink share of visual attention that makes a head image-centric)", self.rho,
                     low=0.0, high=1.0)

    def edit(self, pattern, ctx, layer, scores=None):
        sinks, others, rows = self._masks(pattern, ctx)
        on_sinks = (pattern * sinks).sum(-1, keepdim=True)  # [b, h, q, 1]
        on_others = (pattern * others).sum(-1, keepdim=True)
        # image-centric heads (per sequence): the text queries' visual attention mostly on non-sink visual tokens
        text = rows.to(pattern.dtype)
        visual_total = ((on_sinks + on_others) * text).sum(2, keepdim=True)
        centric = ((on_others * text).sum(2, keepdim=True) >= self.rho * visual_total) & (visual_total > _TINY)
        moved = self.p * on_sinks
        spread = torch.where(on_others > _TINY, moved / on_others.clamp_min(_TINY), torch.zeros_like(moved))
        edited = torch.where(sinks, pattern * (1 - self.p), pattern + pattern * others * spread)
        apply = rows & centric & (on_others > _TINY)
        return torch.where(apply, edited, pattern), None


def answer_accuracy(model: Any, data: Any, interventions: Sequence[Intervention | str] = ("none",),
                    batch_size: int = 16, progress: bool = False) -> Results:
    """The model's answers on a mixed set under each intervention: rows `accuracy` and `margin` (the right
    answer's first-token logit minus the best wrong candidate's) per question type and overall (question "all"),
    `agreement` (same answer as without an intervention) and, for the visual-sink edits, how many sinks they found.

        >>> answer_accuracy(model, data, ["none", "mask-visual-sinks:threshold=0.05", "var:p=0.6"]).df
    """
    from interventions.parsing import parse
    from workbench.core.results import provenance
    from workbench.multimodal.data import answer_logits
    from workbench.passes import batches, forward

    started = time.perf_counter()
    model_info = info(model)
    if not model_info.is_multimodal:
        raise InputError(f"answer accuracy needs a multimodal LM; {model_info.name} is not one")
    if not hasattr(data, "candidates"):
        raise InputError(f"answer accuracy needs a mixed set with answers (workbench.multimodal.mixed_set), not "
                         f"{type(data).__name__}")
    chosen = [parse(item) if isinstance(item, str) else item for item in interventions]
    for intervention in chosen:
        intervention.validate(model)
    prepared = batches(model, data, batch_size)

    def answers(intervention: Intervention) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        state = intervention.prepare(model, data, batch_size)
        correct, margin = torch.zeros(len(data), dtype=torch.bool), torch.zeros(len(data))
        picked = torch.zeros(len(data), dtype=torch.long)
        for ctx in prepared:
            ctx = dataclasses.replace(ctx, state=state, scratch={})
            with torch.no_grad():
                logits = forward(model, ctx.inputs, intervention.hooks(model, ctx))
            correct[ctx.index], margin[ctx.index] = answer_logits(logits, data, ctx.index)
            picked[ctx.index] = torch.tensor([int(logits[r, -2, data.candidates[data.question[i]]].argmax())
                                              for r, i in enumerate(ctx.index)])
        return correct, margin, picked, state

    baseline = answers(Identity())[2]
    rows = []
    for intervention in progress_bar(chosen, desc="answers", enabled=progress):
        correct, margin, picked, state = answers(intervention)
        extra = intervention.describe_state(state) or {}
        for q in ["all", *dict.fromkeys(data.question)]:
            pick = torch.tensor([q in ("all", data.question[i]) for i in range(len(data))])
            common = {"experiment": "multimodal:answers", "model": model_info.name, "intervention": str(intervention),
                      "question": q, "layer": None, "head": None, "n": int(pick.sum()), **extra}
            rows.append({"metric": "accuracy", "value": float(correct[pick].float().mean()), **common})
            rows.append({"metric": "margin", "value": float(margin[pick].mean()), **common})
            rows.append({"metric": "agreement", "value": float((picked[pick] == baseline[pick]).float().mean()),
                         **common})
    header = provenance("multimodal:answers", model, data, interventions=[i.spec() for i in chosen],
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)

