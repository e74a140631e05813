"""The exact path: how does a model read a text one token at a time through a cache a policy prunes?

    >>> stream = stream_exact(LlamaDecoder(model), ids, Sinks(4, 256), progress=False)   # any CachePolicy
    >>> stream.nll.shape, stream.max_cache_entries                                      # (N - 1,), 256

The reference for every policy, custom ones included: about N decode steps. Before each token a full
cache (W entries) is pruned by `policy.keep`, and positions are assigned inside the cache, as
StreamingLLM does for RoPE (Xiao §3.2): keys are cached *before* rotation and rotated at their slot
index at every step; the query sits at slot min(t, W-1). With a `CacheQuantizer` (workbench.streaming.quant)
every step reads the cache through it: what enters is quantised on write where that is exact (per-token),
everything else is quantised from the full-precision cache at that step.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor

from workbench.core.errors import InputError
from workbench.core.progress import progress_bar
from workbench.streaming.engine import LlamaDecoder, Stream
from workbench.streaming.hooks import StreamIntervention
from workbench.streaming.policies import CachePolicy, CacheView
from workbench.streaming.quant import CacheQuantizer


def _checked_keep(policy: CachePolicy, view: CacheView) -> Tensor:
    kept = policy.keep(view)
    kept = torch.as_tensor(kept, dtype=torch.long).flatten().cpu()
    budget = view.n - 1
    if len(kept) > budget:
        raise InputError(f"policy {policy.label()} kept {len(kept)} of {view.n} cache entries; it must free at "
                         f"least one slot for the incoming token (keep at most {budget})")
    if len(kept) and (int(kept.min()) < 0 or int(kept.max()) >= view.n):
        raise InputError(f"policy {policy.label()} returned slot {int(kept.max())}; allowed 0..{view.n - 1}")
    if len(torch.unique(kept)) != len(kept):
        raise InputError(f"policy {policy.label()} returned a slot twice: {kept.tolist()}")
    return torch.sort(kept).values


def stream_exact(decoder: LlamaDecoder, ids: Tensor, policy: CachePolicy, progress: bool,
                 quantizer: CacheQuantizer | None = None, intervention: StreamIntervention | None = None) -> Stream:
    """Read ids token by token; before each token, a full cache is pruned by `policy.keep`; with a
    `quantizer`, every step attends to the cache as it quantises it; with an `intervention`, its hooks run
    at every step on the cached tokens in slot order (workbench.streaming.hooks)."""
    started = time.perf_counter()
    n_tokens = len(ids)
    capacity = policy.window or n_tokens
    n_layers, kv, d = len(decoder.layers), decoder.n_kv_heads, decoder.d_head
    keys = torch.zeros(n_layers, kv, capacity, d, dtype=decoder.dtype, device=decoder.device)  # before RoPE
    values = torch.zeros_like(keys)
    positions = torch.zeros(capacity, dtype=torch.long)  # text index of the token in each slot
    last_attention = torch.zeros(capacity)
    attention_sum = torch.zeros(capacity)
    nll = np.full(n_tokens - 1, np.nan)
    n = max_entries = 0  # slots in use
    cos = sin = step_attention = slots = torch.zeros(0)

    def rotate(x: Tensor) -> Tensor:
        return decoder.rotate(x, cos, sin)

    def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        nonlocal step_attention
        if quantizer is not None:
            k, v = quantizer.write(layer, k, v, slots[n:])
        keys[layer, :, n] = k[:, 0]
        values[layer, :, n] = v[:, 0]
        # Re-rotate every cached key at its slot: positions live inside the cache (Xiao §3.2).
        if quantizer is None:
            cached_k, cached_v = rotate(keys[layer, :, :n + 1]), values[layer, :, :n + 1]
        else:
            cached_k, cached_v = quantizer.read(layer, keys[layer, :, :n + 1], values[layer, :, :n + 1], slots, rotate)
        scores = decoder.scores(decoder.rotate(q, cos[n:], sin[n:]), cached_k)
        z, p = decoder.attention(layer, scores, cached_v)  # the layer's hooks fire: [1, H, 1, n + 1]
        step_attention = step_attention + p.float().mean(dim=(0, 1, 2)).cpu()  # [n + 1]
        return z

    # the intervention's hooks are registered once; each step swaps in its own (StreamIntervention.step)
    with intervention.installed() if intervention is not None else nullcontext():
        for t in progress_bar(range(n_tokens - 1), desc=f"stream {policy.label()} (exact)", enabled=progress):
            if n == capacity:
                view = CacheView(t, positions[:n].clone(), last_attention[:n].clone(), attention_sum[:n].clone())
                kept = _checked_keep(policy, view)
                n = len(kept)
                keys[:, :, :n] = keys[:, :, kept.to(keys.device)]
                values[:, :, :n] = values[:, :, kept.to(values.device)]
                for per_slot in (positions, last_attention, attention_sum):
                    per_slot[:n] = per_slot[kept]
            cos, sin = decoder.rope(torch.arange(n + 1, device=decoder.device))  # slot i sits at position i
            slots = torch.cat([positions[:n], torch.tensor([t])])  # text index of every entry this step reads
            step_attention = torch.zeros(n + 1)
            if intervention is None:
                logits = decoder.forward(ids[t:t + 1], attend)[0]
            else:  # this step's context: the cached tokens in slot order, the newest the one query
                extra = intervention.step(ids[slots.to(ids.device)][None])
                if extra:  # a hook point the run did not register (none in the catalogue): for this step only
                    with decoder.model.hooks(fwd_hooks=extra):
                        logits = decoder.forward(ids[t:t + 1], attend)[0]
                else:
                    logits = decoder.forward(ids[t:t + 1], attend)[0]
            positions[n] = t
            last_attention[:n + 1] = step_attention / n_layers
            attention_sum[n] = 0.0
            attention_sum[:n + 1] += last_attention[:n + 1]
            n += 1
            max_entries = max(max_entries, n)
            nll[t] = float(-torch.log_softmax(logits.float(), dim=-1)[ids[t + 1]])
    bytes_held = 2 * keys.element_size() * n_layers * kv * d * max_entries
    return Stream(nll, "exact", max_entries, max_entries, bytes_held, time.perf_counter() - started)
