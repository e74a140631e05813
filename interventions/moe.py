"""Expert interventions on Mixture-of-Experts models: does the sink need the experts it is routed to?

    >>> get("prune-expert", layers=1, experts="3")                 # expert 3 of layer 1 removed from routing
    >>> parse("prune-expert:layers=0,experts=2,mode=zero")         # its output zeroed, the other gates kept
    >>> parse("reroute-sink:layers=1")                             # the sink sent to its next-best experts

Su et al. 2025 ("Super Experts", arXiv 2507.23279) prune a handful of experts whose outputs become the massive
activations at the sink, and the attention sinks collapse; random experts barely matter. Both edits act on the
gate weights (`interventions.mechanisms.GateEdit`, at `mlp.hook_expert_weights`), so they run unchanged on the
OLMoE, Mixtral and Qwen2-MoE adapters and on the MoE toys.

`prune-expert` modes, for every token whose top-k holds a pruned expert (other tokens are computed exactly as
before, so pruning an expert that is never selected reproduces the baseline bit for bit):
- `renorm` (default): the expert is dropped from the token's routing and the top-k is re-selected among the
  experts that are not pruned (by router probability), their gates rescaled to the total the token's top-k had
  before. On a model that renormalises its top-k gates (Mixtral; `norm_topk_prob`) this is exactly the model
  with the expert removed (tests/unit/test_moe.py checks it against a Mixtral rebuilt without it); on one that
  does not (OLMoE), removing it would also rescale every token's gates by 1 / (1 - p_expert), which this keeps
  out;
- `zero`: the expert's output is zeroed (its gate set to 0); the token keeps its other experts at their gates.
`reroute-sink`: at the sink positions (`sink=`, BOS by default) the experts the router chose are replaced by
`experts=` (default: the next top_k experts by router probability), with gates in proportion to their router
probabilities and rescaled to the total of the original top-k; every other token is untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from interventions.mechanisms import GateEdit
from interventions.protocol import register
from workbench.core import sites
from workbench.core.errors import InputError
from workbench.core.modelinfo import info
from workbench.core.sites import SinkSpec
from workbench.passes import PassContext

MODES = ("renorm", "zero")


def _reselect(gates: torch.Tensor, probs: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """New gates [n, E]: the top-k of `probs` among `allowed` [n, E] experts, rescaled to each row's old total."""
    masked = torch.where(allowed, probs, torch.zeros_like(probs))
    top, where = masked.topk(k, dim=-1)  # rows with fewer than k allowed experts pick zeros, which stay zero
    chosen = torch.zeros_like(probs).scatter(-1, where, top)
    total = gates.sum(-1, keepdim=True).float()
    return chosen * (total / chosen.sum(-1, keepdim=True).clamp_min(1e-30))


@register("prune-expert", "drop experts from routing (renormalised) or zero their output (Su et al. 2025)")
@dataclasses.dataclass(frozen=True)
class PruneExpert(GateEdit):
    experts: Any = None
    mode: str = "renorm"

    def expert_ids(self, model: Any) -> tuple[int, ...]:
        if self.experts is None:
            raise InputError("prune-expert: give experts= (e.g. experts=3 or experts=0,5); "
                             "`sinkbench probe super-experts` ranks them")
        return sites.parse_experts(self.experts, model)

    def validate(self, model: Any) -> None:
        super().validate(model)
        if self.mode not in MODES:
            raise InputError(f"prune-expert: mode {self.mode!r}: use one of {', '.join(MODES)}")
        model_info = info(model)
        chosen = self.expert_ids(model)
        if len(chosen) == model_info.n_experts:
            raise InputError(f"prune-expert: experts={self.experts!r} prunes all {model_info.n_experts} experts of "
                             f"the layer, which leaves the MoE nothing to route to: prune at most "
                             f"{model_info.n_experts - 1} (indices 0..{model_info.n_experts - 1})")

    def edit_gates(self, gates: torch.Tensor, probs: torch.Tensor, ctx: PassContext, layer: int) -> torch.Tensor:
        n_experts = gates.shape[-1]
        pruned = torch.zeros(n_experts, dtype=torch.bool, device=gates.device)
        pruned[list(self.expert_ids(ctx.model))] = True
        hit = ((gates > 0) & pruned).any(-1)  # [b, T]: tokens routed to a pruned expert
        if not hit.any():
            return gates
        new = gates.clone()
        if self.mode == "zero":
            new[hit] = gates[hit] * ~pruned
        else:
            k = info(ctx.model).top_k
            allowed = (~pruned).expand(int(hit.sum()), n_experts)
            new[hit] = _reselect(gates[hit], probs[hit], allowed, k).to(gates.dtype)
        return new


@register("reroute-sink", "send the sink token to other experts than the router chose")
@dataclasses.dataclass(frozen=True)
class RerouteSink(GateEdit):
    experts: Any = None
    sink: Any = "bos"
    sink_aware: ClassVar[bool] = True

    def validate(self, model: Any) -> None:
        super().validate(model)
        model_info = info(model)
        if self.experts is not None:
            chosen = sites.parse_experts(self.experts, model)
            if len(chosen) > model_info.top_k:
                raise InputError(f"reroute-sink: experts={self.experts!r} names {len(chosen)} experts; a token is "
                                 f"routed to top_k = {model_info.top_k} of {model_info.name}'s experts: give 1.."
                                 f"{model_info.top_k}")
        elif model_info.n_experts <= model_info.top_k:
            raise InputError(f"reroute-sink: {model_info.name} routes every token to all its {model_info.n_experts} "
                             "experts (top_k = n_experts): there is nowhere else to send the sink")
        spec = SinkSpec.parse(self.sink)
        if spec.kind == "auto":
            raise InputError("reroute-sink: give the sink as bos, positions or tok:TOKEN")
        if spec.kind == "tokens":
            spec.token_ids(model)

    def edit_gates(self, gates: torch.Tensor, probs: torch.Tensor, ctx: PassContext, layer: int) -> torch.Tensor:
        sink = ctx.sink
        if not sink.any():
            return gates
        n_experts = gates.shape[-1]
        at = gates[sink]  # [n, E]
        if self.experts is not None:
            allowed = torch.zeros(n_experts, dtype=torch.bool, device=gates.device)
            allowed[list(sites.parse_experts(self.experts, ctx.model))] = True
            allowed = allowed.expand_as(at)
            k = int(allowed[0].sum())
        else:
            allowed, k = at <= 0, info(ctx.model).top_k  # anything but the experts the router chose
        new = gates.clone()
        new[sink] = _reselect(at, probs[sink], allowed, k).to(gates.dtype)
        return new
