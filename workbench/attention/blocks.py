"""The explicit path's masks and block loop: which keys a block of queries sees (causal, sliding window,
padding, a caller's 4D mask), the key span its scores need, and the loop that runs the blocks with
`current_block()` set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from workbench.attention.plan import _CURRENT, Blockwise, QueryBlock


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
