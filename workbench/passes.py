"""The one hooked forward loop, and the one context its hooks see: how does data meet a model's hooks?

    >>> for ctx in batches(model, data, sink=SinkSpec.parse("bos")): ...            # PassContext per batch
    >>> probe_pass(model, data, [("attn.hook_pattern", read)], layers=range(30))   # read-only hooks

Probes read activations and interventions edit them, in the same forward passes over the same batches,
so both see one context object, `PassContext`: the batch's tokens, which of its rows a hook may touch
(`rows`: several interventions can share one pass, stacked along the batch), the sink keys and the
queries in scope, the prepared state of an intervention and a scratch dict shared by every hook of the
pass (inside a block hook_v fires before hook_pattern, which fires before hook_z). The model is called
on `data.model_inputs(index, tokens)`: the tokens for text, the pixels for an image set (whose tokens
are the kinds of its positions, workbench.core.positions).

Long inputs run blockwise (workbench.attention): `hook_attn_scores`, `hook_pattern` and `hook_z` then fire
once per block of query rows. Readers and edits receive `ctx.for_block()`, whose `queries` are the rows of
the block now running and whose `block` says where they sit (start, stop, n_queries); keys are always
every position, so `sink` and `tokens` stay whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from workbench import attention
from workbench.core import sites
from workbench.core.errors import InputError, check_range
from workbench.core.modelinfo import info
from workbench.core.progress import progress_bar
from workbench.core.sites import SinkSpec

Hook = tuple[str, Callable[[torch.Tensor, Any], torch.Tensor | None]]
Reader = Callable[[int, torch.Tensor, "PassContext"], None]


@dataclasses.dataclass
class PassContext:
    """What the hooks of one forward pass see (probes' readers and interventions' hooks alike).

    Fields (shapes for a batch of b sequences of T positions):
    - `tokens` [b, T] long: this unit's rows (token ids; position kinds for images);
    - `rows`: the slice of the forward batch these rows occupy (interventions stacked in one pass each
      own a slice; a hook edits `tensor[ctx.rows]` only);
    - `sink` [b, T] bool: which keys are the sink; `queries` [b, T] bool: which queries are in scope
      (on a causal model every query after the first sink position; see workbench.core.sites.query_mask);
    - `state`: what an intervention's `prepare` computed for this run (None for probes);
    - `scratch`: a dict shared by every hook of the forward pass;
    - `index`: the dataset sequence of each row; `inputs`: what the model is called on;
    - `block`: in the view `for_block()` hands to block hooks, the query rows they hold
      (workbench.attention.QueryBlock); None on the context itself (`query_block` then is every query).
    """

    model: Any
    tokens: torch.Tensor
    rows: slice
    sink: torch.Tensor
    queries: torch.Tensor
    state: Any = None
    scratch: dict = dataclasses.field(default_factory=dict)
    index: list[int] = dataclasses.field(default_factory=list)
    inputs: Any = None
    block: Any = None

    @property
    def query_block(self) -> attention.QueryBlock:
        """The query rows this context's `queries` cover: a block's, or all of them."""
        return self.block or attention.QueryBlock.whole(self.queries.shape[1])

    def for_block(self) -> PassContext:
        """This context as the hooks of the running query block see it: `queries` cut to the block's rows and
        `block` set (the same tokens, sink keys, state and scratch). On the full path: the context itself."""
        block = attention.current_block()
        if block is None or self.block is not None or block.n_queries != self.queries.shape[1]:
            return self
        return dataclasses.replace(self, queries=block.take(self.queries), block=block)

    @classmethod
    def of(cls, model: Any, tokens: torch.Tensor, sink: Any = "bos", state: Any = None, auto_positions: Any = None,
           rows: slice | None = None, scratch: dict | None = None, index: Sequence[int] | None = None,
           require: bool = True) -> PassContext:
        """The context of `tokens` (one unit's rows) with sink keys resolved from a sink spec."""
        spec = SinkSpec.parse(sink)
        index = list(range(tokens.shape[0])) if index is None else list(index)
        key = spec.key_mask(tokens, model, auto_positions, require=require, index=index)
        return cls(model, tokens, rows if rows is not None else slice(0, tokens.shape[0]), key,
                   sites.query_mask(key, info(model).causal), state, {} if scratch is None else scratch, index)

    @classmethod
    def batch_independent(cls, model: Any, state: Any = None) -> PassContext:
        """For hooks that depend on no batch (a test-time register): no tokens, every row."""
        empty = torch.zeros(0, 0, dtype=torch.bool)
        return cls(model, torch.zeros(0, 0, dtype=torch.long), slice(None), empty, empty, state)


def device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def check_data(model: Any, data: Any) -> None:
    """Refuse data prepared for another model (another tokenizer or vocabulary, sequences longer than the
    context): `data.check_model(model)` where the data can say (Dataset does)."""
    check = getattr(data, "check_model", None)
    if check is not None:
        check(model)


def batches(model: Any, data: Any, batch_size: int = 8, sink: Any = None,
            auto_positions: Sequence[int] | None = None, skip_missing: bool = False) -> list[PassContext]:
    """Every batch of `data` as a PassContext on the model's device, sink keys resolved — all of them
    before any forward pass, so bad input fails first.

    `sink`: anything `SinkSpec.parse` reads (a spec string, positions, a [sequences, T] bool mask, a function
    of the tokens). `skip_missing`: sequences in which a data-dependent sink does not occur (or no query
    sees it) are kept with an empty query mask (they count zero queries) instead of being an error."""
    check_range("batch size", batch_size, 1, 1 << 20)
    check_data(model, data)
    sink = SinkSpec.parse(sink)
    device = device_of(model)
    out = []
    for index, tokens in data.batches(batch_size):
        tokens = tokens.to(device)
        ctx = PassContext.of(model, tokens, sink, auto_positions=auto_positions, index=index,
                             require=not skip_missing)
        ctx.queries = ctx.queries & ctx.sink.any(dim=1, keepdim=True)
        if not skip_missing and not ctx.queries.any(dim=1).all():
            raise InputError(f"sink {sink.label}: some sequences have no query that can see the sink "
                             "(it sits at their last position); choose an earlier sink or longer windows")
        ctx.inputs = data.model_inputs(index, tokens).to(device)
        out.append(ctx)
    return out


class _Stop(Exception):  # noqa: N818 (not an error: how a pass stops before the unembedding)
    pass


def forward(model: Any, inputs: Any, hooks: Sequence[Hook] = (), stop_at_layer: int | None = None) -> Any:
    """One forward pass under `hooks` (removed afterwards); bridges can stop after a block (`stop_at_layer` =
    the number of blocks stops before the final norm: the residual stream after the last block, and no logits,
    which are [b, T, V] floats: 1.6 GB for SmolLM2 at T = 8192). The attention runs the full path while its
    pattern fits the budget and blockwise otherwise (workbench.attention.plan), unless the caller opened
    `attention.blockwise(model, ...)` around it."""
    hooks = list(hooks)
    readers = {}
    if any(isinstance(fn, attention.KeyReader) for _, fn in hooks) and attention.runs_blockwise(model, inputs):
        # blockwise: each layer serves its key readers itself (fused where nothing else reads its pattern)
        for name, fn in hooks:
            if isinstance(fn, attention.KeyReader):
                readers.setdefault(model.blocks[_block_of(name)].attn, []).append(fn)
        hooks = [(name, fn) for name, fn in hooks if not isinstance(fn, attention.KeyReader)]
    n_blocks = len(getattr(model, "blocks", ()))
    before_unembed = stop_at_layer is not None and stop_at_layer >= n_blocks and "ln_final.hook_in" in model.hook_dict
    found: dict[str, Any] = {}
    if before_unembed:
        def stop(tensor: torch.Tensor, hook: Any) -> None:
            found["resid"] = tensor
            raise _Stop
        hooks.append(("ln_final.hook_in", stop))
    with attention.path(model, inputs), attention.reading_keys(readers), model.hooks(fwd_hooks=hooks):
        if before_unembed:
            try:
                model(inputs)
            except _Stop:
                pass
            return found["resid"]
        if stop_at_layer is not None:
            return model.run_with_hooks(inputs, fwd_hooks=[], stop_at_layer=stop_at_layer)
        return model(inputs)


def probe_pass(model: Any, data: Any, readers: Sequence[tuple[str, Reader]], layers: Iterable[int],
               sink: Any = None, batch_size: int = 8, progress: bool = True, desc: str = "probe",
               after_batch: Callable[[PassContext], None] | None = None, auto_positions: Sequence[int] | None = None,
               skip_missing: bool = False, hooks: Sequence[Hook] = ()) -> None:
    """Run `data` through `model` with read-only hooks on `blocks.{l}.{suffix}` for the given layers:
    hook only what is read, reduce on the fly, never cache a whole pass.

    Readers receive (layer, tensor, ctx) and return nothing. `hooks` are extra forward hooks that run in
    the same passes (e.g. an intervention's, so a probe measures the edited model). A reader on
    `attention.KEY_MASS` receives the attention each query puts on the sink keys, sum_{j in sink} A[q, j]
    [b, head, q], and never the pattern: on the full path it is read from hook_pattern, on a blockwise pass
    from the block's pattern or, where nothing else reads the pattern, from the fused path's row statistics."""
    model_info = info(model)
    sites.require_pattern_hooks(model)
    layers = list(layers)
    names = [_hook_name(layer, suffix) for suffix, _ in readers for layer in layers]
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise InputError(f"{model_info.name} has no hook {missing[0]}; this probe needs it")
    fired: set[str] = set()
    stop = _stop_layer(model, layers)
    prepared = batches(model, data, batch_size, sink, auto_positions, skip_missing)
    for ctx in progress_bar(prepared, desc=desc, enabled=progress):
        readers_now = []
        for suffix, fn in readers:
            for layer in layers:
                name = _hook_name(layer, suffix)
                if suffix == attention.KEY_MASS:  # the sink's share, never the pattern (fused where it can)
                    readers_now.append((name, attention.KeyReader(ctx.sink, _mass_reader(fn, layer, ctx, fired, name))))
                else:
                    readers_now.append((name, _reader(fn, layer, ctx, fired, name)))
        with torch.no_grad():
            forward(model, ctx.inputs, [*hooks, *readers_now], stop)
        if after_batch is not None:
            after_batch(ctx)
    silent = sorted(set(names) - fired)
    if silent:
        raise InputError(f"hook {silent[0]} never fired on {model_info.name}: its attention kernel does not expose "
                         "this activation (load the model with eager attention)")


def _block_of(name: str) -> int:
    """The layer of a hook name `blocks.{l}.attn.hook_pattern` (where a KeyReader sits)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
        raise InputError(f"a KeyReader sits on a layer's hook_pattern (blocks.L.attn.hook_pattern), not on {name!r}")
    return int(parts[1])


def _hook_name(layer: int, suffix: str) -> str:
    """The hook a reader fires on (a KEY_MASS reader: hook_pattern, what the full path reads it from)."""
    return sites.hook(layer, "attn.hook_pattern" if suffix == attention.KEY_MASS else suffix)


def _mass_reader(fn: Reader, layer: int, ctx: PassContext, fired: set[str], name: str):
    def read(mass: torch.Tensor) -> None:
        fired.add(name)
        fn(layer, mass.detach(), ctx.for_block())
    return read


def _reader(fn: Reader, layer: int, ctx: PassContext, fired: set[str], name: str):
    def hook_fn(tensor: torch.Tensor, hook: Any) -> None:
        fired.add(name)  # the name asked for: hook.name may be the canonical one behind an alias
        fn(layer, tensor.detach(), ctx.for_block())
    return hook_fn


def _stop_layer(model: Any, layers: list[int]) -> int | None:
    """Bridges can stop after the last hooked block (skipping the unembedding); other models run whole."""
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(model, TransformerBridge):
        return max(layers) + 1
    return None


def gather(suffixes: Sequence[str], compute: Callable[[int, dict[str, torch.Tensor], PassContext], None]) -> list:
    """Readers that collect several activations of one layer and call `compute(layer, tensors, ctx)`
    once all have fired, whatever order the adapter fires them in (BERT fires hook_z before its
    post-hoc hook_pattern), then drop them so memory holds one layer at a time. Blockwise, the hooks of
    `attention.BLOCK_SUFFIXES` fire once per query block and the others once per forward: `compute` runs
    once per block, with the block's tensors and the whole-pass ones, which are dropped after the last block."""
    per_block = [s for s in suffixes if s in attention.BLOCK_SUFFIXES]

    def make(suffix: str) -> Reader:
        def read(layer: int, tensor: torch.Tensor, ctx: PassContext) -> None:
            slot = ctx.scratch.setdefault(("gather", layer), {})
            slot[suffix] = tensor
            if len(slot) == len(suffixes):
                if ctx.block is None or ctx.block.last or not per_block:
                    del ctx.scratch[("gather", layer)]
                    compute(layer, slot, ctx)
                else:
                    compute(layer, dict(slot), ctx)
                    for name in per_block:
                        del slot[name]
        return read
    return [(suffix, make(suffix)) for suffix in suffixes]
