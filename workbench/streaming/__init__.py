"""Streaming perplexity under KV-cache policies: does a model keep predicting well once the first
tokens of a long text have left its cache? (StreamingLLM; Xiao et al. 2024, ICLR)

    >>> text = streaming.long_text(model, corpus="austen", document="Emma", max_tokens=4096)
    >>> res = streaming.stream_policies(model, text, [Sinks(4, 256), Window(256), Dense()])  # one row per metric

A KV cache that keeps only the last W tokens (window attention) lets a model read a text of any length
in bounded memory, yet Xiao et al. found its perplexity explodes as soon as the first tokens are
evicted: those tokens are attention sinks, and evicting them removes a large part of every later
query's softmax denominator (Xiao §3.1, Eq. 1). Keeping the first S tokens next to the window
("S + (W - S)", StreamingLLM) restores the quality of sliding-window re-computation.

Rooms: `policies` (which tokens stay: Dense, Window, Sinks, Recompute, your own CachePolicy), `engine`
(the Llama decoder run with a caller-supplied attention; which models it refuses), `exact` (token by
token through a pruned cache: any policy), `banded` (chunks with a banded mask: the same numbers, fast),
`recompute` (the window re-encoded every step: any causal LM), `quant` (`KVCacheQuant`: what the cache
holds, quantised at every step), `text` (one long token stream) and `run` (`stream_nll` for one policy,
`stream_policies` for several -> Results).
"""

from workbench.streaming.banded import DEFAULT_CHUNK
from workbench.streaming.engine import LlamaDecoder, Stream, cache_engine_refusal
from workbench.streaming.policies import (
    POLICY_NAMES,
    CachePolicy,
    CacheView,
    Dense,
    Recompute,
    Sinks,
    Window,
    policy_grid,
)
from workbench.streaming.quant import KVCacheQuant
from workbench.streaming.run import CI_BLOCK, stream_nll, stream_policies
from workbench.streaming.text import long_text

__all__ = ["CI_BLOCK", "DEFAULT_CHUNK", "POLICY_NAMES", "CachePolicy", "CacheView", "Dense", "KVCacheQuant",
           "LlamaDecoder", "Recompute", "Sinks", "Stream", "Window", "cache_engine_refusal", "long_text", "policy_grid",
           "stream_nll", "stream_policies"]
