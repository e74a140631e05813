"""Streaming throughput on SmolLM2: the exact token-by-token cache path, the fast chunked path and a
plain Hugging Face decoding loop with a KV cache, in tokens per second.

    python bench/streaming.py                        # 384 tokens of Emma, cache 4+124; ~1-2 min
    python bench/streaming.py --tokens 1024 --window 256 --chunk 256

What is timed (each reads the same tokens and computes every next-token NLL):
- hf-decode: `zoo.hf_reference` (plain transformers, eager attention), one token per call through a
  DynamicCache that keeps everything: the 50-65 ms/token the issue quotes;
- hf-blocks: the same model fed `--chunk`-token blocks through a DynamicCache (dense, no eviction);
- exact: `streaming.stream_nll(..., Sinks(4, W), fast=False)`: token by token, pruned before each token
  (workbench/streaming/exact.py);
- fast: the same policy on the chunked banded path (workbench/streaming/banded.py); its max and mean
  |NLL - exact| and both perplexities are printed too.
Benchmarks report; they are not tests. A shared 2-core VM is noisy (and torch's 2 threads collapse when
other jobs hold the cores: compare OMP_NUM_THREADS=1): the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import workbench  # noqa: F401  (offline environment first)
from workbench import streaming, zoo


def hf_decode(hf, ids: torch.Tensor, chunk: int) -> tuple[np.ndarray, float]:
    """NLL of every next token, feeding `chunk` tokens per call through a growing DynamicCache."""
    from transformers import DynamicCache

    cache = DynamicCache(config=hf.config)
    nll = []
    started = time.perf_counter()
    with torch.no_grad():
        for t0 in range(0, len(ids) - 1, chunk):
            t1 = min(t0 + chunk, len(ids) - 1)
            logits = hf(input_ids=ids[None, t0:t1], cache=cache, use_cache=True).logits[0]
            nll.append(-torch.log_softmax(logits.float(), -1).gather(-1, ids[t0 + 1:t1 + 1, None])[:, 0])
    return torch.cat(nll).numpy(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=384)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--sinks", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()

    model = zoo.load(args.model)
    hf, _ = zoo.hf_reference(args.model)
    ids = torch.as_tensor(streaming.long_text(model, max_tokens=args.tokens).sequences[0])
    policy = streaming.Sinks(args.sinks, args.window)
    n = len(ids)
    print(f"{args.model}, {n} tokens of Emma, policy {policy.label()}, chunk {args.chunk}; "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")

    rates = {}
    _, seconds = hf_decode(hf, ids, 1)
    rates["hf-decode (1 token/call, DynamicCache, dense)"] = n / seconds
    exact = streaming.stream_nll(model, ids, policy, fast=False, progress=False)
    rates[f"exact ({policy.label()}, token by token)"] = exact.tokens_per_second
    fast = streaming.stream_nll(model, ids, policy, fast=True, chunk=args.chunk, progress=False)
    rates[f"fast ({policy.label()}, chunk {args.chunk})"] = fast.tokens_per_second
    _, seconds = hf_decode(hf, ids, args.chunk)
    rates[f"hf-blocks ({args.chunk} tokens/call, DynamicCache, dense)"] = n / seconds

    base = next(iter(rates.values()))
    for name, rate in rates.items():
        print(f"  {name:<52} {rate:8.1f} tok/s  {1000 / rate:7.2f} ms/token  x{rate / base:6.2f} vs hf-decode")
    difference = np.abs(fast.nll - exact.nll)
    print(f"  fast vs exact: max |NLL difference| {difference.max():.2e} nats, mean {difference.mean():.2e}; perplexity "
          f"{np.exp(exact.nll.mean()):.4f} (exact) vs {np.exp(fast.nll.mean()):.4f} (fast); "
          f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
