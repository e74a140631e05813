"""Sinks in Mixture-of-Experts models: where does the router send the sink token, and which experts write the
massive activations that sit on it ("super experts", Su et al. 2025, arXiv 2507.23279)?

    >>> res = routing(model, data)                             # per layer: load and entropy, sink vs the rest
    >>> res.filter(metric="sink_top_expert").df                # the expert the sink is routed to most
    >>> ranked = super_experts(model, data)                    # experts ranked by what they write on the sink
    >>> ranked.filter(metric="super_expert").df                # the top (layer, expert) pairs over the model

Both read the router through TransformerLens 4.3's MoE hooks (`workbench.core.sites.expert_weights`,
`expert_indices`, `router_logits`; the router sees tokens = batch x positions), on the OLMoE, Mixtral and
Qwen2-MoE adapters and on the MoE toys (`workbench.toy`, `n_experts > 0`). Token classes: `sink` (the sink
positions of `sink=`, BOS by default) and `other` (every other position).

`routing` rows, per layer:
- `expert_load` (expert, token_class): the share of the class's routed slots (tokens x top_k) that go to the
  expert (sums to 1 over experts); `gate_weight` (expert, token_class): the mean gate weight it gets (0 where the
  token is not routed to it);
- `routing_entropy` (token_class): mean entropy (nats) of softmax(router logits) per token, of at most
  log(n_experts) (uniform); low at the sink = the sink is routed decisively;
- `sink_top_expert` (expert): the expert with the largest mean gate weight at the sink, with the share of sink
  tokens sent to it (value) and `other_share`, the share of the other tokens sent to it;
- `load_imbalance` (token_class): max over experts of `expert_load` x n_experts (1 = balanced).

`super_experts` rows, per (layer, expert), at the sink positions (means over sink occurrences); g_e is the
expert's gate weight (0 when the sink is not routed to it) and o_e its (ungated) output, computed from the MoE
block's input (`sites.moe_in`) with the model's own expert weights (the bridge's batched experts have no
per-expert hook; on the toy `hook_expert_out` holds the same numbers):
- `massive_contribution`: sum over the massive dims D of |g_e o_e[D]|; `massive_share`: its share of the sum over
  experts (of the routed experts' output on D; a shared expert, Qwen2-MoE's, is not an expert here);
- `output_norm`: ||g_e o_e|| (what the expert writes at the sink); `raw_output_norm`: ||o_e|| (were it routed);
- `routed_share`: the share of sink occurrences whose top-k contains the expert;
- `rank`: its rank within the layer by `massive_contribution`;
per layer `sink_massive`: mean |resid_post| at the sink on D, and `massive_ratio`: that over the layer's median
|resid_post| (the median of each batch, averaged); and the
model-wide `super_expert` rows (rank 1..`top`, over all (layer, expert) pairs by `massive_contribution`).
The massive dims D are `dims=` when given, else the `n_dims` dims of largest mean |resid_post| at the sink in
the last probed layer (Sun et al. 2024's massive activations sit at fixed dims of the sink; see
`massive-activations` for whether they are massive at all: `massive_ratio` says how far above the median).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import InputError, check_range
from workbench.core.results import Results, provenance
from workbench.core.sites import SinkSpec
from workbench.passes import Hook, PassContext, probe_pass

CLASSES = ("sink", "other")


def _suffix(name: str) -> str:
    """`blocks.0.mlp.gate.hook_out` -> `mlp.gate.hook_out` (probe_pass hooks blocks.{l}.SUFFIX)."""
    return name.split(".", 2)[2]


def _per_position(tensor: torch.Tensor, ctx: PassContext) -> torch.Tensor:
    """Router tensors come per token [b * T, ...]; back to [b, T, ...] (row b * T + t)."""
    batch, length = ctx.tokens.shape
    return tensor.reshape(batch, length, *tensor.shape[1:])


def routing(model: Any, data: Dataset, layers: Any = None, sink: Any = "bos", batch_size: int = 8,
            progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """Per layer: expert load, gate weights and routing entropy for the sink vs the other tokens, and the experts
    the sink is routed to.

        >>> routing(model, data).filter(metric="routing_entropy").df
    """
    started = time.perf_counter()
    model_info = sites.require_experts(model, "routing")
    layer_ids = sites.parse_layers(layers, model)
    spec = SinkSpec.parse(sink)
    n_experts = model_info.n_experts
    state = {layer: {c: {"slots": torch.zeros(n_experts, dtype=torch.float64),
                         "routed": torch.zeros(n_experts, dtype=torch.float64),
                         "gates": torch.zeros(n_experts, dtype=torch.float64),
                         "entropy": 0.0, "tokens": 0} for c in CLASSES} for layer in layer_ids}

    def classes(ctx: PassContext) -> dict[str, torch.Tensor]:
        return {"sink": ctx.sink, "other": ~ctx.sink}

    def on_logits(layer: int, logits: torch.Tensor, ctx: PassContext) -> None:
        probs = _per_position(logits.float(), ctx).softmax(-1)  # [b, T, E]
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)  # [b, T]
        for name, mask in classes(ctx).items():
            state[layer][name]["entropy"] += float(entropy[mask].sum())
            state[layer][name]["tokens"] += int(mask.sum())

    def on_weights(layer: int, weights: torch.Tensor, ctx: PassContext) -> None:
        gates = _per_position(weights.float(), ctx)  # [b, T, E]
        for name, mask in classes(ctx).items():
            state[layer][name]["gates"] += gates[mask].sum(0).double().cpu()

    def on_indices(layer: int, indices: torch.Tensor, ctx: PassContext) -> None:
        chosen = F.one_hot(_per_position(indices.long(), ctx), n_experts).float()  # [b, T, k, E]
        for name, mask in classes(ctx).items():
            picked = chosen[mask]  # [n, k, E]
            state[layer][name]["slots"] += picked.sum((0, 1)).double().cpu()
            state[layer][name]["routed"] += picked.amax(1).sum(0).double().cpu()

    readers = [(_suffix(sites.router_logits(0)), on_logits), (_suffix(sites.expert_weights(0)), on_weights),
               (_suffix(sites.expert_indices(0)), on_indices)]
    probe_pass(model, data, readers, layer_ids, spec, batch_size, progress, desc="routing", hooks=hooks)
    common = {"experiment": "probe:routing", "model": model_info.name, "head": None}
    rows = []
    for layer in layer_ids:
        entry = state[layer]
        for name in CLASSES:
            counts = entry[name]
            tokens = max(counts["tokens"], 1)
            load = counts["slots"] / counts["slots"].sum().clamp_min(1.0)
            rows.append({"metric": "routing_entropy", "layer": layer, "token_class": name,
                         "value": counts["entropy"] / tokens, "n": counts["tokens"], **common})
            rows.append({"metric": "load_imbalance", "layer": layer, "token_class": name,
                         "value": float(load.max()) * n_experts, "n": counts["tokens"], **common})
            for expert in range(n_experts):
                rows.append({"metric": "expert_load", "layer": layer, "expert": expert, "token_class": name,
                             "value": float(load[expert]), "n": counts["tokens"], **common})
                rows.append({"metric": "gate_weight", "layer": layer, "expert": expert, "token_class": name,
                             "value": float(counts["gates"][expert]) / tokens, "n": counts["tokens"], **common})
        sink_routed = entry["sink"]["routed"] / max(entry["sink"]["tokens"], 1)
        other_routed = entry["other"]["routed"] / max(entry["other"]["tokens"], 1)
        top = int(entry["sink"]["gates"].argmax())  # the largest mean gate: ties of the routed share broken
        rows.append({"metric": "sink_top_expert", "layer": layer, "expert": top, "value": float(sink_routed[top]),
                     "other_share": float(other_routed[top]), "n": entry["sink"]["tokens"], **common})
    header = provenance("probe:routing", model, data, sink=spec.label, layers=list(layer_ids), n_experts=n_experts,
                        top_k=model_info.top_k, max_entropy=math.log(n_experts),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


# --------------------------------------------------------------------------------------------------
# Each expert's output, from the model's own weights
# --------------------------------------------------------------------------------------------------


def _unwrap(module: Any) -> Any:
    """The module that owns the weights, below any TransformerLens bridge wrappers."""
    while isinstance(getattr(module, "original_component", None), torch.nn.Module):
        module = module.original_component
    return module


def expert_outputs(model: Any, layer: int, x: torch.Tensor) -> torch.Tensor:
    """Every routed expert's ungated output for the MoE inputs x [n, d_model] -> [n, n_experts, d_model].

        >>> expert_outputs(model, 0, resid[sink])            # what each expert would write at the sink

    The toy's experts (`workbench.toy.model.MoE.expert`), or transformers' batched experts (OLMoE, Mixtral,
    Qwen2-MoE: `gate_up_proj` [E, 2I, d], `down_proj` [E, d, I], `act_fn`; `is_transposed` layouts too)."""
    block = _unwrap(model.blocks[layer].mlp)
    if callable(getattr(block, "expert", None)):  # the toy
        return torch.stack([block.expert(x, e) for e in range(block.cfg.n_experts)], dim=1)
    experts = getattr(block, "experts", None)
    experts = _unwrap(experts) if experts is not None else None
    gate_up, down = getattr(experts, "gate_up_proj", None), getattr(experts, "down_proj", None)
    if not isinstance(gate_up, torch.Tensor) or not isinstance(down, torch.Tensor) or gate_up.ndim != 3:
        raise InputError(f"layer {layer} of this model has no batched experts (gate_up_proj / down_proj) to read "
                         "each expert's output from; supported: OLMoE, Mixtral, Qwen2-MoE and the MoE toys")
    if getattr(experts, "is_transposed", False):  # [E, d, 2I] and [E, I, d]
        gate_up, down = gate_up.transpose(1, 2), down.transpose(1, 2)
    x = x.to(gate_up.dtype)
    gate, up = torch.einsum("nd,eid->nei", x, gate_up).chunk(2, dim=-1)  # [n, E, I] each
    return torch.einsum("nei,edi->ned", experts.act_fn(gate) * up, down)  # [n, E, d]


def super_experts(model: Any, data: Dataset, layers: Any = None, sink: Any = "bos", dims: Any = None,
                  n_dims: int = 2, top: int = 5, batch_size: int = 8, progress: bool = True,
                  hooks: Sequence[Hook] = ()) -> Results:
    """Experts ranked per layer by what they write on the massive dims at the sink, and by their output norms.

        >>> super_experts(model, data).filter(metric="super_expert").df        # (layer, expert) by rank
    """
    started = time.perf_counter()
    model_info = sites.require_experts(model, "super-experts")
    layer_ids = sites.parse_layers(layers, model)
    check_range("n_dims", n_dims, 1, model_info.d_model)
    check_range("top", top, 1, 1 << 20)
    given = (sites._parse_index_spec(dims, model_info.d_model, "residual dimension", model_info.name)
             if dims is not None else None)
    spec = SinkSpec.parse(sink)
    n_experts, width = model_info.n_experts, model_info.d_model
    zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
    state = {layer: {"abs_gated": zeros(n_experts, width), "gated_norm": zeros(n_experts),
                     "raw_norm": zeros(n_experts), "routed": zeros(n_experts), "resid": zeros(width),
                     "medians": [], "count": 0} for layer in layer_ids}

    def on_input(layer: int, x: torch.Tensor, ctx: PassContext) -> None:
        ctx.scratch[("moe_in", layer)] = x[ctx.sink].float()  # [n, d]

    def on_weights(layer: int, weights: torch.Tensor, ctx: PassContext) -> None:
        x = ctx.scratch.pop(("moe_in", layer))
        gates = _per_position(weights.float(), ctx)[ctx.sink]  # [n, E]
        with torch.no_grad():
            outputs = expert_outputs(model, layer, x).float()  # [n, E, d]
        gated = gates[..., None] * outputs
        entry = state[layer]
        entry["abs_gated"] += gated.abs().sum(0).double().cpu()
        entry["gated_norm"] += gated.norm(dim=-1).sum(0).double().cpu()
        entry["raw_norm"] += outputs.norm(dim=-1).sum(0).double().cpu()
        entry["routed"] += (gates > 0).sum(0).double().cpu()
        entry["count"] += int(x.shape[0])

    def on_resid(layer: int, resid: torch.Tensor, ctx: PassContext) -> None:
        state[layer]["resid"] += resid[ctx.sink].float().abs().sum(0).double().cpu()
        state[layer]["medians"].append(float(resid.float().abs().median()))

    readers = [(_suffix(sites.moe_in(0)), on_input), (_suffix(sites.expert_weights(0)), on_weights),
               (sites.RESID_POST, on_resid)]
    probe_pass(model, data, readers, layer_ids, spec, batch_size, progress, desc="super experts", hooks=hooks)
    last = state[layer_ids[-1]]
    chosen = list(given) if given is not None else \
        torch.topk(last["resid"] / max(last["count"], 1), n_dims).indices.sort().values.tolist()
    common = {"experiment": "probe:super-experts", "model": model_info.name, "head": None}
    rows, pairs = [], []
    for layer in layer_ids:
        entry = state[layer]
        count = max(entry["count"], 1)
        contribution = entry["abs_gated"][:, chosen].sum(1) / count  # [E]
        share = contribution / contribution.sum().clamp_min(1e-30)
        order = torch.argsort(contribution, descending=True).tolist()
        median = sum(entry["medians"]) / max(len(entry["medians"]), 1)
        at_sink = float(entry["resid"][chosen].mean()) / count
        rows.append({"metric": "sink_massive", "layer": layer, "value": at_sink, "dims": ",".join(map(str, chosen)),
                     "n": entry["count"], **common})
        rows.append({"metric": "massive_ratio", "layer": layer, "value": at_sink / max(median, 1e-30),
                     "dims": ",".join(map(str, chosen)), "n": entry["count"], **common})
        for rank, expert in enumerate(order, 1):
            extra = {"layer": layer, "expert": expert, "n": entry["count"], **common}
            rows += [{"metric": "massive_contribution", "value": float(contribution[expert]), **extra},
                     {"metric": "massive_share", "value": float(share[expert]), **extra},
                     {"metric": "output_norm", "value": float(entry["gated_norm"][expert]) / count, **extra},
                     {"metric": "raw_output_norm", "value": float(entry["raw_norm"][expert]) / count, **extra},
                     {"metric": "routed_share", "value": float(entry["routed"][expert]) / count, **extra},
                     {"metric": "rank", "value": rank, **extra}]
            pairs.append((float(contribution[expert]), float(share[expert]), layer, expert))
    for rank, (value, share, layer, expert) in enumerate(sorted(pairs, key=lambda p: -p[0])[:top], 1):
        rows.append({"metric": "super_expert", "layer": layer, "expert": expert, "rank": rank, "value": value,
                     "massive_share": share, **common})
    header = provenance("probe:super-experts", model, data, sink=spec.label, layers=list(layer_ids),
                        dims=chosen, dims_from="given" if given is not None else f"top {n_dims} at the sink, "
                        f"layer {layer_ids[-1]}", n_experts=n_experts, top_k=model_info.top_k,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def summarize_routing(results: Results) -> str:
    frame = results.df
    lines = ["layer  entropy sink / other (nats)  sink -> expert (share of sinks; of other tokens)  imbalance other"]
    for layer in sorted(frame.layer.dropna().unique()):
        at = frame[frame.layer == layer]
        ent = at[at.metric == "routing_entropy"].set_index("token_class").value
        top = at[at.metric == "sink_top_expert"].iloc[0]
        imbalance = at[(at.metric == "load_imbalance") & (at.token_class == "other")].value.iloc[0]
        lines.append(f"  {int(layer):>3}  {ent['sink']:6.3f} / {ent['other']:6.3f}            expert "
                     f"{int(top.expert):>3} ({top.value:.2f}; {top.other_share:.2f})"
                     f"{'':24}{imbalance:6.2f}")
    lines.append(f"  (uniform routing: entropy {results.provenance.get('max_entropy', float('nan')):.3f}; "
                 f"{results.provenance.get('n_experts')} experts, top-{results.provenance.get('top_k')})")
    return "\n".join(lines)


def summarize_super_experts(results: Results) -> str:
    frame = results.df
    top = frame[frame.metric == "super_expert"].sort_values("rank")
    lines = [f"massive dims at the sink: {results.provenance.get('dims')} ({results.provenance.get('dims_from')})",
             "rank  layer  expert  |g o| on the dims  share of the layer"]
    for row in top.itertuples():
        lines.append(f"  {int(row.rank):>3}  {int(row.layer):>5}  {int(row.expert):>6}  {row.value:16.4f}  "
                     f"{row.massive_share:8.3f}")
    ratio = frame[frame.metric == "massive_ratio"].set_index("layer").value
    lines.append("massive_ratio per layer (|resid| on the dims at the sink / median): "
                 + ", ".join(f"{int(k)}: {v:.1f}" for k, v in ratio.items()))
    return "\n".join(lines)
