"""The three mechanisms that serve the whole catalogue; a new intervention subclasses one and writes one method.

    >>> @register("sharpen-sink")
    ... class SharpenSink(AttentionEdit):
    ...     power: float = 2.0
    ...     def edit(self, pattern, ctx, layer, scores=None):
    ...         sharpened = pattern ** self.power
    ...         return sharpened / sharpened.sum(-1, keepdim=True), None

- `AttentionEdit.edit(pattern, ctx, layer, scores)`: change the post-softmax pattern of the heads in
  scope (and optionally add a term to their output z). On adapters whose `hook_pattern` edits flow into
  the output (Llama, Gemma 3, the toys) the edit is applied there. The BERT adapter fires
  `hook_pattern` after the HF module consumed the weights (edits are discarded), so there the pattern is
  rebuilt from `hook_q`/`hook_k` (exactly: max |diff| 0.0 measured) and the edit is applied to the
  head outputs as z += (A' - A) v.
- `ValueEdit.new_values(values, ctx, layer)`: change value vectors at some key positions (really, at
  `hook_v`). Under GQA one value head serves several query heads (TransformerLens 4 has no per-query-head
  K/V hooks), so the edit reaches every query head of the group; the (query, head) pairs outside the
  intervention's scope are restored exactly at `hook_z` (z -= A (v' - v)), which keeps the
  intervention per query head.
- `ResidualEdit.edit_residual(resid, ctx, layer)`: change the residual stream after a block.
- `GateEdit.edit_gates(gates, probs, ctx, layer)`: change the routing of Mixture-of-Experts layers (the gate
  weights at `mlp.hook_expert_weights`; the top-k is re-derived from the edited gates).

Every edited tensor is checked: NaN or inf raises InterventionError naming the intervention and layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from interventions.protocol import Intervention
from workbench import attention
from workbench.core import sites
from workbench.core.errors import InputError, InterventionError
from workbench.core.metrics import all_finite
from workbench.core.modelinfo import info
from workbench.core.sites import SinkSpec
from workbench.passes import Hook, PassContext


def pattern_edits_flow(model: Any) -> bool:
    """Whether an edit at `hook_pattern` reaches the model's output on this adapter (checked once, by
    zeroing layer 0's pattern on a short input, and remembered on the model). Inside
    `workbench.attention.blockwise` the workbench computes the pattern itself, so edits always flow."""
    if attention.active(model) is not None:
        return True
    cached = getattr(model, "_sinkbench_pattern_edits_flow", None)
    if cached is not None:
        return cached
    inputs = sites.sample_input(model)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = model(inputs)
        with model.hooks(fwd_hooks=[(sites.pattern(0), lambda t, hook: torch.zeros_like(t))]):
            after = model(inputs)
    flows = not torch.equal(before, after)
    object.__setattr__(model, "_sinkbench_pattern_edits_flow", flows)
    return flows


def _check_finite(tensor: torch.Tensor, who: Intervention, where: str) -> None:
    if not all_finite(tensor):
        raise InterventionError(f"intervention {who} produced NaN/inf at {where}; check its parameters")


# --------------------------------------------------------------------------------------------------
# Scoped interventions: layers x heads x sink
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Helpers for edits of the pattern (public: a new AttentionEdit uses them)
# --------------------------------------------------------------------------------------------------

_TINY = 1e-30


def sink_columns(ctx: PassContext) -> torch.Tensor:
    """[b, 1, 1, k] bool: the sink keys of each row, shaped to broadcast against a pattern [b, h, q, k].

        >>> masked = pattern * ~sink_columns(ctx)                     # A[q, s] = 0 for every sink key s
    """
    return ctx.sink[:, None, None, :]


def in_scope_rows(ctx: PassContext) -> torch.Tensor:
    """[b, 1, q, 1] bool: the queries in scope (they see a sink and are not one; on a causal model q after the
    first sink), shaped to broadcast against a pattern [b, h, q, k].

        >>> edited = torch.where(in_scope_rows(ctx), new, pattern)     # leave the other rows as they were
    """
    return ctx.queries[:, None, :, None]


def renormalise(pattern: torch.Tensor, edited: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Edited rows rescaled to the total weight the row had before the edit, for rows in scope whose edited
    sum is positive; others unchanged.

        >>> renormalise(pattern, pattern * ~sink_columns(ctx), in_scope_rows(ctx))    # mask-sink

    pattern, edited [b, h, q, k]; rows [b, 1|h, q, 1] bool. For a softmax the total is 1 (the usual
    renormalisation); for rows that do not sum to 1 (the toy's softmax+1, sink-logit and kv-bias variants,
    whose extra slot keeps its weight; sigmoid and ReLU attention) the weight taken from the sink is spread
    over the other keys. A row whose whole mass was on the sink (q = 0 of a causal model) stays unchanged
    rather than dividing by zero."""
    total = edited.sum(-1, keepdim=True)
    before = pattern.sum(-1, keepdim=True)
    scaled = rows & (total > _TINY)  # [b, h, q, 1]
    out = edited * torch.where(scaled, before / total.clamp_min(_TINY), 1.0)
    kept = ~scaled[..., 0]  # the rows left as they were (few: q = 0, out of scope): restored row by row, instead
    kept = kept.expand(out.shape[:3])  # of a where() over the whole [b, h, q, k] tensor
    out[kept] = pattern.expand_as(out)[kept].to(out.dtype)
    return out


@dataclasses.dataclass(frozen=True)
class Scoped(Intervention):
    """An intervention on some layers and (query) heads, relative to a sink; default every layer and head,
    sink = BOS (position 0; [CLS] on encoders). `sink` is anything `SinkSpec.parse` reads: a spec string
    (`bos`, `0,5`, `tok:.`, `first:tok:.`, ...), positions, a [sequences, T] bool mask or a function
    tokens -> mask (the per-sequence sinks of the last three change from sequence to sequence)."""

    layers: Any = None
    heads: Any = None
    sink: Any = "bos"
    sink_aware: ClassVar[bool] = True

    def layer_ids(self, model: Any) -> tuple[int, ...]:
        return sites.parse_layers(self.layers, model)

    def head_ids(self, model: Any) -> tuple[int, ...]:
        return sites.parse_heads(self.heads, model)

    def validate(self, model: Any) -> None:
        super().validate(model)
        sites.require_pattern_hooks(model)
        self.layer_ids(model)
        self.head_ids(model)
        spec = SinkSpec.parse(self.sink)
        if spec.kind == "tokens":
            spec.token_ids(model)
        if spec.kind == "auto":
            raise InputError(f"{self.name}: an auto sink is not supported in interventions; give bos, positions "
                             "or tok:TOKEN (find positions with `sinkbench probe sinks --sink auto:EPS`)")


@dataclasses.dataclass(frozen=True)
class AttentionEdit(Scoped):
    """Change the post-softmax attention of the heads in scope: subclasses implement `edit`.

        >>> @register("sharpen-sink")
        ... class SharpenSink(AttentionEdit):
        ...     power: float = 2.0                                 # a parameter: a dataclass field
        ...     def edit(self, pattern, ctx, layer, scores=None):
        ...         sharpened = torch.where(sink_columns(ctx), pattern ** (1 / self.power), pattern)
        ...         return renormalise(pattern, sharpened, in_scope_rows(ctx)), None

    The contract of `edit(pattern, ctx, layer, scores)`, for a unit of b sequences of T positions and the h
    heads in scope (`heads=`; all by default):
    - `pattern` [b, h, q, k] float: post-softmax weights of this unit's rows (q = k = T), already restricted
      to the heads in scope; on a causal model the keys after q are 0;
    - `ctx` (workbench.passes.PassContext): `ctx.sink` [b, k] bool, the sink keys of each sequence (from
      `sink=`: fixed positions, every occurrence of a token, its first occurrence per sequence, a mask or a
      function); `ctx.queries` [b, q] bool, the queries in scope (they see a sink and are not one);
      `ctx.tokens` [b, T] the token ids; `ctx.index` the dataset sequence of each row; `ctx.state` what
      `prepare` computed (None by default); `ctx.model` the model; `ctx.scratch` a dict shared by every hook
      of the forward pass;
    - `layer`: the block (one of `layers=`);
    - `scores` [b, h, q, k]: the pre-softmax scores (masked keys at the dtype's minimum), given only when the
      class sets `needs_scores = True` (else None): on adapters without a pre-softmax hook (BERT) they are
      rebuilt as q k^T / sqrt(d_head).
    It returns (new pattern [b, h, q, k] or None for "unchanged", extra term added to the head outputs z
    [b, q, h, d_head] or None). Helpers: `sink_columns(ctx)` [b, 1, 1, k] and `in_scope_rows(ctx)` [b, 1, q,
    1] broadcast against the pattern; `renormalise(pattern, edited, rows)` rescales edited rows to their
    total before the edit. The edit must not change rows out of scope (leave q = 0 of a causal model as it
    is), and must return finite values: NaN/inf raise InterventionError naming the intervention and layer.
    The same edit runs unchanged on every adapter (the BERT adapter applies it as z += (A' - A) v), in
    sweeps (one unit per layer / head), in compositions (`a + b`) and in attribution patching.
    """

    needs_scores: ClassVar[bool] = False

    def edit(self, pattern: torch.Tensor, ctx: PassContext, layer: int,
             scores: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """pattern [b, h, q, k] (this unit's rows, heads in scope) -> (new pattern or None,
        extra term added to z [b, q, h, d_head] or None); see the class docstring for the whole contract."""
        raise NotImplementedError

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        heads = list(self.head_ids(model))
        out: list[Hook] = []
        flows = pattern_edits_flow(model)
        for layer in self.layer_ids(model):
            out += (_flowing_hooks if flows else _rebuilt_hooks)(self, model, ctx, layer, heads)
        return out


def _covers(tensor: torch.Tensor, rows: slice, heads: list[int], head_dim: int) -> bool:
    """Whether (rows, heads) is the whole tensor: then an edit replaces it without a copy."""
    return rows.start == 0 and rows.stop == tensor.shape[0] and heads == list(range(tensor.shape[head_dim]))


def _flowing_hooks(edit: AttentionEdit, model: Any, ctx: PassContext, layer: int, heads: list[int]) -> list[Hook]:
    rows = ctx.rows
    key = ("edit", id(edit), id(ctx), layer)

    def select(tensor: torch.Tensor) -> torch.Tensor:
        return tensor if _covers(tensor, rows, heads, 1) else tensor[rows][:, heads]

    def on_scores(tensor: torch.Tensor, hook: Any) -> None:
        ctx.scratch[key + ("scores",)] = select(tensor)

    def on_pattern(tensor: torch.Tensor, hook: Any) -> torch.Tensor | None:
        # blockwise: tensor holds one block of query rows, and the edit sees them through ctx.for_block()
        new, extra = edit.edit(select(tensor), ctx.for_block(), layer, ctx.scratch.pop(key + ("scores",), None))
        if extra is not None:
            _check_finite(extra, edit, f"layer {layer} (z term)")
            ctx.scratch[key + ("dz",)] = extra
        if new is None:
            return None
        _check_finite(new, edit, f"layer {layer} (attention pattern)")
        if _covers(tensor, rows, heads, 1):
            return new.to(tensor.dtype)
        out = tensor.clone()
        out[rows, heads] = new.to(out.dtype)
        return out

    def on_z(tensor: torch.Tensor, hook: Any) -> torch.Tensor | None:
        extra = ctx.scratch.pop(key + ("dz",), None)
        if extra is None:
            return None
        if _covers(tensor, rows, heads, 2):
            return tensor + extra.to(tensor.dtype)
        out = tensor.clone()
        out[rows, :, heads] += extra.to(out.dtype)
        return out

    hooks = [(sites.pattern(layer), on_pattern), (sites.z(layer), on_z)]
    return ([(sites.scores(layer), on_scores)] if edit.needs_scores else []) + hooks


def rebuild_scores(q: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    """Pre-softmax scores from hook_q/hook_k ([b, T, h, d] / [b, T, kv, d]) for adapters without a
    pre-softmax hook (BERT): q k^T / sqrt(d_head), causal mask applied where the model is causal."""
    if k.shape[2] != q.shape[2]:
        k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    if causal:
        length = scores.shape[-1]
        mask = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
    return scores


def _rebuilt_hooks(edit: AttentionEdit, model: Any, ctx: PassContext, layer: int, heads: list[int]) -> list[Hook]:
    """For adapters whose hook_pattern cannot be edited: rebuild the pattern from q and k at hook_z and
    apply z += (A' - A) v (+ the edit's extra term). Edits of several interventions on one layer chain
    through the shared scratch (each sees the pattern the previous one produced)."""
    rows = ctx.rows
    model_info = info(model)
    shared = ("acts", id(ctx.scratch), layer)

    def keep(kind: str):
        def read(tensor: torch.Tensor, hook: Any) -> None:
            ctx.scratch[shared + (kind,)] = tensor
        return read

    def on_z(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
        q, k, v = (ctx.scratch[shared + (kind,)] for kind in ("q", "k", "v"))
        scores = rebuild_scores(q[rows], k[rows], model_info.causal)  # [b, H, q, k]
        current_key = shared + ("pattern", rows.start, rows.stop)
        current = ctx.scratch.get(current_key)
        if current is None:
            current = torch.softmax(scores, dim=-1)
        pattern = current[:, heads]
        new, extra = edit.edit(pattern, ctx, layer, scores[:, heads] if edit.needs_scores else None)
        value = v[rows].float()
        if value.shape[2] != model_info.n_heads:
            value = value.repeat_interleave(model_info.n_heads // value.shape[2], dim=2)
        delta = torch.zeros_like(tensor[rows][:, :, heads], dtype=torch.float32)
        if new is not None:
            _check_finite(new, edit, f"layer {layer} (attention pattern)")
            delta = delta + torch.einsum("bhqk,bkhd->bqhd", new - pattern, value[:, :, heads])
            updated = current.clone()
            updated[:, heads] = new
            ctx.scratch[current_key] = updated
        if extra is not None:
            _check_finite(extra, edit, f"layer {layer} (z term)")
            delta = delta + extra
        out = tensor.clone()
        out[rows, :, heads] += delta.to(out.dtype)
        return out

    return [(sites.q(layer), keep("q")), (sites.k(layer), keep("k")),
            (sites.v(layer), keep("v")), (sites.z(layer), on_z)]


@dataclasses.dataclass(frozen=True)
class ValueEdit(Scoped):
    """Change value vectors at some key positions; subclasses implement `new_values` (and `edit_positions`).

    `all_queries`: whether every query sees the new values (activation patching) or only the queries in
    scope (the sink-value interventions: q >= 1 on a causal model); out-of-scope pairs are restored.
    """

    all_queries: ClassVar[bool] = False

    def edit_positions(self, ctx: PassContext) -> torch.Tensor:
        """[b, T] bool: the key positions whose values are edited (default: the sink keys)."""
        return ctx.sink

    def new_values(self, values: torch.Tensor, ctx: PassContext, layer: int, where: torch.Tensor) -> torch.Tensor:
        """values [b, T, kv, d] (this unit's rows) -> the edited values at every position (only `where` and the
        KV heads serving the heads in scope are used)."""
        raise NotImplementedError

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        model_info = info(model)
        heads = self.head_ids(model)
        group = model_info.group_size
        kv_heads = sorted({h // group for h in heads})
        in_scope_head = torch.zeros(model_info.n_heads, dtype=torch.bool)
        in_scope_head[list(heads)] = True
        flows = pattern_edits_flow(model)
        rows = ctx.rows
        out: list[Hook] = []
        where = self.edit_positions(ctx)  # [b, T]: the keys whose values change
        for layer in self.layer_ids(model):
            key = ("value", id(self), id(ctx), layer)

            def on_v(tensor: torch.Tensor, hook: Any, layer: int = layer, key: tuple = key) -> torch.Tensor:
                original = tensor[rows]
                proposed = self.new_values(original, ctx, layer, where).to(tensor.dtype)
                _check_finite(proposed, self, f"layer {layer} (value vectors)")
                mask = torch.zeros(original.shape[:3], dtype=torch.bool, device=tensor.device)  # [b, T, kv]
                mask[:, :, kv_heads] = where[:, :, None]
                edited = torch.where(mask[..., None], proposed, original)
                ctx.scratch[key + ("dv",)] = (edited - original).float()  # [b, T, kv, d]
                out_tensor = tensor.clone()
                out_tensor[rows] = edited
                return out_tensor

            def on_columns(weights: torch.Tensor, columns: torch.Tensor, key: tuple = key) -> None:
                ctx.scratch[key + ("columns",)] = (weights, columns)  # A[q, j] on the edited keys only

            def keep(kind: str, key: tuple = key):
                def read(tensor: torch.Tensor, hook: Any) -> None:
                    ctx.scratch[key + (kind,)] = tensor[rows]
                return read

            def on_z(tensor: torch.Tensor, hook: Any, key: tuple = key) -> torch.Tensor:
                view = ctx.for_block()  # blockwise: z and the pattern hold one block of query rows
                last = view.block is None or view.block.last  # hook_v fired once: keep dv until the last block
                delta_v = ctx.scratch.pop(key + ("dv",)) if last else ctx.scratch[key + ("dv",)]
                delta_v = delta_v.repeat_interleave(group, dim=2) if group > 1 else delta_v  # [b, T, H, d]
                found = ctx.scratch.pop(key + ("columns",), None)
                if found is not None:  # dv is zero off the edited keys: their columns of the pattern suffice
                    pattern, delta_v = found[0], delta_v[:, found[1]]
                else:  # the adapter fires hook_pattern too late: rebuild it from q and k
                    pattern = torch.softmax(rebuild_scores(ctx.scratch.pop(key + ("q",)), ctx.scratch.pop(key + ("k",)),
                                                           model_info.causal), dim=-1)
                # (query, head) pairs that must NOT see the new values: restore them
                queries = torch.ones_like(view.queries) if self.all_queries else view.queries
                outside = ~(queries[:, :, None] & in_scope_head.to(tensor.device)[None, None, :])  # [b, q, H]
                restore = torch.einsum("bhqk,bkhd->bqhd", pattern.float(), delta_v) * outside[..., None]
                out_tensor = tensor.clone()
                out_tensor[rows] -= restore.to(out_tensor.dtype)
                return out_tensor

            out.append((sites.v(layer), on_v))
            if flows:  # a KeyReader: on a blockwise pass the layer may run fused and compute just these columns
                out.append((sites.pattern(layer), attention.KeyReader(where, on_columns, rows=rows, columns=True)))
            else:
                out += [(sites.q(layer), keep("q")), (sites.k(layer), keep("k"))]
            out.append((sites.z(layer), on_z))
        return out


@dataclasses.dataclass(frozen=True)
class ResidualEdit(Intervention):
    """Change the residual stream after a block (`blocks.{l}.hook_resid_post`); subclasses implement
    `edit_residual`."""

    layers: Any = None

    def target_layers(self, model: Any, state: Any) -> tuple[int, ...]:
        return sites.parse_layers(self.layers, model)

    def edit_residual(self, resid: torch.Tensor, ctx: PassContext, layer: int) -> torch.Tensor:
        raise NotImplementedError

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        rows = ctx.rows
        out: list[Hook] = []
        for layer in self.target_layers(model, ctx.state):
            def on_resid(tensor: torch.Tensor, hook: Any, layer: int = layer) -> torch.Tensor:
                new = self.edit_residual(tensor[rows], ctx, layer)
                _check_finite(new, self, f"layer {layer} (residual stream)")
                result = tensor.clone()
                result[rows] = new.to(result.dtype)
                return result
            out.append((sites.resid(layer), on_resid))
        return out


@dataclasses.dataclass(frozen=True)
class GateEdit(Intervention):
    """Change the routing of Mixture-of-Experts layers (issue 19): subclasses implement `edit_gates`.

        >>> @register("drop-expert-0")
        ... class DropExpertZero(GateEdit):
        ...     def edit_gates(self, gates, probs, ctx, layer):
        ...         return gates * (torch.arange(gates.shape[-1], device=gates.device) != 0)

    The edit is applied at `blocks.{l}.mlp.hook_expert_weights` (workbench.core.sites.expert_weights), where
    TransformerLens 4.3's MoERouterBridge (OLMoE, Mixtral, Qwen2-MoE) and the MoE toy hand over the gates
    scattered to [tokens, n_experts]: an edited tensor re-derives each token's top-k (its k largest entries) and
    its values are used as they are, with no renormalisation after the hook. The router logits
    (`mlp.gate.hook_out`) fire just before; the bridge fires them after the HF router has chosen, so an edit
    there would be discarded: the mechanism only reads them. Contract of `edit_gates(gates, probs, ctx, layer)`:
    - `gates` [b, T, E]: this unit's gate weights (0 outside each token's top-k);
    - `probs` [b, T, E] float32: softmax of the router logits (over every expert, as the router computed them);
    - `ctx`: the PassContext (`ctx.sink` [b, T] the sink positions; `ctx.tokens`, `ctx.state`, ...);
    it returns the new gates [b, T, E]: at most top_k nonzero entries per token (the bridge keeps the k largest),
    finite. A token whose row is returned unchanged is computed exactly as before (when no row changes, the
    hook hands back nothing and the router's own choice stands). Under a batch-independent context
    (`PassContext.batch_independent`, what `experiment.batch_hooks` hands a probe's `hooks=`) the edit sees every
    token of the forward pass as one row, `gates` [1, tokens, E]: edits that need no sink positions
    (`prune-expert`) run there too.
    """

    layers: Any = None

    def layer_ids(self, model: Any) -> tuple[int, ...]:
        return sites.parse_layers(self.layers, model)

    def validate(self, model: Any) -> None:
        super().validate(model)
        sites.require_experts(model, self.name)
        self.layer_ids(model)

    def edit_gates(self, gates: torch.Tensor, probs: torch.Tensor, ctx: PassContext, layer: int) -> torch.Tensor:
        """gates, probs [b, T, E] -> the new gates [b, T, E] (see the class docstring)."""
        raise NotImplementedError

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        rows, length = ctx.rows, ctx.tokens.shape[1]
        if ctx.tokens.numel() == 0:  # batch-independent: every token of the pass is one row
            rows, length = slice(None), None
        out: list[Hook] = []
        for layer in self.layer_ids(model):
            key = ("router", id(self), id(ctx), layer)

            def on_logits(tensor: torch.Tensor, hook: Any, key: tuple = key) -> None:
                ctx.scratch[key] = tensor.detach()

            def on_weights(tensor: torch.Tensor, hook: Any, layer: int = layer, key: tuple = key) -> Any:
                logits = ctx.scratch.pop(key)
                full = tensor.reshape(-1 if length else 1, length or -1, tensor.shape[-1])  # [B, T, E]: b * T + t
                probs = logits.reshape(full.shape).float().softmax(-1)[rows]
                original = full[rows]
                new = self.edit_gates(original, probs, ctx, layer)
                _check_finite(new, self, f"layer {layer} (expert gates)")
                if torch.equal(new.to(original.dtype), original):
                    return None
                edited = full.clone()
                edited[rows] = new.to(edited.dtype)
                return edited.reshape(tensor.shape)

            out += [(sites.router_logits(layer), on_logits), (sites.expert_weights(layer), on_weights)]
        return out
