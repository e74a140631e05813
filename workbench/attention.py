"""The one attention path, full or blockwise: can every hook see attention at T = 8k-32k in linear memory?

    >>> with attention.blockwise(model, block=64):          # queries in blocks of 64 rows
    ...     logits = model(tokens)                          # hook_pattern fires per block: [b, h, 64, T]
    >>> attention.current_block()                           # inside a hook: QueryBlock(start=64, stop=128, n_queries=T)

Every hooked pass of TransformerLens's bridge materialises the whole [batch, head, T, T] score matrix
(`PositionEmbeddingsAttentionBridge.forward`), and transformers adds a T x T mask: 2.4 GB per layer for
SmolLM2 at T = 8192. Rows of a softmax are independent, so nothing needs them all at once. Inside
`blockwise` the attention modules run the workbench's own forward: queries in blocks of B rows, each
block's scores against the keys it can see (the other keys hold the dtype's minimum, as on the full path,
so the block's tensors are [batch, head, B, K] with key j at position j), an exact softmax per row, then
`hook_attn_scores`, `hook_pattern`, `hook_z` ([batch, B, head, d_head]) and the output projection of that
block. `hook_q/k/v` (and `hook_rot_q/k`) fire once on every position before the first block, `hook_out`
once after the last (`BLOCK_SUFFIXES` lists the hooks that fire per block). Row-wise edits and pattern
readers work unchanged apart from placing their rows at the block's offset; weight a hook moves onto a key
the mask hid still counts, as on the full path.

No pattern where none is read: inside `blockwise`, a Llama / Qwen2 / Gemma 3 layer on whose `hook_attn_scores`
and `hook_pattern` nothing is registered runs one fused kernel (torch's flash attention: memory linear in T,
no [B, K] block at all; `hook_z` fires once on every query) where its mask is the plain causal one (Gemma's
sliding-window layers, padding, a cache, softcapping or a caller's 4D mask keep the blocks). A hook that
reads only the attention on a few keys (the sink's share, sum_{j in S} A[q, j]: `probes.sinks`,
`sink_by_position` through `passes.probe_pass` with `KEY_MASS`; the weights A[q, S] a value edit's restore
term needs) is a `KeyReader` on hook_pattern; `passes.forward` hands it to the layer on a blockwise pass
(`reading_keys`), and the fused path computes it from the kernel's row logsumexp and the scores of those
columns only, exp(q.k_j * scale - lse_q); the explicit blocks from the block's pattern after its hooks (an
intervention's edit included). `blockwise(..., fuse=False)` keeps the explicit blocks everywhere; `n_fused` counts the
fused calls (what it saves: bench/long_context.py, README "Long context").

Where the block is: `current_block()` returns the `QueryBlock` (start, stop, n_queries) whose hooks are
running, or None outside a blockwise forward (the full path: one block with every query; `block_of(T)`
returns either). Query i of a block sits at position start + i (after a cache's keys, if any).

The seam: `blockwise(model, block=None, budget=None)`, a context manager. It sets `forward` on each
attention module (an instance attribute, removed on exit; nothing in transformers or TransformerLens is
patched) and, on bridged models, hands the HF model a zero-byte 4D mask so that transformers builds no
T x T mask (causal, sliding-window and padding masks are rebuilt per block from positions). `block=None`
sizes blocks from the budget (64 MB of live tensors per block at most). Around it:
- `plan(model, batch, T, block)`: None (the default: the full path, bit-identical to TransformerLens's,
  while its pattern fits the budget; blockwise otherwise), "full" (refused before the pass, naming the
  estimate and the block option, when it would not fit) or B; `path(model, inputs)` applies it to one pass;
- `policy(model, block)`: what `--attention-block B|full|auto` / `attention_block=` mean for every pass in
  its context (`policy(None, block)`: for every model of the context, as the CLI sets it per command);
  `parse_block` is the rule for the value (B >= 1, "full", "auto"), `require_full` refuses blockwise for a
  computation that needs whole patterns (attribution patching's gradients);
- the budget: `budget=`, else $SINKBENCH_ATTENTION_BUDGET (512M, 4G, ...), else 1 GiB per layer.

Families (anything else is refused before anything is installed, with an error naming it):
- Llama / SmolLM2, Qwen2, Gemma 3 (`PositionEmbeddingsAttentionBridge`): q/k/v through the bridge's
  projections (Qwen2's biases), Gemma's q/k norms, RoPE, GQA, softcapping, the sliding window of Gemma's
  local layers (key k visible to query q iff q - W < k <= q); `hook_attn_scores` pre-softmax, as on the
  full path.
- BERT (`AttentionBridge` over `BertAttention`) and ViT / DeiT (over `ViTAttention`): the full path runs
  HF's module and fires `hook_pattern` / `hook_attn_scores` post hoc (edits discarded, scores = the
  post-softmax weights). Here the workbench computes them, so inside `blockwise` these models fire
  `hook_attn_scores` pre-softmax and edits of `hook_pattern` flow into the output.
- The toy (`workbench.toy.model.Attention`, recognised by its fields): every variant; `hook_sink` and
  `hook_gate` fire per block too.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from workbench.core.errors import InputError, is_integer

DEFAULT_BUDGET = 1 << 30  # bytes the attention of one layer may hold at once (scores + pattern); env override
BLOCK_BYTES = 64 << 20  # what one automatically sized block aims at: small next to the model, large for speed
BUDGET_ENV = "SINKBENCH_ATTENTION_BUDGET"
BLOCK_OPTION = "--attention-block B (attention_block=B in the API)"
# hooks that fire once per query block inside `blockwise` (every other attention hook fires once per forward)
BLOCK_SUFFIXES = ("attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_sink", "attn.hook_gate", "attn.hook_z")
_LIVE_TENSORS = 4  # scores, masked scores, pattern, one hook's edited copy: what a block holds at its peak


# --------------------------------------------------------------------------------------------------
# Where the block is
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QueryBlock:
    """Query rows [start, stop) of a pass over `n_queries` queries: what the block hooks now see.

        >>> block = attention.current_block() or QueryBlock.whole(pattern.shape[-2])
        >>> queries = ctx.queries[:, block.rows]            # the rows of this block
    """

    start: int
    stop: int
    n_queries: int

    @classmethod
    def whole(cls, n_queries: int) -> QueryBlock:
        """The full path: one block with every query."""
        return cls(0, n_queries, n_queries)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def rows(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def first(self) -> bool:
        return self.start == 0

    @property
    def last(self) -> bool:
        return self.stop == self.n_queries

    @property
    def is_whole(self) -> bool:
        return self.first and self.last

    def take(self, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This block's rows of a tensor over every query (e.g. ctx.queries [b, T] -> [b, B])."""
        return tensor.narrow(dim, self.start, self.size)


_CURRENT: contextvars.ContextVar[QueryBlock | None] = contextvars.ContextVar("sinkbench_query_block", default=None)


def current_block() -> QueryBlock | None:
    """The query block whose hooks are running, or None outside a blockwise forward (the full path)."""
    return _CURRENT.get()


def block_of(n_queries: int) -> QueryBlock:
    """The block now running, or the whole range of `n_queries` queries on the full path."""
    return _CURRENT.get() or QueryBlock.whole(n_queries)


# --------------------------------------------------------------------------------------------------
# Budget and plan
# --------------------------------------------------------------------------------------------------


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}


def parse_bytes(text: Any, what: str = "attention memory budget") -> int:
    """`1073741824`, `512M`, `2.5G`, `1GB` -> bytes (binary units); anything else is one InputError."""
    if is_integer(text) and int(text) > 0:
        return int(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)\s*", str(text).lower())
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"{what} must be a positive size such as 512M, 2G or a number of bytes, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def budget_bytes(budget: Any = None) -> int:
    """The attention memory budget: `budget` if given, else $SINKBENCH_ATTENTION_BUDGET, else 1 GiB."""
    if budget is not None:
        return parse_bytes(budget)
    env = os.environ.get(BUDGET_ENV)
    return parse_bytes(env, f"${BUDGET_ENV}") if env else DEFAULT_BUDGET


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / (1 << 30):.2f} GB" if n_bytes >= 1 << 28 else f"{n_bytes / (1 << 20):.0f} MB"


def _model_name(model: Any) -> str:
    found = getattr(model, "sinkbench", None)
    return getattr(found, "name", None) or type(model).__name__


def _n_ctx(model: Any) -> int | None:
    found = getattr(model, "sinkbench", None)
    if getattr(found, "n_ctx", None):
        return int(found.n_ctx)
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "n_ctx", None)


def _n_heads(model: Any) -> int:
    found = getattr(model, "sinkbench", None)
    if getattr(found, "n_heads", None):
        return int(found.n_heads)
    return int(model.cfg.n_heads)


def check_length(model: Any, n_tokens: int) -> int:
    """Refuse a sequence longer than the model's context (one InputError naming T and the allowed range)."""
    limit = _n_ctx(model)
    if not is_integer(n_tokens) or n_tokens < 1:
        raise InputError(f"sequence length must be a positive integer, got {n_tokens!r}")
    if limit is not None and n_tokens > limit:
        raise InputError(f"T = {n_tokens} tokens exceed the context of {_model_name(model)}: allowed 1..{limit} "
                         "(use shorter windows)")
    return int(n_tokens)


def check_block(model: Any, block: Any) -> int:
    """A query block size: an integer >= 1 (a block longer than the sequence runs as one block)."""
    if not is_integer(block) or block < 1:
        raise InputError(f"attention block size must be an integer >= 1 (query rows per block; "
                         f"{_n_ctx(model) or 'T'} = the whole context of {_model_name(model)} in one block), "
                         f"'full' or 'auto'; got {block!r}")
    return int(block)


def full_pattern_bytes(model: Any, batch: int, n_tokens: int, n_keys: int | None = None) -> int:
    """What one layer of the full path holds at once: scores and pattern [batch, head, T, K] in fp32, plus
    the T x K mask transformers builds for a causal model."""
    n_keys = n_keys or n_tokens
    pattern = batch * _n_heads(model) * n_tokens * n_keys * 4
    causal = getattr(getattr(model, "sinkbench", None), "causal", True)
    return 2 * pattern + (n_tokens * n_keys * 4 if causal else 0)


def _rows_within(budget: int, batch: int, n_heads: int, n_keys: int) -> int:
    """Query rows whose live fp32 tensors ([batch, head, rows, K], `_LIVE_TENSORS` of them) fit min(budget, 64 MB)."""
    return max(1, min(budget, BLOCK_BYTES) // (_LIVE_TENSORS * batch * n_heads * n_keys * 4))


def auto_block(model: Any, batch: int, n_keys: int, budget: Any = None) -> int:
    """The query rows per block that keep one block's live tensors within min(budget, 64 MB)."""
    return _rows_within(budget_bytes(budget), batch, _n_heads(model), n_keys)


def plan(model: Any, batch: int, n_tokens: int, block: Any = None, budget: Any = None) -> int | None:
    """The attention of one pass: None for the full path, else the query block size.

        >>> plan(model, 1, 8192)            # 4 (auto: the full pattern would need 4.8 GB)
        >>> plan(model, 8, 128)             # None: the full path fits
        >>> plan(model, 1, 8192, "full")    # InputError naming the estimate and the block option

    `block`: None (full if its pattern fits the budget, else blockwise with an automatic B), "full", or B.
    """
    check_length(model, n_tokens)
    block = None if block == "auto" else block
    if block is not None and block != "full":
        return check_block(model, block)
    need, allowed = full_pattern_bytes(model, batch, n_tokens), budget_bytes(budget)
    if need <= allowed:
        return None
    if block == "full":
        raise InputError(
            f"a full-pattern pass over T = {n_tokens} tokens (batch {batch}, {_n_heads(model)} heads) needs about "
            f"{_gb(need)} per layer for its scores, pattern and mask, over the attention memory budget of "
            f"{_gb(allowed)}: run it blockwise with {BLOCK_OPTION}, or leave the block unset to choose one, or "
            f"raise the budget (${BUDGET_ENV}=4G)")
    return auto_block(model, batch, n_tokens, budget)


def require_full(model: Any, batch: int, n_tokens: int, what: str) -> None:
    """For a computation that needs every layer's whole pattern at once (attribution patching's gradients):
    refuse a blockwise path (open, or asked for by the model's or the process's policy) and a full pattern
    over the budget, with one InputError naming `what`, the block and the estimate."""
    open_block = active(model)
    block = _chosen_policy(model)[0] if open_block is None else (open_block.block or "auto-sized")
    if open_block is not None or block not in (None, "auto", "full"):
        raise InputError(f"{what} needs the whole attention pattern of every layer in one pass (its gradients "
                         f"flow through them); blockwise attention (block {block}) cannot carry it: run it on the "
                         f"full path (leave {BLOCK_OPTION.split(' (')[0]} unset or set it to full)")
    plan(model, batch, n_tokens, "full")


def parse_block(block: Any, what: str = "attention block") -> int | str | None:
    """What `--attention-block` / `attention_block=` may say: None or "auto" (-> None: the plan decides per
    pass), "full", or a number of query rows B >= 1 ("64" as the CLI gives it); anything else is one
    InputError naming the value and the allowed range."""
    if block is None:
        return None
    if isinstance(block, str):
        text = block.strip().lower()
        if text in ("auto", "full"):
            return None if text == "auto" else "full"
        if re.fullmatch(r"[+]?\d+", text):
            block = int(text)
    if not is_integer(block) or int(block) < 1:
        raise InputError(f"{what} must be an integer B >= 1 (query rows per block), 'full' or 'auto'; got {block!r}")
    return int(block)


_DEFAULT_POLICY: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "sinkbench_attention_policy", default=None)


def _chosen_policy(model: Any) -> tuple[Any, Any]:
    """(block, budget) for a pass of `model`: its own policy, else the process-wide one, else (None, None)."""
    own = getattr(model, "_sinkbench_attention_policy", None)
    return own or _DEFAULT_POLICY.get() or (None, None)


def _chosen_block(model: Any, inputs: torch.Tensor, block: Any, budget: Any) -> tuple[int | None, Any]:
    """(B or None for the full path, budget) of one pass over `inputs`, unset arguments from `policy`."""
    chosen_block, chosen_budget = _chosen_policy(model)
    block = chosen_block if block is None else parse_block(block)
    budget = chosen_budget if budget is None else budget
    if inputs.ndim == 2:  # tokens
        return plan(model, inputs.shape[0], inputs.shape[1], block, budget), budget
    # pixels: T is fixed by the image, only an explicit block applies
    return (check_block(model, block) if block not in (None, "full") else None), budget


def runs_blockwise(model: Any, inputs: torch.Tensor, block: Any = None, budget: Any = None) -> bool:
    """Whether a pass over `inputs` under `path` runs blockwise (an open `blockwise`, or the plan's choice)."""
    return active(model) is not None or _chosen_block(model, inputs, block, budget)[0] is not None


def path(model: Any, inputs: torch.Tensor, block: Any = None, budget: Any = None):
    """The attention path `plan` picks for one pass over `inputs` ([batch, T] tokens; images: full or B), or
    nothing when the caller already opened `blockwise` on the model; unset arguments come from `policy`:

        >>> with attention.path(model, tokens):
        ...     model(tokens)
    """
    if active(model) is not None:
        return contextlib.nullcontext(active(model))
    chosen, budget = _chosen_block(model, inputs, block, budget)
    return blockwise(model, chosen, budget) if chosen is not None else contextlib.nullcontext()


@contextlib.contextmanager
def policy(model: Any, block: Any = None, budget: Any = None) -> Iterator[None]:
    """What `--attention-block` / `attention_block=` mean, for every pass run inside the context:

        >>> with attention.policy(model, block=args.attention_block):    # None / "auto", "full" or B
        ...     probes.sinks(model, data)
        >>> with attention.policy(None, block=64):                        # every model of this context
        ...     gallery.build(...)                                        # (what the CLI sets)

    None or "auto": per pass, full while the pattern fits the budget, else blockwise; "full": always the full
    path, refused before a pass whose pattern would not fit; B: blockwise with B query rows per block.
    `model=None` sets the policy of every model without one of its own (a context variable: this thread and
    the tasks it starts; Ray workers are other processes and take `attention_block=` with their job).
    """
    block = parse_block(block)
    budget_bytes(budget)  # a bad budget fails here, before any pass
    if model is None:
        token = _DEFAULT_POLICY.set((block, budget) if (block, budget) != (None, None) else None)
        try:
            yield
        finally:
            _DEFAULT_POLICY.reset(token)
        return
    if block is not None and block != "full":
        with blockwise(model, block, budget):
            yield
        return
    before = getattr(model, "_sinkbench_attention_policy", None)
    object.__setattr__(model, "_sinkbench_attention_policy", (block, budget) if (block, budget) != (None, None)
                       else ("auto", budget))  # an explicit auto on the model wins over a process-wide policy
    try:
        yield
    finally:
        object.__setattr__(model, "_sinkbench_attention_policy", before)


# --------------------------------------------------------------------------------------------------
# The seam
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Blockwise:
    """What `blockwise` installed: the block size (None = automatic), the budget, and what it ran."""

    model: Any
    block: int | None
    budget: int
    n_blocks: int = 0  # query blocks run so far (every layer counts)
    largest_block: int = 0
    fuse: bool = True  # a layer whose pattern and scores no hook reads runs fused (no pattern at all)
    n_fused: int = 0  # attention calls run fused so far (every layer counts)
    padding: torch.Tensor | None = None  # [b, K] bool from a 2D attention mask the HF model was called with
    sentinel: torch.Tensor | None = None  # the zero-byte 4D mask handed to the HF model this forward

    def rows(self, batch: int, n_heads: int, n_queries: int, n_keys: int) -> int:
        """Query rows per block for one attention call."""
        if self.block is not None:
            return min(self.block, n_queries)
        return min(n_queries, _rows_within(self.budget, batch, n_heads, n_keys))

    def blocks(self, n_queries: int, size: int) -> Iterator[QueryBlock]:
        for start in range(0, n_queries, size):
            block = QueryBlock(start, min(start + size, n_queries), n_queries)
            self.n_blocks += 1
            self.largest_block = max(self.largest_block, block.size)
            yield block


def active(model: Any) -> Blockwise | None:
    """The blockwise installation on `model`, or None when its attention runs the full path."""
    return getattr(model, "_sinkbench_blockwise", None)


@contextlib.contextmanager
def blockwise(model: Any, block: int | None = None, budget: Any = None, fuse: bool = True) -> Iterator[Blockwise]:
    """Run `model`'s attention in query blocks while the context is open (see the module docstring).

        >>> with attention.blockwise(model, block=64) as run:
        ...     model(tokens, fwd_hooks=...)    # a hook on hook_pattern: the explicit blocks
        >>> run.n_blocks                        # 2 layers x ceil(T / 64)

    `block`: query rows per block (an integer >= 1) or None to size blocks from `budget`. `fuse=False` runs
    the explicit blocks even where no hook reads the pattern (the fused path: "No pattern where none is read").
    """
    if block is not None:
        block = check_block(model, block)
    state = Blockwise(model, block, budget_bytes(budget), fuse=bool(fuse))
    components = attention_components(model)
    previous_state = active(model)
    installed: list[tuple[torch.nn.Module, Any]] = []
    handles = []
    try:
        for module, forward in components:
            installed.append((module, module.__dict__.get("forward")))
            # object.__setattr__: a bridge component's own __setattr__ would forward the name to the HF module
            object.__setattr__(module, "forward", _bind(forward, module, state))
        hf_model = getattr(model, "original_model", None)
        if hf_model is not None:
            handles.append(hf_model.base_model.register_forward_pre_hook(_mask_hook(model, state), with_kwargs=True))
        object.__setattr__(model, "_sinkbench_blockwise", state)
        yield state
    finally:
        for handle in handles:
            handle.remove()
        for module, before in reversed(installed):
            if before is None:
                module.__dict__.pop("forward", None)
            else:
                object.__setattr__(module, "forward", before)
        object.__setattr__(model, "_sinkbench_blockwise", previous_state)


def _bind(forward: Callable, module: torch.nn.Module, state: Blockwise) -> Callable:
    def bound(*args: Any, **kwargs: Any) -> Any:
        return forward(module, state, *args, **kwargs)
    bound.__wrapped__ = forward  # type: ignore[attr-defined]
    return bound


def _mask_hook(model: Any, state: Blockwise) -> Callable:
    """Before the HF model runs: check T against the context, keep a 2D padding mask, and hand transformers a
    zero-byte 4D mask so that it builds none (the block forwards rebuild masks from positions)."""
    def pre_hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        embeds = kwargs.get("inputs_embeds")
        reference = ids if ids is not None else embeds
        state.padding, state.sentinel = None, None
        if reference is None or reference.ndim < 2 or not (ids is None or ids.dtype in (torch.long, torch.int)):
            return args, kwargs  # pixels (ViT): no mask to replace, T fixed by the image
        batch, length = reference.shape[:2]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if cache is None:  # a pass without a cache keeps none: HF's default one holds K and V of every layer
            kwargs["use_cache"] = False
        check_length(model, past + length)
        mask = kwargs.get("attention_mask")
        if getattr(mask, "_sinkbench_sentinel", False):  # an enclosing blockwise's (nested): share its masks
            state.padding, state.sentinel = mask._sinkbench_padding, mask
            return args, kwargs
        if mask is not None and mask.ndim == 4:
            return args, kwargs  # a caller's own 4D mask: the block forwards slice it per block
        if mask is not None:
            state.padding = mask.to(dtype=torch.bool, device=reference.device)
        elif not getattr(getattr(model, "sinkbench", None), "causal", True):
            return args, kwargs  # an encoder without padding: transformers builds no mask anyway
        dtype = embeds.dtype if embeds is not None else next(module.parameters()).dtype
        state.sentinel = torch.zeros((), dtype=dtype, device=reference.device).expand(batch, 1, length, past + length)
        state.sentinel._sinkbench_sentinel = True  # a nested blockwise recognises it (and its padding)
        state.sentinel._sinkbench_padding = state.padding
        kwargs["attention_mask"] = state.sentinel
        return args, kwargs
    return pre_hook


# --------------------------------------------------------------------------------------------------
# Which modules, which forward
# --------------------------------------------------------------------------------------------------


def attention_components(model: Any) -> list[tuple[torch.nn.Module, Callable]]:
    """Every attention module of `model` with the block forward that replaces its own; an attention the
    workbench does not know is refused with an error naming it (before anything is installed)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise InputError(f"{_model_name(model)} has no `blocks`: blockwise attention needs a TransformerBridge "
                         "or a workbench toy model")
    out = []
    for layer, block in enumerate(blocks):
        module = getattr(block, "attn", None)
        forward, reason = _forward_for(module)
        if forward is None:
            raise InputError(f"blockwise attention cannot run layer {layer} of {_model_name(model)}: {reason}; "
                             "it supports Llama/SmolLM2, Qwen2, Gemma 3, BERT, ViT/DeiT and the toy models "
                             "(run the full path: leave the attention block unset)")
        out.append((module, forward))
    return out


def _forward_for(module: Any) -> tuple[Callable | None, str]:
    if module is None:
        return None, "the block has no `attn` module"
    if _is_toy(module):
        return _toy_forward, ""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
    from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
        PositionEmbeddingsAttentionBridge,
    )

    if isinstance(module, PositionEmbeddingsAttentionBridge):
        reason = _rotary_unsupported(module, PositionEmbeddingsAttentionBridge)
        return (None, reason) if reason else (_rotary_forward, "")
    if isinstance(module, AttentionBridge) and type(module).forward is AttentionBridge.forward:
        hf = module.original_component
        if getattr(module.config, "use_attn_result", False):
            return None, "use_attn_result (hook_result) is on"
        name = type(hf).__name__
        if name == "BertAttention" and not getattr(hf, "is_cross_attention", False) \
                and not getattr(hf.self.config, "is_decoder", False):
            return _bert_forward, ""
        if name in ("ViTAttention", "DeiTAttention"):
            return _vit_forward, ""
        return None, f"its attention module is {name}"
    return None, f"its attention module is {type(module).__name__}"


def _is_toy(module: Any) -> bool:
    """The toy's Attention (workbench.toy.model), recognised by its fields: this floor imports nothing above it."""
    cfg = getattr(module, "cfg", None)
    return all(hasattr(module, name) for name in ("W_Q", "W_K", "W_V", "W_O", "weights", "hook_pattern")) \
        and hasattr(cfg, "variant") and hasattr(cfg, "positional")


def _rotary_unsupported(module: Any, base: type) -> str:
    """Why the block forward cannot reproduce this PositionEmbeddingsAttentionBridge ('' when it can)."""
    hf, cfg = module.original_component, module.config
    rope = getattr(getattr(hf, "config", None), "rope_parameters", None)
    checks = [
        (type(module).forward is not base.forward, f"{type(module).__name__} has its own forward"),
        (bool(getattr(cfg, "use_split_qkv_input", False) or getattr(cfg, "use_attn_in", False)),
         "use_split_qkv_input / use_attn_in is on"),
        (bool(getattr(cfg, "use_attn_result", False)), "use_attn_result (hook_result) is on"),
        (bool(getattr(cfg, "gated_q_proj", False)) or "gate" in module.submodules, "gated attention"),
        (getattr(hf, "key_multiplier", None) is not None, "a key multiplier"),
        (getattr(hf, "sinks", None) is not None, "learned attention sinks (gpt-oss)"),
        (getattr(getattr(hf, "config", None), "clip_qkv", None) is not None, "clip_qkv"),
        (module._qk_norm_phase not in (None, "post_reshape") or module._qk_norm_per_head
         or bool(getattr(cfg, "qk_norm_after_rope", False)), "a q/k norm other than Gemma's"),
        (bool(getattr(cfg, "rotary_interleaved_cos_sin", False) or getattr(cfg, "rotary_adjacent_pairs", False)),
         "adjacent-pair rotary embeddings"),
        (isinstance(rope, dict) and rope.get("llama_4_scaling_beta") is not None, "llama-4 query scaling"),
    ]
    return next((why for failed, why in checks if failed), "")


# --------------------------------------------------------------------------------------------------
# Masks and the block loop
# --------------------------------------------------------------------------------------------------


def _visible(block: QueryBlock, n_keys: int, device: Any, causal: bool, window: int | None,
             padding: torch.Tensor | None) -> torch.Tensor | None:
    """[b or 1, 1, B, K] bool: which keys each query of the block sees (None: every key). Query i of the
    block sits at position (K - n_queries) + start + i: a cache's keys come first."""
    if not causal and window is None and padding is None:
        return None
    positions = torch.arange(block.start, block.stop, device=device) + (n_keys - block.n_queries)
    keys = torch.arange(n_keys, device=device)
    visible = torch.ones(block.size, n_keys, dtype=torch.bool, device=device)
    if causal:
        visible = visible & (keys[None, :] <= positions[:, None])
    if window is not None:  # transformers' sliding_window_overlay: k > q - W
        visible = visible & (keys[None, :] > positions[:, None] - window)
    visible = visible[None, None]
    if padding is not None:
        visible = visible & padding[:, None, None, :n_keys]
    return visible


def _masked(scores: torch.Tensor, block: QueryBlock, mask: Any, state: Blockwise, causal: bool,
            window: int | None) -> torch.Tensor:
    """Apply the block's mask: the structural one (causal, window, padding) unless the caller gave a real
    4D mask, which is sliced to the block's rows and applied as TransformerLens applies it."""
    if isinstance(mask, torch.Tensor) and mask.ndim == 4 and mask is not state.sentinel:
        rows = mask[..., -block.n_queries:, :][..., block.rows, :scores.shape[-1]]
        if rows.dtype == torch.bool:
            return scores.masked_fill(~rows, torch.finfo(scores.dtype).min)
        return scores + rows.to(scores.dtype)
    visible = _visible(block, scores.shape[-1], scores.device, causal, window,
                       state.padding if state.sentinel is not None else None)
    return scores if visible is None else scores.masked_fill(~visible, torch.finfo(scores.dtype).min)


def _key_span(block: QueryBlock, n_keys: int, causal: bool, window: int | None, mask: Any,
              state: Blockwise) -> tuple[int, int]:
    """Keys [lo, hi) that some query of the block may see under the structural mask (causal, sliding window):
    the scores are computed there only. Every key when a caller's own 4D mask decides."""
    if isinstance(mask, torch.Tensor) and mask.ndim == 4 and mask is not state.sentinel:
        return 0, n_keys
    first = block.start + n_keys - block.n_queries  # position of the block's first query
    hi = min(n_keys, first + block.size) if causal else n_keys
    lo = max(0, first - window + 1) if window is not None else 0
    return lo, hi


def _run_blocks(state: Blockwise, n_queries: int, size: int,
                one_block: Callable[[QueryBlock], torch.Tensor]) -> torch.Tensor:
    """Call `one_block` on every query block with current_block() set; its outputs fill one tensor (dim 1),
    allocated after the first block and written in place: a list of small per-block outputs kept alive between
    the blocks' large temporaries would fragment the heap (glibc keeps the holes; RSS grows per block)."""
    out = None
    for block in state.blocks(n_queries, size):
        token = _CURRENT.set(block)
        try:
            piece = one_block(block)
        finally:
            _CURRENT.reset(token)
        if block.is_whole:
            return piece
        if out is None:
            out = piece.new_empty((piece.shape[0], n_queries, *piece.shape[2:]))
        out[:, block.rows] = piece
        del piece
    return out


def _run_whole(n_queries: int, one_block: Callable[[QueryBlock], torch.Tensor]) -> torch.Tensor:
    """`one_block` on one block holding every query (the fused path), with current_block() set to it."""
    token = _CURRENT.set(QueryBlock.whole(n_queries))
    try:
        return one_block(QueryBlock.whole(n_queries))
    finally:
        _CURRENT.reset(token)


# --------------------------------------------------------------------------------------------------
# No pattern where none is read: the fused path and the key readers
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class KeyReader:
    """Reads the attention of each query on a few keys without needing the pattern: `keys` [b, K] bool (b: the
    `rows` of the forward batch it reads); `columns=False`: `read(mass)` with mass [b, head, B] =
    sum_{j in keys} A[q, j]; `columns=True`: `read(weights, columns)` with weights [b, head, B, C] = A[q, j] on
    the C key columns any row marks (zero where a row does not mark it). Called per query block
    (current_block() set).

    A KeyReader is a hook: put `(sites.pattern(layer), reader)` in a hook list. As a TransformerLens hook it
    reads the pattern it fires on (the full path, or a block). `passes.forward` hands it to the layer instead
    when the pass runs blockwise (`reading_keys`), so that the layer may run fused and serve it from the
    kernel's row logsumexp and the scores of its columns only."""

    keys: torch.Tensor
    read: Callable[..., None]
    rows: slice | None = None  # None: every row of the batch
    columns: bool = False

    def __call__(self, pattern: torch.Tensor, hook: Any = None) -> None:
        self.from_pattern(pattern)

    def from_pattern(self, pattern: torch.Tensor) -> None:
        """From a (block's) pattern [batch, head, B, K] after its hooks' edits."""
        pattern = (pattern if self.rows is None else pattern[self.rows]).float()
        keys = self.keys[:, :pattern.shape[-1]]
        if not self.columns:
            self.read((pattern * keys[:, None, None, :].float()).sum(-1))
            return
        columns = torch.nonzero(keys.any(0)).flatten()
        self.read(pattern[..., columns] * keys[:, columns].float()[:, None, None, :], columns)

    def from_lse(self, query: torch.Tensor, key: torch.Tensor, lse: torch.Tensor | None, scaling: float,
                 causal: bool, state: Blockwise) -> None:
        """The fused path: query, key (b, h, T, d) of every row, the rows' logsumexp (b, h, T) or None."""
        rows = slice(None) if self.rows is None else self.rows
        weights, columns = _key_weights(query[rows], key[rows], None if lse is None else lse[rows], self.keys,
                                        scaling, causal, state, summed=not self.columns)
        if self.columns:
            self.read(weights, columns)
        else:
            self.read(weights)


KEY_MASS = "attn.key_mass"  # probe_pass: a reader of sum_{j in sink} A[q, j] (a KeyReader on hook_pattern)
_KEY_READERS: contextvars.ContextVar[dict[int, tuple[KeyReader, ...]]] = contextvars.ContextVar(
    "sinkbench_key_readers", default=None)


@contextlib.contextmanager
def reading_keys(readers: dict[torch.nn.Module, list[KeyReader]]) -> Iterator[None]:
    """Key readers per attention module, for the blockwise forwards run inside the context: on the fused path
    from the row statistics (logsumexp) and the few key columns they read, on the explicit path from the
    block's pattern after its hooks. The full path (TransformerLens's forward) does not read them: there a
    KeyReader is registered on hook_pattern instead (passes.forward decides)."""
    token = _KEY_READERS.set({**(_KEY_READERS.get() or {}),
                              **{id(module): tuple(found) for module, found in readers.items()}})
    try:
        yield
    finally:
        _KEY_READERS.reset(token)


def _key_readers(module: Any) -> tuple[KeyReader, ...]:
    return (_KEY_READERS.get() or {}).get(id(module), ())


def _serve_key_readers(module: Any, pattern: torch.Tensor, readers: tuple | None = None) -> None:
    """The explicit path: each reader of `module` reads the block's pattern (after its hooks' edits)."""
    for reader in _key_readers(module) if readers is None else readers:
        reader.from_pattern(pattern)


def _has_hooks(point: Any) -> bool:
    return point is not None and bool(getattr(point, "_forward_hooks", None) or
                                      getattr(point, "_forward_pre_hooks", None))


def _fusable(module: Any, state: Blockwise, mask: Any, softcap: Any, window: int | None, causal: bool,
             dropout: float, n_queries: int, n_keys: int, readers: tuple = ()) -> bool:
    """Whether this attention call may run fused: nothing reads or edits its scores or pattern, its key readers
    read few columns (at most max(64, K / 16): many would make the fused path hold what the blocks avoid),
    and its mask is the structural causal one (no sliding window inside the keys, softcapping, padding, cache
    offset, dropout or a caller's 4D mask)."""
    if not state.fuse or _has_hooks(getattr(module, "hook_attn_scores", None)) or \
            _has_hooks(getattr(module, "hook_pattern", None)):
        return False
    if any(reader.columns and int(reader.keys.any(0).sum()) > max(64, n_keys // 16) for reader in readers):
        return False
    if softcap is not None or dropout > 0.0 or n_queries != n_keys or (window is not None and window < n_keys):
        return False
    if isinstance(mask, torch.Tensor) and mask is not state.sentinel:
        return False
    return state.sentinel is None or state.padding is None or bool(state.padding.all())


def _fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float,
           causal: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q k^T * scaling) v without the pattern (a fused kernel, memory linear in T): z (b, h, T, d) and,
    on the CPU, the rows' logsumexp (b, h, T) of the same kernel (None elsewhere: computed per block)."""
    cpu_kernel = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if query.device.type == "cpu" and cpu_kernel is not None and query.dtype in (torch.float32, torch.bfloat16):
        z, lse = cpu_kernel(query, key, value, 0.0, causal, scale=scaling)
        return z, lse
    z = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=causal, scale=scaling)
    return z, None


def _key_weights(query: torch.Tensor, key: torch.Tensor, lse: torch.Tensor | None, keys: torch.Tensor,
                 scaling: float, causal: bool, state: Blockwise, summed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A[q, j] = exp(q.k_j * scaling - logsumexp_q) on the key columns any row of `keys` [b, K] marks, zero
    where a row does not mark one: ([b, h, T, C], columns [C]), or summed over the columns ([b, h, T]) —
    the scores of those columns only, and the rows' logsumexp, where the kernel gave none, one block of rows
    at a time (the scores, never the pattern)."""
    batch, n_heads, n_queries, _ = query.shape
    n_keys = key.shape[-2]
    columns = torch.nonzero(keys[:, :n_keys].any(0)).flatten()
    shape = (batch, n_heads, n_queries) if summed else (batch, n_heads, n_queries, len(columns))
    out = query.new_zeros(shape, dtype=torch.float32)
    if len(columns) == 0:
        return out, columns
    picked = key[:, :, columns].float()  # (b, h, C, d)
    marked = keys[:, columns].float()[:, None, None, :]  # (b, 1, 1, C)
    size = max(1, min(n_queries, BLOCK_BYTES // (_LIVE_TENSORS * batch * n_heads * max(len(columns), 1) * 4)))
    if lse is None:
        size = min(size, _rows_within(state.budget, batch, n_heads, n_keys))
    key_t = key.transpose(-2, -1)
    for start in range(0, n_queries, size):
        stop = min(start + size, n_queries)
        q = query[:, :, start:stop].float()
        if lse is None:
            scores = torch.matmul(q, key_t.float()) * scaling
            if causal:
                positions = torch.arange(start, stop, device=q.device)[:, None]
                scores = scores.masked_fill(torch.arange(n_keys, device=q.device)[None, :] > positions,
                                            float("-inf"))
            rows_lse = torch.logsumexp(scores, dim=-1)
        else:
            rows_lse = lse[:, :, start:stop].float()
        logits = torch.matmul(q, picked.transpose(-2, -1)) * scaling - rows_lse[..., None]  # (b, h, rows, C)
        weight = torch.exp(logits) * marked
        if causal:  # a key after the query carries no weight
            weight = weight * (columns[None, :] <= torch.arange(start, stop, device=q.device)[:, None]).float()
        out[:, :, start:stop] = weight.sum(-1) if summed else weight
    return out, columns


# --------------------------------------------------------------------------------------------------
# Llama / Qwen2 / Gemma 3: PositionEmbeddingsAttentionBridge
# --------------------------------------------------------------------------------------------------


def _rotary_forward(self: Any, state: Blockwise, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """TransformerLens's PositionEmbeddingsAttentionBridge.forward for the families above, the scores,
    softmax, pattern and output projection run per query block."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    hf_attn = self.original_component
    hidden_states = kwargs.pop("hidden_states") if "hidden_states" in kwargs else args[0]
    position_embeddings = kwargs.pop("position_embeddings", None)
    attention_mask = kwargs.pop("attention_mask", None)
    hidden_states = self.hook_in(hidden_states)
    batch, n_queries = hidden_states.shape[:2]
    head_dim = hf_attn.head_dim
    hidden_shape = (batch, n_queries, -1, head_dim)
    query = self.q(hidden_states).view(hidden_shape).transpose(1, 2)  # (b, nh, T, hs); hook_q fires
    key = self.k(hidden_states).view(hidden_shape).transpose(1, 2)  # (b, nkv, T, hs)
    value = self.v(hidden_states).view(hidden_shape).transpose(1, 2)
    if self._qk_norm_phase == "post_reshape":  # Gemma 3
        query = self.hook_q_normed(self.q_norm(query))
        if "k_norm" in self.submodules:
            key = self.hook_k_normed(self.k_norm(key))
    if position_embeddings is not None:
        cos, sin = self._apply_position_embedding_hooks(position_embeddings)
        if cos.shape[-1] != head_dim:
            raise InputError(f"blockwise attention: rotary embeddings over {cos.shape[-1]} of {head_dim} head "
                             "dimensions are not supported (run the full path)")
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
    if hasattr(self, "hook_rot_q"):
        query = self.hook_rot_q(query)
    if hasattr(self, "hook_rot_k"):
        key = self.hook_rot_k(key)
    cache = kwargs.pop("cache", None)  # transformers 5.2x names the layer's cache `cache`; TransformerLens's
    if cache is not None and kwargs.get("past_key_values") is None:  # _update_kv_cache reads past_key_values
        kwargs["past_key_values"] = cache
    key, value = self._update_kv_cache(key, value, **kwargs)
    groups = getattr(hf_attn, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    n_keys = key.shape[-2]
    scaling = getattr(hf_attn, "scaling", head_dim ** -0.5)
    softcap = getattr(hf_attn, "attn_logit_softcapping", None)
    window = getattr(hf_attn, "sliding_window", None)
    causal = bool(getattr(self, "is_causal", True))
    key_t = key.transpose(-2, -1)  # (b, nh, hs, K)
    o_weight = getattr(getattr(getattr(self, "o", None), "original_component", None), "weight", None)
    readers = _key_readers(self)
    dropout = getattr(hf_attn, "attention_dropout", 0.0) if self.training else 0.0

    def project(z: torch.Tensor, rows: int) -> torch.Tensor:
        z = z.transpose(1, 2).reshape(batch, rows, -1)  # (b, B, nh * hs)
        z = self._pre_output_projection(z)
        if isinstance(o_weight, torch.Tensor) and o_weight.dtype.is_floating_point and z.dtype != o_weight.dtype:
            z = z.to(o_weight.dtype)
        return self.o(z)  # hook_z fires on the block: (b, B, nh, hs)

    if _fusable(self, state, attention_mask, softcap, window, causal, dropout, n_queries, n_keys, readers):
        def whole(block: QueryBlock) -> torch.Tensor:
            z, lse = _fused(query, key, value, scaling, causal)
            for reader in readers:
                reader.from_lse(query, key, lse, scaling, causal, state)
            return project(z, n_queries)

        state.n_fused += 1
        return self.hook_out(_run_whole(n_queries, whole)), None

    def one_block(block: QueryBlock) -> torch.Tensor:
        lo, hi = _key_span(block, n_keys, causal, window, attention_mask, state)
        scores = torch.matmul(query[:, :, block.rows], key_t[..., lo:hi]) * scaling  # (b, nh, B, hi - lo)
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if (lo, hi) != (0, n_keys):  # keys no query of the block sees: the mask value, as on the full path
            every = scores.new_full((*scores.shape[:-1], n_keys), torch.finfo(scores.dtype).min)
            every[..., lo:hi] = scores
            scores = every
        scores = self.hook_attn_scores(_masked(scores, block, attention_mask, state, causal, window))
        weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        if dropout > 0.0:
            weights = torch.nn.functional.dropout(weights, p=dropout, training=True)
        weights = self.hook_pattern(weights)
        _serve_key_readers(self, weights, readers)
        if (lo, hi) != (0, n_keys) and not (weights[..., :lo].any() or weights[..., hi:].any()):
            z = torch.matmul(weights[..., lo:hi], value[:, :, lo:hi])  # the other keys carry no weight
        else:  # a hook moved weight onto keys the mask hid: they count, as on the full path
            z = torch.matmul(weights, value)
        return project(z, block.size)

    size = state.rows(batch, query.shape[1], n_queries, n_keys)
    return self.hook_out(_run_blocks(state, n_queries, size, one_block)), None


# --------------------------------------------------------------------------------------------------
# BERT and ViT / DeiT: AttentionBridge over the HF module
# --------------------------------------------------------------------------------------------------


def _encoder_attention(self: Any, state: Blockwise, hidden_states: torch.Tensor, attention_mask: Any,
                       scaling: float, softmax_fp32: bool) -> torch.Tensor:
    """Bidirectional attention through the bridge's q/k/v/o projections, per query block; returns the output
    of the o projection [b, T, d_model] (hook_z and o fire per block)."""
    batch, n_queries = hidden_states.shape[:2]
    heads = int(self.config.n_heads)
    query = self.q(hidden_states).view(batch, n_queries, heads, -1).transpose(1, 2)  # (b, nh, T, hs)
    key = self.k(hidden_states).view(batch, n_queries, heads, -1).transpose(1, 2)
    value = self.v(hidden_states).view(batch, n_queries, heads, -1).transpose(1, 2)
    key_t = key.transpose(-2, -1)

    def one_block(block: QueryBlock) -> torch.Tensor:
        scores = torch.matmul(query[:, :, block.rows], key_t) * scaling  # (b, nh, B, T)
        scores = self.hook_attn_scores(_masked(scores, block, attention_mask, state, False, None))
        if softmax_fp32:  # ViT's eager attention
            weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        else:  # BERT's
            weights = torch.nn.functional.softmax(scores, dim=-1)
        weights = self.hook_pattern(self._apply_attn_dropout(weights) if self.training else weights)
        _serve_key_readers(self, weights)
        z = torch.matmul(weights, value).transpose(1, 2).reshape(batch, block.size, -1)
        return self.o(z)

    size = state.rows(batch, heads, n_queries, n_queries)
    return _run_blocks(state, n_queries, size, one_block)


def _split_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, Any]:
    hidden = kwargs.pop("hidden_states") if "hidden_states" in kwargs else args[0]
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    return hidden, mask


def _bert_forward(self: Any, state: Blockwise, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """BertAttention: self-attention per block, then BertSelfOutput (dense, dropout, LayerNorm(x + input))."""
    hidden, mask = _split_inputs(args, kwargs)
    hidden = self.hook_in(hidden)
    hf = self.original_component
    dense = _encoder_attention(self, state, hidden, mask, hf.self.scaling, softmax_fp32=False)
    out = hf.output.LayerNorm(hf.output.dropout(dense) + hidden)
    return self.hook_out(out), None


def _vit_forward(self: Any, state: Blockwise, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """ViTAttention / DeiTAttention: self-attention per block, then o_proj (the residual is the layer's)."""
    hidden, mask = _split_inputs(args, kwargs)
    hidden = self.hook_in(hidden)
    out = _encoder_attention(self, state, hidden, mask, self.original_component.scaling, softmax_fp32=True)
    return self.hook_out(out), None


# --------------------------------------------------------------------------------------------------
# The toy (workbench.toy.model.Attention)
# --------------------------------------------------------------------------------------------------


def _toy_forward(self: Any, state: Blockwise, x: torch.Tensor) -> torch.Tensor:
    """The toy's Attention.forward with its scores, weights, gate and z per query block."""
    import torch.nn.functional as F

    batch, n_queries, _ = x.shape
    q = self.hook_q(torch.einsum("btd,hde->bthe", x, self.W_Q))  # (B, T, nh, hs)
    k = self.hook_k(torch.einsum("btd,hde->bthe", x, self.W_K))
    v = self.hook_v(torch.einsum("btd,hde->bthe", x, self.W_V))
    if self.cfg.positional == "rotary":
        rotate = inspect.getmodule(type(self)).rotate  # the toy's own RoPE
        q = self.hook_rot_q(rotate(q, self.cfg.rotary_base))
        k = self.hook_rot_k(rotate(k, self.cfg.rotary_base))
    keys = torch.arange(n_queries, device=x.device)
    scale = math.sqrt(self.cfg.d_head)

    def one_block(block: QueryBlock) -> torch.Tensor:
        q_block = q[:, block.rows]
        scores = torch.einsum("bqhe,bkhe->bhqk", q_block, k) / scale  # (B, nh, rows, T)
        positions = keys[block.rows]
        scores = self.hook_attn_scores(scores.masked_fill(keys[None, :] > positions[:, None], float("-inf")))
        if self.variant == "relu":  # row t divided by its t + 1 visible keys (the toy's `weights`, per block)
            weights = F.relu(scores) / (positions + 1).to(scores.dtype)[:, None]
        else:
            weights = self.weights(scores, q_block)  # fires hook_sink on the block's rows
        pattern = self.hook_pattern(weights)
        _serve_key_readers(self, pattern)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)  # (B, rows, nh, hs)
        if self.variant == "gated":
            gate = torch.sigmoid(torch.einsum("btd,hdg->bthg", x[:, block.rows], self.W_G) + self.b_G)
            z = z * self.hook_gate(gate)
        z = self.hook_z(z)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)

    size = state.rows(batch, self.cfg.n_heads, n_queries, n_queries)
    return _run_blocks(state, n_queries, size, one_block)
