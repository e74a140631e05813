"""Planning a pass: the query block a hook sees (`QueryBlock`, `current_block`), the memory budget, the plan
(full path or blocks of B rows), the rule for `--attention-block`, and `Blockwise`, the state of one
installation. The story of the whole path: workbench/attention/__init__.py."""

from __future__ import annotations

import contextvars
import dataclasses
import os
import re
from collections.abc import Iterator
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


# --------------------------------------------------------------------------------------------------
# The state of one blockwise installation
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
