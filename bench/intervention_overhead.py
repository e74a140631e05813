"""Interventions vs plain HF eager forwards (SmolLM2): the cost of one intervention pass, and the
throughput of a full (layer, head) sweep relative to the same number of plain forwards.
Targets (issue 4): <= 1.10x for a single pass; >= 90 % throughput for the sweep.

    .venv/bin/python bench/intervention_overhead.py
"""

from __future__ import annotations

import time

import torch
from _common import interleaved, plain_forward, save, setup

from workbench import experiment
from workbench.core import data


def main() -> None:
    bridge, hf, dataset = setup()
    tokens = dataset.tensor()

    def under(name: str):
        def go() -> None:
            with torch.no_grad(), experiment.hooked(bridge, name, tokens):
                bridge(tokens)
        return go

    single = {"plain_hf_eager_forward": plain_forward(hf, tokens)}
    for name in ("mask-sink", "zero-implicit-bias", "zero-sink-value", "zero-head:layers=15,heads=4"):
        single[name] = under(name)
    timings = interleaved(single, rounds=5)
    base = timings["plain_hf_eager_forward"]["median_s"]
    print("single intervention pass, 8 x 128 tokens (all layers and heads unless stated); median of 5 rounds")
    for name, t in timings.items():
        print(f"  {name:<30} {t['median_s']:.3f} s   x{t['median_s'] / base:.2f}")

    small = data.corpus_windows(bridge, "austen", window=64, n_windows=4)
    small_tokens = small.tensor()
    plain = interleaved({"plain": plain_forward(hf, small_tokens)}, rounds=5)["plain"]["median_s"]
    started = time.perf_counter()
    swept = experiment.sweep(bridge, small, "zero-head", over="head", progress=False)
    sweep_seconds = time.perf_counter() - started
    units = len({r["intervention"] for r in swept if r["intervention"] != "none"})
    throughput = units * plain / sweep_seconds
    print(f"full (layer, head) sweep of zero-head on 4 x 64 tokens: {units} units in {sweep_seconds:.1f} s; "
          f"{units} plain forwards would take {units * plain:.1f} s -> {throughput:.0%} of their throughput")
    save("intervention_overhead", {"single_pass": timings,
                                   "single_pass_ratio": {k: v["median_s"] / base for k, v in timings.items()},
                                   "sweep": {"units": units, "seconds": sweep_seconds, "plain_forward_s": plain,
                                             "throughput_vs_plain": throughput},
                                   "targets": {"single_pass_ratio": 1.10, "sweep_throughput": 0.90}})


if __name__ == "__main__":
    main()
