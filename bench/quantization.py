"""Quantising around sinks on SmolLM2: loss against bits for each keep policy (KV cache, per token), and
activation quantisation per tensor vs per token, with and without the sink token kept in full precision.

    OMP_NUM_THREADS=1 python bench/quantization.py                    # 16 x 128 tokens of Austen; ~10 min on 1 core
    python bench/quantization.py --windows 4 --kv-bits 2,4 --act-bits 8    # a quick look

What runs (workbench.experiment.quantization.report; every interval a 95 % bootstrap over the windows):
- quantize-kv, granularity per-token (each position's d_head channels of each KV head; keys after RoPE),
  bits 2/3/4/8, keep none / bos / first:4 (IntactKV keeps the BOS token's KV; KVQuant the first tokens);
- quantize-activations on the inputs of every linear layer, per-tensor vs per-token, bits 8 and 4,
  keep none / bos (PrefixQuant; Bondarenko et al. 2023: per-tensor ranges are what massive activations at
  the sinks stretch).
Printed: loss and perplexity per configuration, delta_loss [CI], and D_sink = delta_loss(nothing kept) -
delta_loss(kept) [paired CI]; `destroyed` marks perplexity > 10x the baseline. Benchmarks report; they
are not tests. The load average is printed with the numbers (a shared 2-core VM is noisy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import workbench  # noqa: F401  (offline environment first)
from workbench import zoo
from workbench.core import data
from workbench.experiment import quantization


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _fmt(row: dict | None, digits: int = 4) -> str:
    if row is None or row.get("value") is None:
        return "-"
    value, low, high = (row.get(k) for k in ("value", "ci_low", "ci_high"))
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return f"{value:+.{digits}f}"
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def table(res, title: str, group: tuple[str, ...]) -> list[str]:
    """One line per configuration: the group columns, loss, perplexity, delta_loss [CI], D_sink [CI], destroyed."""
    rows = [r for r in res if r.get("family") is not None]
    by_key: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault(r["intervention"], {})[r["metric"]] = r
    base = next(r for r in res if r["intervention"] == "none" and r["metric"] == "loss")["value"]
    lines = [f"\n{title}", f"baseline loss {base:.4f}, perplexity {math.exp(base):.3f}",
             "  ".join(f"{c:>11}" for c in group) + f"  {'loss':>7}  {'ppl':>8}  {'delta_loss [95% CI]':>29}"
             f"  {'D_sink [95% paired CI]':>29}  destroyed"]
    def order(item):
        first = item[1]["loss"]
        return tuple(str(first.get(c)) for c in group[:-1]) + (int(first.get("bits", 0)),)
    for _, metrics in sorted(by_key.items(), key=order):
        loss = metrics["loss"]
        lines.append("  ".join(f"{str(loss.get(c)):>11}" for c in group) + f"  {loss['value']:7.4f}"
                     f"  {metrics['perplexity']['value']:8.4g}  {_fmt(metrics.get('delta_loss')):>29}"
                     f"  {_fmt(metrics.get('d_sink')):>29}  {'yes' if loss.get('destroyed') else ''}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--kv-bits", default="2,3,4,8")
    parser.add_argument("--act-bits", default="8,4")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", default=None, help="write both reports (JSON) here")
    args = parser.parse_args()

    started = time.perf_counter()
    model = zoo.load(args.model)
    texts = data.corpus_windows(model, "austen", window=args.window, n_windows=args.windows)
    print(f"{args.model}: {len(texts)} windows of {args.window} tokens (corpus austen, BOS prepended); "
          f"load average {os.getloadavg()[0]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    kv = quantization.report(model, texts, quantization.kv_grid(bits=_ints(args.kv_bits),
                                                                 keep=("none", "bos", "first:4")),
                             batch_size=args.batch_size, progress=False)
    kv_time = time.perf_counter() - started
    for line in table(kv, "quantize-kv, per-token (group = d_head), keys after RoPE and values",
                      ("keep", "bits")):
        print(line)
    acts = quantization.report(model, texts, quantization.activation_grid(bits=_ints(args.act_bits),
                                                                          keep=("none", "bos")),
                               batch_size=args.batch_size, progress=False)
    for line in table(acts, "quantize-activations, inputs of every linear layer (lm_head excluded)",
                      ("granularity", "keep", "bits")):
        print(line)
    print(f"\nwall time: KV {kv_time:.0f} s, total {time.perf_counter() - started:.0f} s; "
          f"load average now {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"kv": kv.rows, "activations": acts.rows,
                                              "provenance": kv.provenance}, indent=1, default=str))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
