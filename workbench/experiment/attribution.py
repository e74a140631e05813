"""Attribution patching: estimate a whole (layer, head) sweep of an intervention from one forward and one
backward pass per batch (gradient x difference), instead of one forward pass per head.

    >>> est = attribution_sweep(model, data, "zero-implicit-bias")
    >>> exact = sweep(model, data, "zero-implicit-bias", over="head")
    >>> spearman(est, exact)                      # how well the cheap estimate ranks the heads

For head h of layer l the intervention changes that head's output z by dz (AttentionEdit:
(A' - A) v plus any added term; ValueEdit: A (v' - v) on the queries in scope), computed from the
clean activations. To first order the mean loss changes by <dL/dz, dz>, summed over the batch,
positions and d_head; heads are independent of each other at this order, so one backward pass
scores every head of every layer.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from interventions import AttentionEdit, ValueEdit
from interventions.mechanisms import pattern_edits_flow, rebuild_scores
from workbench import zoo
from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import InputError
from workbench.core.metrics import spearman as rank_correlation
from workbench.core.metrics import token_nll
from workbench.core.progress import progress_bar
from workbench.core.results import Results, provenance
from workbench.experiment.runner import as_intervention
from workbench.passes import PassContext, check_data


def attribution_sweep(model: Any, data: Dataset, intervention: Any, batch_size: int = 8,
                      progress: bool = True) -> Results:
    """Rows {"metric": "attribution_delta_loss", "layer", "head", "value"}: the first-order estimate of the
    change of the mean next-token loss when the intervention acts on that head alone."""
    started = time.perf_counter()
    base = as_intervention(intervention)
    model_info = zoo.info(model)
    if not model_info.causal:
        raise InputError(f"attribution estimates the change of the LM loss; {model_info.name} has no trained LM head")
    if not isinstance(base, (AttentionEdit, ValueEdit)):
        raise InputError(f"attribution patching needs a per-head intervention (attention or value edit); "
                         f"{base.name} is not one")
    if base.heads is not None:
        raise InputError("attribution scores every head at once: leave heads unset (layers may be restricted)")
    base.validate(model)
    check_data(model, data)
    state = base.prepare(model, data, batch_size, progress)
    layers = base.layer_ids(model)
    flows = pattern_edits_flow(model)
    device = next(model.parameters()).device
    estimate = torch.zeros(len(layers), model_info.n_heads, dtype=torch.float64)
    n_tokens = 0
    suffixes = ["attn.hook_pattern", "attn.hook_v", "attn.hook_z"]
    if not flows or (isinstance(base, AttentionEdit) and base.needs_scores):
        suffixes += ["attn.hook_q", "attn.hook_k"] if not flows else ["attn.hook_attn_scores"]
    for index, tokens in progress_bar(list(data.batches(batch_size)), desc="attribution", enabled=progress):
        tokens = tokens.to(device)
        spec = base.sink_spec()
        key = spec.key_mask(tokens, model, index=index)
        ctx = PassContext(model, tokens, slice(0, tokens.shape[0]), key, sites.query_mask(key, True), state,
                          index=list(index))
        acts: dict[tuple[int, str], torch.Tensor] = {}

        def keep(layer: int, suffix: str, acts: dict = acts):
            def fn(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
                acts[(layer, suffix)] = tensor
                return tensor  # returned, so the forward continues from this very tensor and its gradient exists
            return fn

        hooks = [(sites.hook(layer, suffix), keep(layer, suffix)) for layer in layers for suffix in suffixes]
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            loss = token_nll(model(tokens), tokens).sum()
            grads = torch.autograd.grad(loss, [acts[(layer, "attn.hook_z")] for layer in layers])
        for i, layer in enumerate(layers):
            dz = _delta_z(base, ctx, layer, acts, model_info, flows)  # [b, q, H, d]
            estimate[i] += (grads[i].detach().float() * dz).sum(dim=(0, 1, 3)).double().cpu()
        n_tokens += tokens.shape[0] * (tokens.shape[1] - 1)
    estimate /= n_tokens
    rows = [{"experiment": f"attribution:{base.name}", "model": model_info.name,
             "intervention": f"{base.name}@L{layer}H{head}",  # the key the exact sweep gives the same head
             "metric": "attribution_delta_loss", "layer": layer, "head": head, "value": float(estimate[i, head])}
            for i, layer in enumerate(layers) for head in range(model_info.n_heads)]
    header = provenance(f"attribution:{base.name}", model, data, intervention=base.spec(),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def _delta_z(base: Any, ctx: PassContext, layer: int, acts: dict, model_info: Any, flows: bool) -> torch.Tensor:
    pattern = acts[(layer, "attn.hook_pattern")].detach().float()
    raw_value = acts[(layer, "attn.hook_v")].detach().float()
    value = raw_value.repeat_interleave(model_info.group_size, dim=2) if model_info.group_size > 1 else raw_value
    if isinstance(base, AttentionEdit):
        scores = None
        if base.needs_scores:
            scores = acts[(layer, "attn.hook_attn_scores")].detach() if flows else \
                rebuild_scores(acts[(layer, "attn.hook_q")].detach(), acts[(layer, "attn.hook_k")].detach(), True)
        new, extra = base.edit(pattern, ctx, layer, scores)
        dz = torch.einsum("bhqk,bkhd->bqhd", (new - pattern) if new is not None else torch.zeros_like(pattern), value)
        return dz + extra if extra is not None else dz
    where = base.edit_positions(ctx)
    proposed = base.new_values(raw_value, ctx, layer, where).float()
    delta_v = torch.where(where[:, :, None, None], proposed - raw_value, torch.zeros_like(raw_value))
    if model_info.group_size > 1:
        delta_v = delta_v.repeat_interleave(model_info.group_size, dim=2)
    dz = torch.einsum("bhqk,bkhd->bqhd", pattern, delta_v)
    queries = torch.ones_like(ctx.queries) if base.all_queries else ctx.queries
    return dz * queries[:, :, None, None]


def spearman(estimate: Results, exact: Results, exact_metric: str = "delta_loss") -> float:
    """Spearman rank correlation between an attribution estimate and an exact (layer, head) sweep (average
    ranks for ties; numpy only: workbench.core.metrics.spearman compares any two sequences)."""
    guess = {(r["layer"], r["head"]): r["value"] for r in estimate.filter(metric="attribution_delta_loss")}
    truth = {(r["layer"], r["head"]): r["value"] for r in exact.filter(metric=exact_metric)
             if r.get("head") is not None}
    common = sorted(set(guess) & set(truth))
    if len(common) < 3:
        raise InputError(f"need at least 3 (layer, head) pairs in both results, found {len(common)}")
    return rank_correlation([guess[k] for k in common], [truth[k] for k in common])
