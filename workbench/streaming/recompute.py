"""Sliding window with re-computation: what does a model predict when it re-encodes its window every step?

    >>> stream = stream_recompute(model, ids, Recompute(256), stride=1, batch_size=8, progress=False)
    >>> stream.path                                                           # "exact" (stride 1)

Xiao's quality reference, on any causal LM (the model's ordinary forward pass, no cache engine). Stride 1
is exact: one forward of W tokens per prediction (N x W tokens). Stride s runs one forward per s
predictions, the first of which sees only W - s + 1 tokens: a real approximation (the strided-perplexity
trick), recorded as the "fast" path; its deviation is measured, not assumed.

With an intervention, or hooks registered on the model's attention, each window runs through the model's own
forward pass (the bridge, on the workbench's attention path: full or blockwise), so every hook fires and the
intervention sees each window as a sequence of its own (its sink: the window's, e.g. position 0). Without,
the Hugging Face model runs directly, as before.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench.core.progress import progress_bar
from workbench.passes import forward
from workbench.streaming.engine import Stream, hf_model
from workbench.streaming.hooks import StreamIntervention, any_attention_hooks, window_hooks
from workbench.streaming.policies import Recompute


def stream_recompute(model: Any, ids: Tensor, policy: Recompute, stride: int, batch_size: int,
                     progress: bool, intervention: StreamIntervention | None = None) -> Stream:
    """Query q reads [first S tokens] + [last W - S tokens up to q], re-encoded at positions 0..W-1.

    Queries q < W see their whole prefix: one forward of the first W tokens. Later queries come in
    blocks of `stride`: one forward per block, of the window ending at the block's last query; the
    block's first query then sees W - stride + 1 tokens instead of W (stride 1 is exact).
    """
    started = time.perf_counter()
    hf = hf_model(model)
    n_tokens, window, sinks = len(ids), policy.window, policy.sinks
    recent = window - sinks
    nll = np.full(n_tokens - 1, np.nan)

    bridged = intervention is not None or any_attention_hooks(model)

    def score(batch: list[Tensor], n_last: int) -> Tensor:
        windows = torch.stack(batch)
        with torch.no_grad():
            if bridged:  # through the bridge: its hooks (and the intervention's) fire on each window
                hooks = [] if intervention is None else window_hooks(model, intervention, windows)
                logits = forward(model, windows, hooks)[:, -n_last:]
            else:
                logits = hf(input_ids=windows, logits_to_keep=n_last).logits  # [b, n_last, vocab]
        return torch.log_softmax(logits.float(), dim=-1)

    head = ids[:min(window, n_tokens)]  # queries 0..len(head)-1 see their prefix
    first = min(window, n_tokens - 1)
    logprobs = score([head], len(head))[0, :first]
    nll[:first] = (-logprobs.gather(-1, ids[1:first + 1, None])[:, 0]).cpu().numpy()
    blocks = [(q0, min(q0 + stride, n_tokens - 1)) for q0 in range(window, n_tokens - 1, stride)]
    batches = [blocks[i:i + batch_size] for i in range(0, len(blocks), batch_size)]
    for batch in progress_bar(batches, desc=f"stream {policy.label()} (recompute, stride {stride})", enabled=progress):
        windows = [torch.cat([ids[:sinks], ids[q1 - recent:q1]]) for _, q1 in batch]  # each W tokens
        logprobs = score(windows, stride)
        for row, (q0, q1) in enumerate(batch):
            block = logprobs[row, stride - (q1 - q0):]  # the last q1 - q0 positions
            nll[q0:q1] = (-block.gather(-1, ids[q0 + 1:q1 + 1, None])[:, 0]).cpu().numpy()
    return Stream(nll, "exact" if stride == 1 else "fast", window, window, 0, time.perf_counter() - started,
                  stride=stride)
