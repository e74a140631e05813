"""Hooks while streaming: how do a probe's readers and a catalogue intervention see a cache being read?

    >>> with model.hooks(fwd_hooks=[("blocks.3.attn.hook_pattern", read)]):
    ...     stream_nll(model, ids, Sinks(4, 256))                  # read() sees [1, H, c, keys] per step
    >>> stream_nll(model, ids, Sinks(4, 256), intervention="scale-sink:gamma=0.5")

The cache engine (workbench.streaming.engine) runs the Llama decoder from the model's own modules, and its
attention fires the bridge's own hook points of each layer, as the bridge's attention does: `hook_attn_scores`
[1, H, c, K] (pre-softmax, masked keys at -inf), `hook_pattern` [1, H, c, K] and `hook_z` [1, c, H, d_head];
an edit a hook returns flows into the output. Hooks fire only where something is registered, so a run
without hooks computes exactly what it computed before. The key axis is what the cache holds: on the exact
path the cache slots in order (slot i sits at RoPE position i, StreamingLLM's positions inside the cache,
Xiao §3.2), on the fast path the S sink keys then the chunk's band of recent keys. `hook_q/k/v`,
`hook_resid_*` and the MLP hooks do not fire: the cache stores keys before RoPE and values outside them.

An intervention runs on the exact path (token by token; `stream_nll` takes it there whatever `fast` says):
each step gets a PassContext whose tokens are the cached tokens in slot order and whose one query is the
newest token, so `sink=bos` is the key at cache position 0 (text token 0 under `sinks`, the oldest cached
token under `window`, which is what the model sees at position 0) and `tok:X` every cached occurrence of X.
Interventions whose hooks need other activations (value edits at `hook_v`, residual edits, quantisers) are
refused with the hook they need. `recompute` re-encodes each window through the model's forward pass (the
workbench's attention path, full or blockwise), where every hook fires and the sink is the window's own.
`prepare` (mean-implicit-bias) runs once, over the streamed text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from workbench.core import data as _data
from workbench.core.errors import InputError

# what the cache engine fires per layer (its attention); an intervention needing anything else is refused
STREAM_SUFFIXES = ("attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z")


def hook_points(model: Any) -> list[tuple[Any, Any, Any]] | None:
    """Per layer, the bridge's (hook_attn_scores, hook_pattern, hook_z) hook points; None for a plain HF model."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return None
    points = []
    for block in blocks:
        attn = getattr(block, "attn", None)
        found = tuple(getattr(attn, name, None) for name in ("hook_attn_scores", "hook_pattern", "hook_z"))
        if any(point is None for point in found):
            return None
        points.append(found)
    return points


def has_hooks(point: Any) -> bool:
    return bool(point._forward_hooks or point._forward_pre_hooks)


def any_attention_hooks(model: Any) -> bool:
    """Whether something is registered on an attention hook point of `model` (the caller's `model.hooks`)."""
    return any(has_hooks(point) for points in (hook_points(model) or []) for point in points)


def as_intervention(intervention: Any) -> Any:
    """An Intervention from an Intervention, a catalogue spec string or a table; None for None / "none"."""
    if intervention is None:
        return None
    from interventions import Identity, Intervention, from_spec, parse

    if isinstance(intervention, Intervention):
        found = intervention
    elif isinstance(intervention, str):
        found = parse(intervention)
    elif isinstance(intervention, dict):
        found = from_spec(intervention)
    else:
        raise InputError(f"intervention: expected a catalogue spec such as 'scale-sink:gamma=0.5' or an "
                         f"Intervention, got {intervention!r}")
    return None if isinstance(found, Identity) else found


class StreamIntervention:
    """One intervention bound to a streaming run: checked against the model, prepared once over the text, and
    turned into hooks step by step (`hooks_for(tokens)`).

    A run registers its hooks once (`installed()`: one dispatcher per hook point the intervention uses) and each
    step swaps in that step's hook functions (`step(tokens)`): registering through the bridge walks every hook
    point of the model, a cost per token that the hooks themselves do not need."""

    def __init__(self, model: Any, intervention: Any, ids: Tensor, progress: bool = False):
        self.model, self.intervention = model, intervention
        intervention.validate(model)
        if intervention.changes_length:
            raise InputError(f"{intervention} adds positions to the sequence; a streaming cache cannot hold them")
        if hook_points(model) is None:
            raise InputError(f"an intervention while streaming needs the model's hook points (a zoo model loaded "
                             f"through the bridge), got {type(model).__name__}")
        text = _data.Dataset([ids.detach().cpu().numpy().astype("int64")], "tokens", "the streamed text", {}, None)
        self.state = intervention.prepare(model, text, 1, progress)
        probe = self.context(ids[None, :2].cpu(), 2)
        names = {name for name, _ in intervention.hooks(model, probe)}
        self.names = sorted(names)  # the hook points `installed()` registers a dispatcher on
        self._current: dict[str, list] = {}
        other = sorted(name for name in names if not name.endswith(STREAM_SUFFIXES))
        if other:
            raise InputError(f"{intervention} needs hook {other[0]}, which the streaming cache does not fire (it "
                             f"fires {', '.join(STREAM_SUFFIXES)} per layer: attention edits run, value and "
                             "residual edits do not); use --policy recompute, which runs the model's forward pass")

    def context(self, tokens: Tensor, n_queries: int):
        """The PassContext of one step: `tokens` [1, K] the keys in position order, the last `n_queries` of
        them the queries (every query in scope sees the sink and is not one)."""
        from workbench.core import sites
        from workbench.passes import PassContext

        spec = self.intervention.sink_spec()
        if spec.kind == "positions":  # cache positions the cache does not hold yet are simply absent
            key = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
            key[:, [p for p in spec.positions if p < tokens.shape[1]]] = True
        else:
            key = spec.key_mask(tokens, self.model, require=False, index=[0])
        queries = sites.query_mask(key, True)[:, -n_queries:]
        return PassContext(self.model, tokens, slice(0, 1), key, queries, self.state, {}, [0])

    def hooks_for(self, tokens: Tensor, n_queries: int = 1) -> list:
        return self.intervention.hooks(self.model, self.context(tokens, n_queries))

    @contextmanager
    def installed(self) -> Iterator[StreamIntervention]:
        """One dispatcher per hook point in `names`, registered for the whole run; each calls the hook
        functions the last `step()` gave that point, in order, an edit one returns passed to the next."""
        def dispatcher(name: str):
            def run(tensor: Tensor, hook: Any) -> Tensor | None:
                edited = None
                for fn in self._current.get(name, ()):
                    out = fn(tensor if edited is None else edited, hook=hook)
                    edited = edited if out is None else out
                return edited
            return run

        with self.model.hooks(fwd_hooks=[(name, dispatcher(name)) for name in self.names]):
            try:
                yield self
            finally:
                self._current = {}

    def step(self, tokens: Tensor, n_queries: int = 1) -> list:
        """This step's hooks into the installed dispatchers; returns those on a point `installed()` did not
        register (the caller registers them for the step: none for the catalogue's interventions)."""
        current: dict[str, list] = {}
        extra = []
        for name, fn in self.hooks_for(tokens, n_queries):
            if name in self.names:
                current.setdefault(name, []).append(fn)
            else:
                extra.append((name, fn))
        self._current = current
        return extra


def window_hooks(model: Any, intervention: StreamIntervention, windows: Tensor) -> list:
    """Hooks of an intervention on a batch of re-encoded windows [b, W] (recompute: each window a sequence)."""
    from workbench.passes import PassContext

    ctx = PassContext.of(model, windows, intervention.intervention.sink_spec(), state=intervention.state,
                         require=False)
    return intervention.intervention.hooks(model, ctx)


def fire(point: Any, tensor: Tensor) -> Tensor:
    """Run a hook point's hooks on `tensor` when it has some (an edit they return comes back)."""
    if point is None or not has_hooks(point):
        return tensor
    out = point(tensor)
    return tensor if out is None else out


def hooked_attention(points: tuple[Any, Any, Any] | None, scores: Tensor, values: Tensor, n_heads: int,
                     ) -> tuple[Tensor, Tensor]:
    """Softmax (float32, as HF's eager attention) and weighted values with the layer's hooks firing:
    scores [KV, G, c, n], values [KV, n, d] -> (z [H, c, d], p [KV, G, c, n]). Without hooks the operations
    are exactly the engine's (LlamaDecoder.mix)."""
    kv, group, c, n = scores.shape
    if points is not None and has_hooks(points[0]):
        scores = fire(points[0], scores.reshape(1, kv * group, c, n)).reshape(kv, group, c, n)
    p = torch.softmax(scores.float(), dim=-1).to(values.dtype)  # [KV, G, c, n]
    if points is not None and has_hooks(points[1]):
        p = fire(points[1], p.reshape(1, kv * group, c, n)).reshape(kv, group, c, n).to(values.dtype)
    z = (p @ values[:, None]).reshape(n_heads, c, values.shape[-1])  # [H, c, d]
    if points is not None and has_hooks(points[2]):
        z = fire(points[2], z.transpose(0, 1)[None])[0].transpose(0, 1)
    return z, p
