"""No pattern where none is read: `KeyReader` (the attention on a few keys, from the pattern or from the fused
kernel's row logsumexp), `reading_keys`, and the fused path (when a layer may run it, the kernel call)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from workbench.attention.plan import _LIVE_TENSORS, BLOCK_BYTES, Blockwise, _rows_within


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
