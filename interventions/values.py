"""Edits of value vectors: zero or mean the sink's value, or patch values from another input.

    >>> get("zero-sink-value")                          # v_s := 0 for queries q >= 1
    >>> get("mean-sink-value", layers="10-29")          # v_s := its mean over the evaluated sequences
    >>> get("patch-values", source="roll:1", positions="5-9", heads="0,1,2", layers=12)

The edit happens at `hook_v`, so under GQA it reaches every query head that reads the edited KV head
(SmolLM2: heads 3g..3g+2 read KV head g; Gemma 3 270M: all 4 heads read the single KV head). The
(query, head) pairs outside the scope are restored exactly at `hook_z`, so `heads=` selects query heads.
`zero-sink-value` and `zero-implicit-bias` therefore remove the same term by different routes (values vs
pattern): the tests check that they give the same loss.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from interventions.bias import fixed_positions, sink_means
from interventions.mechanisms import ValueEdit
from interventions.protocol import register
from workbench.core import sites
from workbench.core.errors import InputError
from workbench.core.modelinfo import info
from workbench.passes import PassContext


@register("zero-sink-value", "v_s := 0 for queries q >= 1")
@dataclasses.dataclass(frozen=True)
class ZeroSinkValue(ValueEdit):
    def new_values(self, values, ctx, layer, where):
        return torch.zeros_like(values)


@register("mean-sink-value", "v_s := its mean over all evaluated sequences, for queries q >= 1")
@dataclasses.dataclass(frozen=True)
class MeanSinkValue(ValueEdit):
    def validate(self, model: Any) -> None:
        super().validate(model)
        fixed_positions(self, model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        means = sink_means(model, data, self.layer_ids(model), fixed_positions(self, model), batch_size, progress)
        return {layer: entry["value"] for layer, entry in means.items()}  # [P, kv, d]

    def new_values(self, values, ctx, layer, where):
        new = values.clone()
        new[:, list(fixed_positions(self, ctx.model))] = ctx.state[layer].to(values.device, values.dtype)
        return new


@register("patch-values", "replace value vectors at chosen positions (and heads) with a source input's")
@dataclasses.dataclass(frozen=True)
class PatchValues(ValueEdit):
    """Activation patching of value vectors. `source`: `roll:K` (sequence i takes the values of sequence
    i + K of the same data; `roll:0` patches a sequence with itself) or a text/JSONL file cut like the
    target (same number of sequences, or one to broadcast, and the same lengths). `positions`: key
    positions to patch (`all`, `5`, `5-9`, `0,3`). Every query sees the patched values."""

    source: str = "roll:1"
    positions: Any = "all"
    all_queries = True
    sink_aware = False

    def validate(self, model: Any) -> None:
        super().validate(model)
        if not isinstance(self.source, str) or not (self.source.startswith("roll:") or self.source):
            raise InputError(f"patch-values: source must be roll:K or a file path, got {self.source!r}")
        if self.source.startswith("roll:") and not self.source[5:].lstrip("-").isdigit():
            raise InputError(f"patch-values: cannot read {self.source!r}; write roll:1")
        if not self.source.startswith("roll:") and info(model).is_image:
            raise InputError(f"patch-values: on an image model the source must be roll:K (another image of the same "
                             f"set), not the text file {self.source!r}")

    def _source_data(self, model: Any, data: Any):
        if self.source.startswith("roll:"):
            shift = int(self.source[5:])
            order = [(i + shift) % len(data) for i in range(len(data))]
            return data.subset(order)
        from workbench.core.data import from_file

        source = from_file(model, self.source, window=data.window or max(data.lengths),
                           prepend_bos=data.bos_policy == "bos")
        if len(source) == 1 and len(data) > 1:
            source = source.subset([0] * len(data))
        if len(source) != len(data):
            raise InputError(f"patch-values: the source has {len(source)} sequences, the target {len(data)}; "
                             "they must match (or the source must be one sequence)")
        return source

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        from workbench.passes import probe_pass

        source = self._source_data(model, data)
        if source.lengths != data.lengths:
            bad = next(i for i, (a, b) in enumerate(zip(source.lengths, data.lengths)) if a != b)
            raise InputError(f"patch-values: source sequence {bad} has {source.lengths[bad]} tokens, the target "
                             f"{data.lengths[bad]}; a patch source must have the target's length")
        layers = self.layer_ids(model)
        values: dict[int, dict[int, torch.Tensor]] = {layer: {} for layer in layers}

        def on_v(layer: int, tensor: torch.Tensor, batch: Any) -> None:
            for row, index in enumerate(batch.index):
                values[layer][index] = tensor[row].detach().cpu()

        probe_pass(model, source, [("attn.hook_v", on_v)], layers, batch_size=batch_size, progress=progress,
                   desc="patch source")
        return {"values": values, "source_sha256": source.hash()}

    def edit_positions(self, ctx: PassContext) -> torch.Tensor:
        length = ctx.tokens.shape[1]
        chosen = sites._parse_index_spec(self.positions, length, "patch position", info(ctx.model).name)
        mask = torch.zeros_like(ctx.sink)
        mask[:, list(chosen)] = True
        return mask

    def new_values(self, values, ctx, layer, where):
        stored = ctx.state["values"][layer]
        return torch.stack([stored[i] for i in ctx.index]).to(values.device, values.dtype)
