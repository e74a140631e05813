"""Attribution patching: estimate a whole (layer, head) sweep of an intervention from a few forward and backward
passes instead of one forward pass per head, and check the estimate against exact patching.

    >>> est = attribution_sweep(model, data, "mask-sink", mode="atp*")      # ~10 passes instead of 270
    >>> exact = sweep(model, data, "mask-sink", over="head")
    >>> spearman(est, exact), top_k_recall(est, exact, k=10)                  # does it rank heads like the sweep?
    >>> verify_attribution(model, data, "mask-sink", est, top_k=20, n_random=20)   # exact on candidates + sample

The node is the output z of head h in layer l (before W_O), [b, q, d_head]. The intervention acting on that head
alone changes it by dz, computed exactly from the clean activations, at the level the edit acts:
- AttentionEdit: dz = (A' - A) v + e, with A' the edited rows recomputed exactly (mask-sink, scale-sink: the
  renormalised rows; zero-head: A' = 0; zero-implicit-bias: A'[q, s] = 0) and e the edit's own z term;
- ValueEdit: dz = A (v' - v) on the queries in scope.
L is the summed next-token NLL, N the number of predicted tokens; the exact sweep's `delta_loss` is the change of
L / N. Three estimates of that change (`mode=`):

- `atp` (Nanda 2023; Kramár et al. 2024 eq. 4): one forward + backward per batch,
      I_h = <dL/dz_h, dz_h> / N.
  For an attention edit <dL/dz, (A' - A) v> = <dL/dA, A' - A> (dL/dA = dL/dz v^T): since A' is recomputed exactly
  and never linearised through the softmax, this is already AtP*'s QK fix for every edit of the catalogue.
- `atp*` (Kramár et al. 2024, §3.1-3.2): the QK-fixed estimate above plus GradDrop (eq. 11). Backward pass l'
  drops the gradient through layer l''s residual contribution (hook_attn_out + hook_mlp_out), giving I_h^(l'):
      c_h = 1 / (L_layers - 1) * sum_l' |I_h^(l')|.
  For a head in layer l, I^(l') = I for l' < l (a layer below is not on any path from z_l) and I^(l) = 0, so only
  the layers above need a backward pass; `graddrop=n` drops n of them, evenly spaced (the missing terms above l
  are their mean), `graddrop="all"` every one (eq. 11 exactly). The value reported is sign(I_h) * c_h, so that it
  estimates the signed `delta_loss` the sweep measures.
- `ig` (EAP-IG, Hanna et al. 2024, activations variant): the heads in scope are dealt into `groups` groups (a
  Latin square: head h of the i-th layer in scope goes to group (h + i) mod groups when groups = heads per layer,
  so no two heads of one layer share a path and each group takes another head of each layer), and the heads S of
  one group are shifted together along the straight line z_S + alpha dz, alpha in [0, 1], on top of the live
  activations (every other head, those of S included, is recomputed from the shifted residual stream, as it is
  when the exact sweep edits one head):
      IG_h = sum_k w_k <dL/dz_h |z_S + alpha_k dz_S, dz_h> / N,    h in S,
  with Gauss-Legendre nodes alpha_k and weights w_k on [0, 1] (`steps`; steps=1 is the midpoint alpha = 1/2).
  A head alone in its group integrates its own exact path, so it converges to its exact change (groups = number
  of heads is the exact sweep, at its cost); within a group sum_h IG_h is the change when every head of S is
  shifted by its dz. Fewer groups share paths, and a head's gradient then also feels the other heads of its
  group (cross terms). The defaults (9 groups x 1 step + the clean pass: 10 passes) were chosen on SmolLM2
  (bench/attribution.py): a joint path (groups=1) ranks worst, random groups (which put heads of one layer on
  one path) ranked worse than one head per layer (zero-implicit-bias Spearman 0.83 vs 0.91), and shifting the
  live z ranked better than overwriting z_S with clean + alpha dz, which freezes S and cuts every path from a
  head through the later heads of its group (Spearman 0.91 / 0.76 / 0.80 vs 0.85 / 0.74 / 0.76 for
  zero-implicit-bias / mask-sink / zero-head, with the same groups). Which heads share a path still moves the
  result: five Latin squares (`seed`) span 0.81-0.89 / 0.77-0.84 / 0.71-0.82 in Spearman. The sharing is what
  costs: every head on its own path (groups = heads, 271 passes) ranks at 0.97 / 0.97 / 0.98, 27 groups (28
  passes) at 0.94 / 0.93 / 0.91 (bench/attribution.py --ceiling, --tradeoff).

Cost (provenance "cost" and the column `cost_fb`): forward and backward passes over the whole data; the cost in
forward+backward equivalents is max(forwards, backwards), i.e. a forward alone and a backward alone (GradDrop's
extra passes) each count as one - an upper bound (a backward is ~2 forwards: "flop_fb" = (F + 2 B) / 3). The exact
sweep is n_units + 1 forward passes (270 + 1 on SmolLM2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from interventions import AttentionEdit, ValueEdit
from interventions.mechanisms import pattern_edits_flow, rebuild_scores
from workbench import attention, zoo
from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import InputError, check_range
from workbench.core.metrics import spearman as rank_correlation
from workbench.core.metrics import token_nll
from workbench.core.progress import progress_bar
from workbench.core.results import Results, provenance
from workbench.experiment.runner import as_intervention, run, sweep_units
from workbench.passes import PassContext, check_data

MODES = {"atp": "gradient x difference, 1 forward + 1 backward (QK-exact for pattern edits)",
         "atp*": "AtP* (Kramar et al. 2024): QK-exact edit + GradDrop, 1 forward + 1 + n backward",
         "ig": "integrated gradients along clean -> edited head outputs (Hanna et al. 2024), groups x steps paths"}
METRIC = "attribution_delta_loss"


def check_mode(mode: Any) -> str:
    """The estimate mode, or one InputError naming the allowed ones."""
    if mode not in MODES:
        raise InputError(f"attribution mode {mode!r} is not known: allowed {', '.join(MODES)} "
                         "(atp: gradient x difference; atp*: + GradDrop; ig: integrated gradients)")
    return mode


def attribution_sweep(model: Any, data: Dataset, intervention: Any, batch_size: int = 8, progress: bool = True, *,
                      mode: str = "atp", layers: Any = None, heads: Any = None, steps: int = 1, groups: int = 9,
                      graddrop: int | str | Sequence[int] = 9, seed: int | None = None) -> Results:
    """Estimate the per-head sweep of an intervention: rows {"metric": "attribution_delta_loss", "layer", "head",
    "value", "mode", "cost_fb"}, one per (layer, head), keyed like the exact sweep's units.

        >>> est = attribution_sweep(model, data, "zero-head", mode="ig", groups=9, steps=1)
        >>> est.provenance["cost"]["fb_equivalents"]                 # 10 (9 groups x 1 step + the clean pass)

    `layers` / `heads` select the heads estimated (default: the intervention's layers, every head), as in
    `sweep`; the intervention itself must leave heads unset. ig: `groups` paths of `steps` quadrature nodes each
    (Hanna et al. use 5-30 steps) and `seed`, the grouping (None: the cyclic Latin square; a number: a random
    one, each layer's heads shuffled, still one head of every layer per group: rerunning with a few seeds shows
    how much an estimate owes to which heads shared a path); atp*: `graddrop`, the dropped layers (a count,
    evenly spaced; "all"; or explicit layer ids; 0 = none). Cost: atp 1, atp* 1 + dropped layers, ig 1 + groups
    x steps (+1 for an intervention that needs a first pass of statistics).
    """
    started = time.perf_counter()
    mode = check_mode(mode)
    base = as_intervention(intervention)
    model_info = zoo.info(model)
    if not model_info.causal:
        raise InputError(f"attribution estimates the change of the LM loss; {model_info.name} has no trained LM head")
    if not isinstance(base, (AttentionEdit, ValueEdit)):
        raise InputError(f"attribution patching needs a per-head intervention (attention or value edit); "
                         f"{base.name} is not one")
    if base.heads is not None:
        raise InputError("attribution scores every head at once: leave heads unset (layers may be restricted; "
                         "select heads with heads=)")
    base.validate(model)
    check_data(model, data)
    attention.require_full(model, min(batch_size, len(data)), max(data.lengths), "attribution patching")
    layer_ids = sites.parse_layers(layers, model) if layers is not None else base.layer_ids(model)
    head_ids = sites.parse_heads(heads, model)
    steps = check_range("ig steps", steps, 1, 1000)
    if seed is not None:
        seed = check_range("ig grouping seed", seed, 0, (1 << 32) - 1)
    groups = min(check_range("ig groups", groups, 1, 1 << 20), len(layer_ids) * len(head_ids))
    drops = _graddrop_layers(graddrop, layer_ids, model_info.n_layers) if mode == "atp*" else []
    if drops:
        _require_hooks(model, drops)
    cost = _Cost()
    state = base.prepare(model, data, batch_size, progress)
    if state is not None:
        cost.forward += 1  # the intervention's first pass (statistics over the data)
    estimator = _Estimator(model, base, state, layer_ids, head_ids)
    n_tokens = 0
    plain = torch.zeros(len(layer_ids), model_info.n_heads, dtype=torch.float64)
    dropped = torch.zeros(len(drops), len(layer_ids), model_info.n_heads, dtype=torch.float64)
    batches = list(data.batches(batch_size))
    rows_total = sum(t.shape[0] for _, t in batches)
    for index, tokens in progress_bar(batches, desc=f"attribution ({mode})", enabled=progress):
        tokens = tokens.to(estimator.device)
        share = tokens.shape[0] / rows_total  # passes are counted over the whole data
        if mode == "ig":
            plain += estimator.integrated(tokens, index, steps, groups, seed)
            cost.forward += share * (groups * steps + 1)
            cost.backward += share * groups * steps
        else:
            first, per_drop = estimator.gradient_x_difference(tokens, index, drops)
            plain += first
            if drops:
                dropped += per_drop
            cost.forward += share
            cost.backward += share * (1 + len(drops))
        n_tokens += tokens.shape[0] * (tokens.shape[1] - 1)
    plain /= n_tokens
    value = plain
    if drops:
        value = _graddrop_score(plain, dropped / n_tokens, drops, layer_ids, model_info.n_layers)
    fb = cost.fb()
    rows = [{"experiment": f"attribution:{base.name}", "model": model_info.name,
             "intervention": f"{base.name}@L{layer}H{head}",  # the key the exact sweep gives the same head
             "metric": METRIC, "layer": layer, "head": head, "value": float(value[i, head]), "mode": mode,
             "cost_fb": fb}
            for i, layer in enumerate(layer_ids) for head in head_ids]
    n_units = len(layer_ids) * len(head_ids)
    header = provenance(f"attribution:{base.name}", model, data, intervention=base.spec(), mode=mode,
                        mode_description=MODES[mode], batch_size=batch_size,
                        steps=steps if mode == "ig" else None, groups=groups if mode == "ig" else None,
                        grouping_seed=seed if mode == "ig" else None,
                        graddrop_layers=list(drops) if mode == "atp*" else None,
                        cost={**cost.summary(), "exact_sweep_forward_passes": n_units + 1},
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


# --------------------------------------------------------------------------------------------------
# The estimators
# --------------------------------------------------------------------------------------------------

_RESIDUAL_CONTRIBUTIONS = ("hook_attn_out", "hook_mlp_out")


class _Cost:
    """Passes over the whole data (a batch of a quarter of the sequences counts a quarter)."""

    def __init__(self) -> None:
        self.forward = 0.0
        self.backward = 0.0

    def fb(self) -> float:
        return round(max(self.forward, self.backward), 3)

    def summary(self) -> dict:
        return {"forward_passes": round(self.forward, 3), "backward_passes": round(self.backward, 3),
                "fb_equivalents": self.fb(), "flop_fb": round((self.forward + 2 * self.backward) / 3, 3)}


class _GradGate(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by gates[layer], read when the backward runs, so
    one forward pass serves several backward passes that each drop another layer's gradient (GradDrop)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, gates: list, layer: int) -> torch.Tensor:
        ctx.gates, ctx.layer = gates, layer
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        return grad * ctx.gates[ctx.layer], None, None


def _require_hooks(model: Any, layers: Sequence[int]) -> None:
    missing = [sites.hook(layer, s) for layer in layers for s in _RESIDUAL_CONTRIBUTIONS
               if sites.hook(layer, s) not in model.hook_dict]
    if missing:
        raise InputError(f"atp* (GradDrop) drops the gradient at each layer's residual contribution, but "
                         f"{zoo.info(model).name} has no hook {missing[0]}; use mode='atp' or 'ig'")


def _graddrop_layers(graddrop: Any, layer_ids: Sequence[int], n_layers: int) -> list[int]:
    """The layers whose residual contribution a GradDrop backward pass drops: only those above the lowest head
    estimated change anything (see the module docstring)."""
    candidates = list(range(min(layer_ids) + 1, n_layers))
    if graddrop == "all":
        return candidates
    if isinstance(graddrop, (list, tuple)):
        chosen = sorted({int(layer) for layer in graddrop})
        bad = [layer for layer in chosen if not 0 <= layer < n_layers]
        if bad:
            raise InputError(f"graddrop layer {bad[0]} is out of range: allowed 0..{n_layers - 1}")
        return [layer for layer in chosen if layer in candidates]
    if isinstance(graddrop, bool) or not isinstance(graddrop, int):
        raise InputError(f"graddrop must be a number of layers, 'all' or a list of layer ids, got {graddrop!r}")
    count = check_range("graddrop (number of dropped layers)", graddrop, 0, 1 << 20)
    if count == 0 or not candidates:
        return []
    if count >= len(candidates):
        return candidates
    picks = np.floor(np.linspace(candidates[0], candidates[-1], count) + 0.5).astype(int)
    return sorted(set(int(p) for p in picks))


def _graddrop_score(plain: torch.Tensor, dropped: torch.Tensor, drops: list[int], layer_ids: Sequence[int],
                    n_layers: int) -> torch.Tensor:
    """sign(I) / (L - 1) * sum_l' |I^(l')| (Kramár et al. 2024 eq. 11): l' below the head's layer give I itself,
    l' = its layer 0, l' above it the dropped passes (their mean stands in for layers not dropped)."""
    out = torch.zeros_like(plain)
    for i, layer in enumerate(layer_ids):
        above = [j for j, d in enumerate(drops) if d > layer]
        n_above = n_layers - 1 - layer
        mean_above = dropped[above, i].abs().mean(0) if above else plain[i].abs()
        total = layer * plain[i].abs() + (n_above * mean_above if n_above > 0 else 0.0)
        out[i] = torch.sign(plain[i]) * total / max(n_layers - 1, 1)
    return out


class _Estimator:
    """One batch at a time: the clean activations, dz of every head in scope, and the gradients."""

    def __init__(self, model: Any, base: Any, state: Any, layer_ids: Sequence[int], head_ids: Sequence[int]):
        self.model, self.base, self.state = model, base, state
        self.info = zoo.info(model)
        self.layers = list(layer_ids)
        self.heads = list(head_ids)
        self.flows = pattern_edits_flow(model)
        self.device = next(model.parameters()).device
        suffixes = ["attn.hook_pattern", "attn.hook_v", "attn.hook_z"]
        if not self.flows or (isinstance(base, AttentionEdit) and base.needs_scores):
            suffixes += ["attn.hook_q", "attn.hook_k"] if not self.flows else ["attn.hook_attn_scores"]
        self.suffixes = suffixes
        mask = torch.zeros(self.info.n_heads, dtype=torch.bool)
        mask[self.heads] = True
        self.head_mask = mask.to(self.device)

    def context(self, tokens: torch.Tensor, index: Sequence[int]) -> PassContext:
        key = self.base.sink_spec().key_mask(tokens, self.model, index=index)
        return PassContext(self.model, tokens, slice(0, tokens.shape[0]), key, sites.query_mask(key, True),
                           self.state, index=list(index))

    def _keep(self, acts: dict, layer: int, suffix: str):
        def fn(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
            acts[(layer, suffix)] = tensor
            return tensor  # returned, so the forward continues from this very tensor and its gradient exists
        return fn

    def delta_z(self, ctx: PassContext, acts: dict) -> dict[int, torch.Tensor]:
        """dz [b, q, H, d] per layer: zero for heads outside the scope."""
        out = {}
        for layer in self.layers:
            dz = _delta_z(self.base, ctx, layer, acts, self.info, self.flows)
            out[layer] = dz * self.head_mask[None, None, :, None]
        return out

    def gradient_x_difference(self, tokens: torch.Tensor, index: Sequence[int],
                              drops: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """sum <dL/dz_h, dz_h> per head with the full gradient, and per dropped layer (GradDrop)."""
        ctx = self.context(tokens, index)
        acts: dict = {}
        gates = [1.0] * self.info.n_layers

        def gate(layer: int):
            def fn(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
                return _GradGate.apply(tensor, gates, layer)
            return fn

        hooks = [(sites.hook(layer, s), self._keep(acts, layer, s)) for layer in self.layers for s in self.suffixes]
        hooks += [(sites.hook(layer, s), gate(layer)) for layer in drops for s in _RESIDUAL_CONTRIBUTIONS]
        with torch.enable_grad(), self.model.hooks(fwd_hooks=hooks):
            loss = token_nll(self.model(tokens), tokens).sum()
            zs = [acts[(layer, "attn.hook_z")] for layer in self.layers]
            grads = torch.autograd.grad(loss, zs, retain_graph=bool(drops))
            dz = self.delta_z(ctx, acts)
            first = self._dot(grads, dz, self.layers)
            per_drop = torch.zeros(len(drops), len(self.layers), self.info.n_heads, dtype=torch.float64)
            for j, dropped in enumerate(drops):
                below = [i for i, layer in enumerate(self.layers) if layer < dropped]
                gates[dropped] = 0.0
                some = torch.autograd.grad(loss, [zs[i] for i in below], retain_graph=j < len(drops) - 1)
                gates[dropped] = 1.0
                per_drop[j, below] = self._dot(some, dz, [self.layers[i] for i in below])
                # layers at or above the dropped one: I^(l') = 0 (own layer) or I (never read: see _graddrop_score)
        return first, per_drop

    def integrated(self, tokens: torch.Tensor, index: Sequence[int], steps: int, groups: int,
                   seed: int | None = None) -> torch.Tensor:
        """sum_k w_k <dL/dz_h |z(alpha_k), dz_h> per head, z(alpha) = z + alpha dz on every head of h's group
        (see `_groups`): the shift is added to the live z, so every head is still recomputed from the residual
        stream the shifted heads below it wrote."""
        ctx = self.context(tokens, index)
        acts: dict = {}
        hooks = [(sites.hook(layer, s), self._keep(acts, layer, s)) for layer in self.layers for s in self.suffixes]
        with torch.no_grad(), self.model.hooks(fwd_hooks=hooks):
            self.model(tokens)
        dz = self.delta_z(ctx, acts)
        del acts
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
        total = torch.zeros(len(self.layers), self.info.n_heads, dtype=torch.float64)
        for members in _groups(self.layers, self.heads, groups, seed):
            masks = {}
            for layer, head in members:
                masks.setdefault(layer, torch.zeros(self.info.n_heads, dtype=torch.bool, device=self.device))[head] = True
            layers = sorted(masks)
            for node, weight in zip((nodes + 1) / 2, weights / 2):
                moved: dict[int, torch.Tensor] = {}

                def along(layer: int, alpha: float = float(node), moved: dict = moved, masks: dict = masks):
                    def fn(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
                        shift = alpha * dz[layer] * masks[layer][None, None, :, None]
                        new = tensor + shift.to(tensor.dtype)  # live z: later heads of S still respond
                        if not new.requires_grad:
                            new.requires_grad_(True)
                        moved[layer] = new
                        return new
                    return fn

                with torch.enable_grad(), self.model.hooks(fwd_hooks=[(sites.z(layer), along(layer))
                                                                      for layer in layers]):
                    loss = token_nll(self.model(tokens), tokens).sum()
                    grads = torch.autograd.grad(loss, [moved[layer] for layer in layers])
                dots = self._dot(grads, {layer: dz[layer] * masks[layer][None, None, :, None] for layer in layers},
                                 layers)
                for j, layer in enumerate(layers):
                    total[self.layers.index(layer)] += float(weight) * dots[j]
        return total

    def _dot(self, grads: Sequence[torch.Tensor], dz: dict, layers: Sequence[int]) -> torch.Tensor:
        out = torch.zeros(len(layers), self.info.n_heads, dtype=torch.float64)
        for i, (grad, layer) in enumerate(zip(grads, layers)):
            out[i] = (grad.detach().float() * dz[layer]).sum(dim=(0, 1, 3)).double().cpu()
        return out


def _groups(layers: Sequence[int], heads: Sequence[int], count: int,
            seed: int | None = None) -> list[list[tuple[int, int]]]:
    """The heads in scope dealt into `count` groups as a Latin square: head j (its index among `heads`) of the
    i-th layer takes slot p = i * n + (pi_i(j) + i) mod n (n = len(heads), a bijection), and group p mod count,
    with pi_i the identity, or with `seed` a random permutation per layer. With count = n, group g holds the head
    pi_i^-1((g - i) mod n) of layer i: one head of every layer, another one per layer."""
    n = len(heads)
    count = min(count, len(layers) * n)
    rng = np.random.default_rng(seed) if seed is not None else None
    out: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    for i, layer in enumerate(layers):
        order = rng.permutation(n) if rng is not None else np.arange(n)
        for j, head in enumerate(heads):
            out[(i * n + (int(order[j]) + i) % n) % count].append((layer, head))
    return out


def _delta_z(base: Any, ctx: PassContext, layer: int, acts: dict, model_info: Any, flows: bool) -> torch.Tensor:
    """dz [b, q, H, d] of every head of a layer when the intervention acts on that head alone, from the clean
    activations: exact edited rows A' (never linearised through the softmax) or exact new values."""
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


# --------------------------------------------------------------------------------------------------
# Comparing with the exact sweep, and verifying
# --------------------------------------------------------------------------------------------------


def _per_head(results: Results, metric: str) -> dict[tuple[int, int], float]:
    return {(int(r["layer"]), int(r["head"])): r["value"] for r in results.filter(metric=metric)
            if r.get("head") is not None and r.get("layer") is not None}


def _common(estimate: Results, exact: Results, exact_metric: str) -> tuple[list, dict, dict]:
    guess, truth = _per_head(estimate, METRIC), _per_head(exact, exact_metric)
    common = sorted(set(guess) & set(truth))
    if len(common) < 3:
        raise InputError(f"need at least 3 (layer, head) pairs in both results, found {len(common)}")
    return common, guess, truth


def spearman(estimate: Results, exact: Results, exact_metric: str = "delta_loss") -> float:
    """Spearman rank correlation between an attribution estimate and an exact (layer, head) sweep, over the heads
    both hold (average ranks for ties; numpy only: workbench.core.metrics.spearman compares any two sequences)."""
    common, guess, truth = _common(estimate, exact, exact_metric)
    return rank_correlation([guess[k] for k in common], [truth[k] for k in common])


def largest(values: dict[tuple[int, int], float], k: int) -> list[tuple[int, int]]:
    """The k heads of largest |value| (ties broken by (layer, head), so the choice is reproducible)."""
    return sorted(values, key=lambda key: (-abs(values[key]), key))[:k]


def top_k_recall(estimate: Results, exact: Results, k: int = 10, exact_metric: str = "delta_loss") -> float:
    """Of the exact sweep's k heads of largest |effect|, the fraction among the estimate's k largest |estimates|
    (over the heads both hold)."""
    common, guess, truth = _common(estimate, exact, exact_metric)
    k = check_range("k", k, 1, len(common))
    keep = set(common)
    return len(set(largest({h: guess[h] for h in keep}, k)) & set(largest({h: truth[h] for h in keep}, k))) / k


def compare(estimate: Results, exact: Results, k: int = 10, exact_metric: str = "delta_loss") -> dict:
    """Spearman, top-k recall and cost of an estimate against an exact sweep, as one dict (bench, figure)."""
    cost = estimate.provenance.get("cost") or {}
    return {"spearman": spearman(estimate, exact, exact_metric), f"top{k}_recall": top_k_recall(estimate, exact, k,
                                                                                                exact_metric),
            "mode": estimate.provenance.get("mode"), "cost_fb": cost.get("fb_equivalents"),
            "exact_fb": cost.get("exact_sweep_forward_passes")}


def _binomial_upper(hits: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a binomial rate (bisection on the binomial CDF)."""
    if n == 0:
        return 1.0
    if hits >= n:
        return 1.0

    def cdf(p: float) -> float:
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(hits + 1))

    low, high = hits / n, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) > 1 - confidence else (low, mid)
    return high


def verify_attribution(model: Any, data: Dataset, intervention: Any, estimate: Results | None = None, *,
                       mode: str = "ig", top_k: int = 20, n_random: int = 20, k: int = 10, seed: int = 0,
                       exact: Results | None = None, batch_size: int = 8, progress: bool = True,
                       **estimate_options: Any) -> Results:
    """Estimate, then patch exactly only the estimate's `top_k` heads plus `n_random` heads drawn from the rest
    (Kramár et al. 2024 §4: bounding the false negatives), through the runner.

        >>> check = verify_attribution(model, data, "mask-sink", mode="ig", top_k=20, n_random=20)
        >>> check.value("verified_top10_found"), check.value("missed_top10_upper")

    Rows: `delta_loss` (with its CI, from `experiment.run`) of every verified head, with "candidate" ("top-k" or
    "random") and its "estimate"; then, with layer = head = None:
    - `verified_top10_found`: of the k largest exact |effects| among the verified heads, how many the estimate
      put in its top_k (the threshold tau is the k-th largest verified |effect|);
    - `random_above_threshold`: how many of the random sample reach tau (false negatives caught by chance);
    - `missed_top10_upper`: the expected number of unverified heads that reach tau (value) and its one-sided 95 %
      Clopper-Pearson upper bound (ci_high), from the random sample's rate;
    - with `exact=` (a full sweep): `exact_top10_found` (the exact top-k heads that were verified) and
      `estimate_top10_recall` (`top_k_recall` of the estimate itself).
    Cost: the estimate's plus top_k + n_random (+1 baseline) forward passes (provenance "cost").
    """
    started = time.perf_counter()
    check_mode(mode)
    base = as_intervention(intervention)
    if estimate is None:
        estimate = attribution_sweep(model, data, base, batch_size, progress, mode=mode, **estimate_options)
    guess = _per_head(estimate, METRIC)
    check_range("k", k, 1, len(guess))
    check_range("top_k", top_k, k, len(guess))
    check_range("n_random", n_random, 0, len(guess) - top_k)
    candidates = largest(guess, top_k)
    rest = sorted(set(guess) - set(candidates))
    rng = np.random.default_rng(seed)
    sample = [rest[i] for i in sorted(rng.choice(len(rest), size=n_random, replace=False))] if n_random else []
    chosen = set(candidates) | set(sample)
    units = [u for u in sweep_units(model, base, "head", sorted({h[0] for h in guess}), sorted({h[1] for h in guess}))
             if (u.columns["layer"], u.columns["head"]) in chosen]
    state_cache: dict = {}

    def states() -> dict:
        if "state" not in state_cache:
            state_cache["state"] = base.prepare(model, data, batch_size, progress)
        return {u.key: state_cache["state"] for u in units}

    measured = run(model, data, units=units, states=states, metrics=("delta_loss",), batch_size=batch_size,
                   progress=progress, seed=seed, experiment=f"verify:{base.name}")
    truth = _per_head(measured, "delta_loss")
    kind = {h: "top-k" for h in candidates} | {h: "random" for h in sample}
    rows = [{**r, "candidate": kind[(r["layer"], r["head"])], "estimate": guess[(r["layer"], r["head"])]}
            for r in measured.filter(metric="delta_loss") if r.get("head") is not None]
    verified_top = largest(truth, k)
    tau = abs(truth[verified_top[-1]])
    found = sum(1 for h in verified_top if h in set(candidates))
    above = sum(1 for h in sample if abs(truth[h]) >= tau)
    unverified = len(guess) - len(chosen)
    rate, upper = (above / n_random, _binomial_upper(above, n_random)) if n_random else (math.nan, 1.0)
    summary = {"experiment": f"verify:{base.name}", "model": zoo.info(model).name, "intervention": base.name,
               "layer": None, "head": None}
    rows += [{**summary, "metric": f"verified_top{k}_found", "value": float(found), "n": k},
             {**summary, "metric": "random_above_threshold", "value": float(above), "n": n_random, "threshold": tau},
             {**summary, "metric": f"missed_top{k}_upper", "value": rate * unverified, "ci_low": 0.0,
              "ci_high": upper * unverified, "n": unverified, "threshold": tau}]
    if exact is not None:
        full = _per_head(exact, "delta_loss")
        exact_top = largest(full, k)
        rows += [{**summary, "metric": f"exact_top{k}_found", "value": float(sum(1 for h in exact_top if h in chosen)),
                  "n": k},
                 {**summary, "metric": f"estimate_top{k}_recall", "value": top_k_recall(estimate, exact, k)}]
    cost = dict(estimate.provenance.get("cost") or {})
    verify_forwards = len(units) + 1
    cost = {**cost, "verify_forward_passes": verify_forwards,
            "total_fb_equivalents": round((cost.get("fb_equivalents") or 0) + verify_forwards, 3)}
    header = provenance(f"verify:{base.name}", model, data, seed=seed, intervention=base.spec(),
                        mode=estimate.provenance.get("mode"), top_k=top_k, n_random=n_random, k=k,
                        candidates=[list(h) for h in candidates], random_sample=[list(h) for h in sample],
                        cost=cost, wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)

