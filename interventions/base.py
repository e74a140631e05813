"""The intervention protocol: small value objects that turn into TransformerLens hooks.

    >>> from interventions import get
    >>> iv = get("scale-sink", gamma=0.5, layers="3-10")       # validate(model) fails before any forward
    >>> both = iv + get("zero-sink-value", layers=20)          # composition
    >>> with workbench.hooked(model, both): logits = model(tokens)

An intervention is a frozen dataclass: its fields are its declared parameters, its repr is readable
(`scale-sink(gamma=0.5, layers='3-10')`), `spec()` is saved in a result's provenance and
`from_spec` rebuilds it. It carries no model state between runs: statistics that an intervention needs
(the means of `mean-implicit-bias`, a patch source's values) are computed by `prepare` for each run
and handed back through the context.

Three generic mechanisms serve the whole catalogue; a new intervention subclasses one of them and
writes one method:
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

Every edited tensor is checked: NaN or inf raises InterventionError naming the intervention and layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from workbench.core import sites
from workbench.core.errors import InputError, InterventionError
from workbench.core.modelinfo import info
from workbench.core.sites import SinkSpec

CATALOGUE: dict[str, type[Intervention]] = {}

Hook = tuple[str, Callable[[torch.Tensor, Any], torch.Tensor | None]]


def register(name: str, summary: str = ""):
    """Class decorator: add an intervention to the catalogue under `name` (then it works in the runner,
    the CLI and TOML specs)."""
    def wrap(cls):
        if "__dataclass_fields__" not in cls.__dict__:  # a plain subclass: make its own fields parameters
            cls = dataclasses.dataclass(frozen=True)(cls)
        if name in CATALOGUE and CATALOGUE[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"intervention {name!r} is registered twice")
        doc = (cls.__doc__ or "").strip()
        cls.name = name
        cls.summary = summary or (doc.splitlines()[0] if doc else name)
        CATALOGUE[name] = cls
        return cls
    return wrap


# --------------------------------------------------------------------------------------------------
# Context of one forward pass
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class UnitContext:
    """What an intervention's hooks see in one forward pass.

    The runner may stack several interventions in one forward pass: `rows` are this one's rows of the
    batch, `tokens`, `sink` and `queries` are already restricted to them. `state` is what `prepare`
    computed for this run; `scratch` is shared by every hook of the forward pass.
    """

    model: Any
    tokens: torch.Tensor  # [b, T] this unit's rows
    rows: slice
    sink: torch.Tensor  # [b, T] bool sink keys
    queries: torch.Tensor  # [b, T] bool queries in scope (see workbench.core.sites.query_mask)
    state: Any = None
    scratch: dict = dataclasses.field(default_factory=dict)
    index: list[int] = dataclasses.field(default_factory=list)  # dataset sequence of each row

    @classmethod
    def single(cls, model: Any, tokens: torch.Tensor, sink: Any = "bos", state: Any = None,
               auto_positions: Any = None) -> UnitContext:
        spec = SinkSpec.parse(sink)
        key = spec.key_mask(tokens, model, auto_positions)
        return cls(model, tokens, slice(0, tokens.shape[0]), key, sites.query_mask(key, info(model).causal), state,
                   index=list(range(tokens.shape[0])))


def pattern_edits_flow(model: Any) -> bool:
    """Whether an edit at `hook_pattern` reaches the model's output on this adapter (checked once, by
    zeroing layer 0's pattern on a short input, and remembered on the model)."""
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
    if not torch.isfinite(tensor).all():
        raise InterventionError(f"intervention {who} produced NaN/inf at {where}; check its parameters")


# --------------------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Intervention:
    """Base of every intervention (see the module docstring)."""

    name: ClassVar[str] = "intervention"
    summary: ClassVar[str] = ""
    causal_only: ClassVar[bool] = False  # needs a causal mask (refused on encoders)
    sink_aware: ClassVar[bool] = False  # uses the sink key / query masks
    changes_length: ClassVar[bool] = False  # adds positions (a test-time register): runs alone, not composed

    def validate(self, model: Any) -> None:
        """Raise InputError for parameters that do not fit this model; runs before any forward pass."""
        model_info = info(model)
        if self.causal_only and not model_info.causal:
            kind = "image model" if model_info.is_image else "encoder"
            raise InputError(f"{self} needs a causal mask; {model_info.name} is a bidirectional {kind}")

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        """Statistics this intervention needs from the evaluated data (a first, read-only pass); default none."""
        return None

    def hooks(self, model: Any, ctx: UnitContext) -> list[Hook]:
        raise NotImplementedError

    def prepare_key(self) -> str:
        """Interventions with equal keys share one `prepare` pass within a run (override to ignore
        parameters that do not change the statistics)."""
        import json

        return json.dumps(self.spec(), sort_keys=True, default=str)

    def sink_spec(self) -> SinkSpec:
        return SinkSpec.parse(getattr(self, "sink", "bos"))

    # -- value-object behaviour --------------------------------------------------------------------
    def spec(self) -> dict:
        """Every declared parameter (defaults included), JSON-ready: what provenance records."""
        out: dict[str, Any] = {"name": self.name}
        for field in dataclasses.fields(self):
            if field.compare and field.init:
                value = getattr(self, field.name)
                out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    def __str__(self) -> str:
        """`name(non-default parameters)`, or just `name` when every parameter has its default."""
        shown = []
        for field in dataclasses.fields(self):
            if field.compare and field.init:
                value = getattr(self, field.name)
                default = field.default if field.default is not dataclasses.MISSING else None
                if value != default:
                    shown.append(f"{field.name}={value!r}")
        return f"{self.name}({', '.join(shown)})" if shown else self.name

    __repr__ = __str__

    def __add__(self, other: Intervention) -> Compose:
        if not isinstance(other, Intervention):
            return NotImplemented
        left = self.members if isinstance(self, Compose) else (self,)
        right = other.members if isinstance(other, Compose) else (other,)
        return Compose(left + right)

    def scoped(self, **changes: Any) -> Intervention:
        """The same intervention with some parameters replaced (sweeps use it for layer/head scopes)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Compose(Intervention):
    """Several interventions applied together, in order (`a + b`)."""

    members: tuple[Intervention, ...] = ()
    name: ClassVar[str] = "compose"

    def validate(self, model: Any) -> None:
        if not self.members:
            raise InputError("an empty composition")
        growing = [m for m in self.members if m.changes_length]
        if growing:
            raise InputError(f"{growing[0]} adds positions to the sequence, so it cannot be composed with other "
                             "interventions (their masks are for the original positions); run it on its own")
        for member in self.members:
            member.validate(model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        return [m.prepare(model, data, batch_size, progress) for m in self.members]

    def hooks(self, model: Any, ctx: UnitContext) -> list[Hook]:
        out: list[Hook] = []
        states = ctx.state or [None] * len(self.members)
        for member, state in zip(self.members, states):
            member_ctx = dataclasses.replace(ctx, state=state)
            if member.sink_aware and member.sink_spec() != SinkSpec():
                spec = member.sink_spec()
                key = spec.key_mask(ctx.tokens, model)
                member_ctx = dataclasses.replace(member_ctx, sink=key, queries=sites.query_mask(key, info(model).causal))
            out += member.hooks(model, member_ctx)
        return out

    def spec(self) -> dict:
        return {"name": "compose", "members": [m.spec() for m in self.members]}

    def __str__(self) -> str:
        return " + ".join(str(m) for m in self.members)

    __repr__ = __str__


@register("none", "no intervention: the baseline (reproduces the model's logits exactly)")
@dataclasses.dataclass(frozen=True)
class Identity(Intervention):
    def hooks(self, model: Any, ctx: UnitContext) -> list[Hook]:
        return []


# --------------------------------------------------------------------------------------------------
# Scoped interventions: layers x heads x sink
# --------------------------------------------------------------------------------------------------


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclasses.dataclass(frozen=True)
class Scoped(Intervention):
    """An intervention on some layers and (query) heads, relative to a sink; default every layer and head,
    sink = BOS (position 0; [CLS] on encoders)."""

    layers: Any = None
    heads: Any = None
    sink: Any = "bos"
    sink_aware: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for field in ("layers", "heads", "sink"):
            object.__setattr__(self, field, _freeze(getattr(self, field)))

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
    """Change the post-softmax attention of the heads in scope: subclasses implement `edit`."""

    needs_scores: ClassVar[bool] = False

    def edit(self, pattern: torch.Tensor, ctx: UnitContext, layer: int,
             scores: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """pattern [b, h, q, k] (this unit's rows, heads in scope) -> (new pattern or None,
        extra term added to z [b, q, h, d_head] or None)."""
        raise NotImplementedError

    def hooks(self, model: Any, ctx: UnitContext) -> list[Hook]:
        heads = list(self.head_ids(model))
        out: list[Hook] = []
        flows = pattern_edits_flow(model)
        for layer in self.layer_ids(model):
            out += (_flowing_hooks if flows else _rebuilt_hooks)(self, model, ctx, layer, heads)
        return out


def _covers(tensor: torch.Tensor, rows: slice, heads: list[int], head_dim: int) -> bool:
    """Whether (rows, heads) is the whole tensor: then an edit replaces it without a copy."""
    return rows.start == 0 and rows.stop == tensor.shape[0] and heads == list(range(tensor.shape[head_dim]))


def _flowing_hooks(edit: AttentionEdit, model: Any, ctx: UnitContext, layer: int, heads: list[int]) -> list[Hook]:
    rows = ctx.rows
    key = ("edit", id(edit), id(ctx), layer)

    def select(tensor: torch.Tensor) -> torch.Tensor:
        return tensor if _covers(tensor, rows, heads, 1) else tensor[rows][:, heads]

    def on_scores(tensor: torch.Tensor, hook: Any) -> None:
        ctx.scratch[key + ("scores",)] = select(tensor)

    def on_pattern(tensor: torch.Tensor, hook: Any) -> torch.Tensor | None:
        new, extra = edit.edit(select(tensor), ctx, layer, ctx.scratch.pop(key + ("scores",), None))
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


def _rebuilt_hooks(edit: AttentionEdit, model: Any, ctx: UnitContext, layer: int, heads: list[int]) -> list[Hook]:
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

    return [(f"blocks.{layer}.attn.hook_q", keep("q")), (f"blocks.{layer}.attn.hook_k", keep("k")),
            (sites.v(layer), keep("v")), (sites.z(layer), on_z)]


@dataclasses.dataclass(frozen=True)
class ValueEdit(Scoped):
    """Change value vectors at some key positions; subclasses implement `new_values` (and `edit_positions`).

    `all_queries`: whether every query sees the new values (activation patching) or only the queries in
    scope (the sink-value interventions: q >= 1 on a causal model); out-of-scope pairs are restored.
    """

    all_queries: ClassVar[bool] = False

    def edit_positions(self, ctx: UnitContext) -> torch.Tensor:
        """[b, T] bool: the key positions whose values are edited (default: the sink keys)."""
        return ctx.sink

    def new_values(self, values: torch.Tensor, ctx: UnitContext, layer: int, where: torch.Tensor) -> torch.Tensor:
        """values [b, T, kv, d] (this unit's rows) -> the edited values at every position (only `where` and the
        KV heads serving the heads in scope are used)."""
        raise NotImplementedError

    def hooks(self, model: Any, ctx: UnitContext) -> list[Hook]:
        model_info = info(model)
        heads = self.head_ids(model)
        group = model_info.group_size
        kv_heads = sorted({h // group for h in heads})
        in_scope_head = torch.zeros(model_info.n_heads, dtype=torch.bool)
        in_scope_head[list(heads)] = True
        flows = pattern_edits_flow(model)
        rows = ctx.rows
        out: list[Hook] = []
        for layer in self.layer_ids(model):
            key = ("value", id(self), id(ctx), layer)

            def on_v(tensor: torch.Tensor, hook: Any, layer: int = layer, key: tuple = key) -> torch.Tensor:
                where = self.edit_positions(ctx)  # [b, T]
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

            def on_pattern(tensor: torch.Tensor, hook: Any, key: tuple = key) -> None:
                ctx.scratch[key + ("pattern",)] = tensor[rows]

            def keep(kind: str, key: tuple = key):
                def read(tensor: torch.Tensor, hook: Any) -> None:
                    ctx.scratch[key + (kind,)] = tensor[rows]
                return read

            def on_z(tensor: torch.Tensor, hook: Any, key: tuple = key) -> torch.Tensor:
                delta_v = ctx.scratch.pop(key + ("dv",))
                pattern = ctx.scratch.pop(key + ("pattern",), None)
                if pattern is None:  # the adapter fires hook_pattern too late: rebuild it from q and k
                    pattern = torch.softmax(rebuild_scores(ctx.scratch.pop(key + ("q",)), ctx.scratch.pop(key + ("k",)),
                                                           model_info.causal), dim=-1)
                delta_v = delta_v.repeat_interleave(group, dim=2) if group > 1 else delta_v  # [b, T, H, d]
                # (query, head) pairs that must NOT see the new values: restore them
                queries = torch.ones_like(ctx.queries) if self.all_queries else ctx.queries
                outside = ~(queries[:, :, None] & in_scope_head.to(tensor.device)[None, None, :])  # [b, q, H]
                restore = torch.einsum("bhqk,bkhd->bqhd", pattern.float(), delta_v) * outside[..., None]
                out_tensor = tensor.clone()
                out_tensor[rows] -= restore.to(out_tensor.dtype)
                return out_tensor

            out.append((sites.v(layer), on_v))
            if flows:
                out.append((sites.pattern(layer), on_pattern))
            else:
                out += [(f"blocks.{layer}.attn.hook_q", keep("q")), (f"blocks.{layer}.attn.hook_k", keep("k"))]
            out.append((sites.z(layer), on_z))
        return out


@dataclasses.dataclass(frozen=True)
class ResidualEdit(Intervention):
    """Change the residual stream after a block (`blocks.{l}.hook_resid_post`); subclasses implement
    `edit_residual`."""

    layer: Any = None

    def target_layers(self, model: Any, state: Any) -> tuple[int, ...]:
        return sites.parse_layers(self.layer, model)

    def edit_residual(self, resid: torch.Tensor, ctx: UnitContext, layer: int) -> torch.Tensor:
        raise NotImplementedError

    def hooks(self, model: Any, ctx: UnitContext) -> list[Hook]:
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
