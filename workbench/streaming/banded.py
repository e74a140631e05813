"""The fast path: how can one pass per chunk of tokens give the numbers of a token-by-token cache?

    >>> stream = stream_fast(LlamaDecoder(model), ids, sinks=4, window=256, chunk=256, progress=False)
    >>> stream.path, stream.max_keys                                               # "fast", 256

Under Dense, Window and Sinks token t sees a fixed band: the S sinks at relative distance min(t, W-1) - j,
and the W - S most recent tokens at their text distance. So one pass with a banded mask, plus a separate
sink score block whose queries are rotated at min(t, W-1), reproduces the cache; the keys a chunk needs
from earlier chunks (S sinks + W - S - 1 recent) are carried between chunks (`_BandedCache`). The deviation
from the exact path is floating-point only (tested; measured in README.md and bench/streaming.py).
Nothing is evicted before W, so several policies can start from one dense pass over their first W
tokens (`SharedPrefix`), which `stream_policies` computes once. A quantised cache runs here only when
each token can be quantised once, as it enters (`KVCacheQuant.fast_path_refusal`): then the carried
keys and values are the quantised ones, exactly what the exact path's cache would hold.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch import Tensor

from workbench.core.progress import progress_bar
from workbench.streaming.engine import LlamaDecoder, Stream
from workbench.streaming.quant import CacheQuantizer, KVCacheQuant

DEFAULT_CHUNK = 256  # tokens per pass


class _BandedCache:
    """What the fast path carries between chunks, per layer: keys (before RoPE) and values of the S
    sinks and of the last W - S - 1 tokens, which is what the exact path's cache would hold.

    For a chunk of queries t0..t1-1, query t attends to the sinks j < S, scored as if it sat at cache
    slot min(t, W - 1) and sink j at slot j, and to the recent tokens S <= j <= t with t - j < W - S,
    at their text distance; both blocks share one softmax.
    """

    def __init__(self, decoder: LlamaDecoder, sinks: int, window: int | None,
                 quantizer: CacheQuantizer | None = None):
        self.decoder, self.sinks, self.window, self.quantizer = decoder, sinks, window, quantizer
        self.recent = None if window is None else window - sinks  # recent tokens a query sees, itself included
        n_layers = len(decoder.layers)
        empty = torch.zeros(decoder.n_kv_heads, 0, decoder.d_head, dtype=decoder.dtype, device=decoder.device)
        self.sink_k, self.sink_v = [empty] * n_layers, [empty] * n_layers  # [KV, <=S, d]: tokens 0..S-1
        self.recent_k, self.recent_v = [empty] * n_layers, [empty] * n_layers  # [KV, m, d]: tokens t0-m..t0-1

    @property
    def entries(self) -> int:
        return self.sink_k[0].shape[1] + self.recent_k[0].shape[1]

    def seed(self, prefix: SharedPrefix, length: int) -> None:
        """Start after a dense pass over tokens 0..length-1 (length <= W: nothing evicted yet)."""
        keep_from = self.sinks if self.recent is None else max(self.sinks, length - (self.recent - 1))
        for layer, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
            self.sink_k[layer], self.sink_v[layer] = k[:, :min(self.sinks, length)], v[:, :min(self.sinks, length)]
            self.recent_k[layer], self.recent_v[layer] = k[:, keep_from:length], v[:, keep_from:length]

    def start_chunk(self, t0: int, t1: int) -> None:
        """The band of queries t0..t1-1: one additive mask over [sinks | window keys] and the RoPE tables."""
        decoder, device = self.decoder, self.decoder.device
        self.t0, self.c, self.m = t0, t1 - t0, self.recent_k[0].shape[1]
        self.text_positions = torch.arange(t0, t1)
        self.n_sinks = min(self.sinks, t1)  # sink tokens that exist by the end of this chunk
        query_t = torch.arange(t0, t1, device=device)[:, None]  # [c, 1] text index of each query
        key_t = torch.arange(t0 - self.m, t1, device=device)[None]  # [1, m + c] text index of each window key
        sees_recent = (key_t <= query_t) & (key_t >= self.sinks)  # [c, m + c]
        if self.recent is not None:
            sees_recent &= query_t - key_t < self.recent
        sees_sink = torch.arange(self.n_sinks, device=device)[None] <= query_t  # [c, n_sinks]
        self.visible = torch.cat([sees_sink, sees_recent], dim=1)  # [c, n_sinks + m + c]
        self.mask = torch.zeros(self.visible.shape, dtype=decoder.dtype, device=device).masked_fill(
            ~self.visible, -math.inf)
        # Window keys at local positions 0..m+c-1: RoPE only sees distances, and small angles stay exact.
        self.cos_w, self.sin_w = decoder.rope(torch.arange(self.m + self.c, device=device))
        slot = query_t[:, 0] if self.window is None else query_t[:, 0].clamp(max=self.window - 1)
        self.cos_q, self.sin_q = decoder.rope(slot)  # the query's cache slot, for the sink block
        self.cos_s, self.sin_s = decoder.rope(torch.arange(self.n_sinks, device=device))
        # The first token the next chunk still needs.
        self.keep_from = self.sinks if self.recent is None else max(self.sinks, t1 - (self.recent - 1))

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        decoder, m = self.decoder, self.m
        if self.quantizer is not None:  # on write only (per-token): the cache carries quantised entries
            k, v = self.quantizer.write(layer, k, v, self.text_positions)
        new_sinks = self.n_sinks - self.sink_k[layer].shape[1]
        sink_k = self.sink_k[layer] = torch.cat([self.sink_k[layer], k[:, :new_sinks]], dim=1)  # [KV, n_sinks, d]
        sink_v = self.sink_v[layer] = torch.cat([self.sink_v[layer], v[:, :new_sinks]], dim=1)
        window_k = torch.cat([self.recent_k[layer], k], dim=1)  # [KV, m + c, d]
        window_v = torch.cat([self.recent_v[layer], v], dim=1)
        scores = torch.cat([
            decoder.scores(decoder.rotate(q, self.cos_q, self.sin_q), decoder.rotate(sink_k, self.cos_s, self.sin_s)),
            decoder.scores(decoder.rotate(q, self.cos_w[m:], self.sin_w[m:]),
                           decoder.rotate(window_k, self.cos_w, self.sin_w)),
        ], dim=-1) + self.mask  # [KV, G, c, n_sinks + m + c]
        z, _ = decoder.attention(layer, scores, torch.cat([sink_v, window_v], dim=1))  # hooks: [1, H, c, K]
        drop = self.keep_from - (self.t0 - m)
        self.recent_k[layer], self.recent_v[layer] = window_k[:, drop:], window_v[:, drop:]
        return z


def _read_chunk(decoder: LlamaDecoder, cache: _BandedCache, ids: Tensor, t0: int, t1: int) -> np.ndarray:
    """Read tokens t0..t1-1 through the cache; the NLL of each next token, [t1 - t0]."""
    cache.start_chunk(t0, t1)
    logits = decoder.forward(ids[t0:t1], cache.attend)  # [c, vocab]
    targets = ids[t0 + 1:t1 + 1]
    return (-torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None])[:, 0]).cpu().numpy()


@dataclasses.dataclass
class SharedPrefix:
    """A dense pass over the first `length` tokens, computed once by `stream_policies` for several
    fast-path policies: while t < W nothing has been evicted, so every Sinks(S, W) / Window(W) reads
    tokens 0..W-1 exactly as dense does; each policy starts from this pass instead of recomputing it."""

    length: int
    keys: list[Tensor]  # per layer [KV, length, d], before RoPE (quantised, with a quantizer)
    values: list[Tensor]
    nll: np.ndarray  # [length]
    seconds: float
    quant: KVCacheQuant | None = None  # the quantiser the pass read through (None: full precision)

    @classmethod
    def compute(cls, decoder: LlamaDecoder, ids: Tensor, length: int, chunk: int,
                quantizer: CacheQuantizer | None = None) -> SharedPrefix:
        started = time.perf_counter()
        cache = _BandedCache(decoder, 0, None, quantizer)
        nll = [_read_chunk(decoder, cache, ids, t0, min(t0 + chunk, length)) for t0 in range(0, length, chunk)]
        return cls(length, cache.recent_k, cache.recent_v, np.concatenate(nll), time.perf_counter() - started,
                   None if quantizer is None else quantizer.quant)


def stream_fast(decoder: LlamaDecoder, ids: Tensor, sinks: int, window: int | None, chunk: int,
                progress: bool, prefix: SharedPrefix | None = None, quantizer: CacheQuantizer | None = None) -> Stream:
    """Read ids in chunks of `chunk` tokens through a `_BandedCache` (after `prefix`, if given; it must have
    read through the same quantiser)."""
    started = time.perf_counter()
    n_tokens = len(ids)
    if prefix is not None and prefix.quant != (None if quantizer is None else quantizer.quant):
        raise ValueError("the shared prefix was read through another KV quantiser")  # a bug, not an input
    cache = _BandedCache(decoder, sinks, window, quantizer)
    nll = np.full(n_tokens - 1, np.nan)
    start = 0 if prefix is None else min(prefix.length, window or prefix.length, n_tokens - 1)
    if start:
        cache.seed(prefix, start)
        nll[:start] = prefix.nll[:start]
    max_entries, max_keys = cache.entries, start
    for t0 in progress_bar(range(start, n_tokens - 1, chunk), desc=f"stream S={sinks} W={window} (fast)",
                           enabled=progress):
        nll[t0:t0 + chunk] = _read_chunk(decoder, cache, ids, t0, min(t0 + chunk, n_tokens - 1))
        max_keys = max(max_keys, int(cache.visible.sum(-1).max()))
        max_entries = max(max_entries, cache.entries)
    itemsize = torch.empty(0, dtype=decoder.dtype).element_size()
    bytes_held = 2 * itemsize * len(decoder.layers) * decoder.n_kv_heads * decoder.d_head * max_entries
    seconds = time.perf_counter() - started + (prefix.seconds if start else 0.0)  # as if it had run alone
    return Stream(nll, "fast", max_entries, max_keys, bytes_held, seconds, chunk=chunk)
