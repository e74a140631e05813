"""Massive activations as biases (Sun et al. 2024, Table 3): set the massive residual dimensions at the
sink tokens to zero, or to their mean.

    >>> get("massive-activations", mode="zero")                  # found automatically, then zeroed
    >>> get("massive-activations", mode="mean", layers=11, dims="507")

Sun et al. report for LLaMA2-7B WikiText perplexity 5.47 -> inf (zero) vs 5.47 (mean): the massive
activations are fixed but important biases. Without `layer`/`dims`, a first pass finds them: the
earliest layer whose residual stream (`hook_resid_post`) at the sink positions has dimensions with
|mean activation| > abs_threshold and >= ratio_threshold x the layer's median |activation|, and those
dimensions. The mean is taken over every sink occurrence of every evaluated sequence.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from interventions.mechanisms import ResidualEdit
from interventions.protocol import register
from workbench.core import sites
from workbench.core.errors import InputError, check_number
from workbench.core.modelinfo import info
from workbench.core.sites import SinkSpec
from workbench.passes import PassContext

MODES = ("zero", "mean")


@register("massive-activations", "set the massive residual dims at the sink tokens to zero or to their mean")
@dataclasses.dataclass(frozen=True)
class MassiveActivations(ResidualEdit):
    mode: str = "zero"
    dims: Any = None
    sink: Any = "bos"
    abs_threshold: float = 100.0
    ratio_threshold: float = 1000.0
    sink_aware = True

    def validate(self, model: Any) -> None:
        super().validate(model)
        model_info = info(model)
        if self.mode not in MODES:
            raise InputError(f"massive-activations: mode {self.mode!r}: use one of {', '.join(MODES)}")
        check_number("massive-activations: abs_threshold", self.abs_threshold, low=0.0)
        check_number("massive-activations: ratio_threshold", self.ratio_threshold, low=0.0, low_open=True)
        if self.layers is not None:
            sites.parse_layers(self.layers, model)
        if self.dims is not None:
            sites._parse_index_spec(self.dims, model_info.d_model, "residual dimension", model_info.name)
        spec = SinkSpec.parse(self.sink)
        if spec.kind == "auto":
            raise InputError("massive-activations: give the sink as bos, positions or tok:TOKEN")
        if spec.kind == "tokens":
            spec.token_ids(model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        from workbench.passes import probe_pass

        model_info = info(model)
        layers = sites.parse_layers(self.layers, model) if self.layers is not None else tuple(range(model_info.n_layers))
        collected = {layer: {"at_sink": [], "medians": []} for layer in layers}

        def on_resid(layer: int, resid: torch.Tensor, batch: Any) -> None:
            collected[layer]["at_sink"].append(resid[batch.sink].float().cpu())  # [occurrences, d]
            collected[layer]["medians"].append(float(resid.float().abs().median()))

        probe_pass(model, data, [(sites.RESID_POST, on_resid)], layers, SinkSpec.parse(self.sink), batch_size,
                   progress, desc="find massive activations")
        chosen_layer, chosen_dims = None, None
        for layer in layers:
            at_sink = torch.cat(collected[layer]["at_sink"])
            median = sum(collected[layer]["medians"]) / len(collected[layer]["medians"])
            magnitude = at_sink.mean(0).abs()
            flagged = ((magnitude > self.abs_threshold) & (magnitude >= self.ratio_threshold * median)).nonzero()
            if self.dims is not None or len(flagged):
                chosen_layer = layer
                chosen_dims = flagged.flatten().tolist()
                break
        if chosen_layer is None:
            raise InputError(
                f"massive-activations: no residual dimension at sink {SinkSpec.parse(self.sink).label} exceeds "
                f"{self.abs_threshold} and {self.ratio_threshold} x the median in any layer of {model_info.name}; "
                "pass layers= and dims= (see `sinkbench probe massive-activations`) or lower the thresholds")
        if self.dims is not None:
            chosen_dims = list(sites._parse_index_spec(self.dims, model_info.d_model, "residual dimension",
                                                       model_info.name))
        at_sink = torch.cat(collected[chosen_layer]["at_sink"])
        return {"layer": chosen_layer, "dims": chosen_dims, "mean": at_sink[:, chosen_dims].mean(0),
                "occurrences": int(at_sink.shape[0])}

    def prepare_key(self) -> str:  # zero and mean modes find the same dims
        return super().prepare_key().replace(f'"mode": "{self.mode}"', '"mode": "*"')

    def target_layers(self, model: Any, state: Any) -> tuple[int, ...]:
        return (state["layer"],)

    def describe_state(self, state: Any) -> dict | None:
        return {"layer": state["layer"], "dims": state["dims"]}

    def edit_residual(self, resid: torch.Tensor, ctx: PassContext, layer: int) -> torch.Tensor:
        dims = ctx.state["dims"]
        new = resid.clone()
        chosen = new[ctx.sink]  # [occurrences, d]
        chosen[:, dims] = 0.0 if self.mode == "zero" else ctx.state["mean"].to(new.device, new.dtype)
        new[ctx.sink] = chosen
        return new
