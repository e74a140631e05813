"""The `sinks` probe vs a plain HF eager forward on the same batch (SmolLM2, 8 x 128 tokens): wall-time
ratio and peak RSS. Targets (issue 3): <= 1.2x and <= 2 GB.

    .venv/bin/python bench/probe_overhead.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from _common import (
    current_rss_mb,
    in_fresh_process,
    interleaved,
    peak_rss_mb,
    plain_forward,
    reset_peak_rss,
    save,
    setup,
)

from workbench import probes


def child(mode: str) -> None:
    """One measurement in a fresh process: load only what it needs, then report the resident memory after
    loading and the peak (so that the increment is what the measurement itself costs)."""
    from workbench import zoo
    from workbench.core import data

    torch.manual_seed(0)
    if mode == "plain":
        model, _ = zoo.hf_reference("smollm2-135m")
        bridge = zoo.load("smollm2-135m")  # only for the tokenizer of the windows; dropped before measuring
    else:
        bridge = zoo.load("smollm2-135m")
    dataset = data.corpus_windows(bridge, "austen", window=128, n_windows=8)
    tokens = dataset.tensor()
    if mode == "plain":
        del bridge
    import gc

    gc.collect()
    loaded = current_rss_mb()
    reset_peak_rss()
    if mode == "plain":
        plain_forward(model, tokens)()
    elif mode == "probe":
        probes.sinks(bridge, dataset, progress=False)
    elif mode == "full-cache":
        with torch.no_grad():
            bridge.run_with_cache(tokens)
    print(json.dumps({"mode": mode, "rss_after_load_mb": loaded, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    bridge, hf, dataset = setup()
    tokens = dataset.tensor()
    timings = interleaved({
        "plain_hf_eager_forward": plain_forward(hf, tokens),
        "sinks_probe": lambda: probes.sinks(bridge, dataset, progress=False),
        "bridge_forward": lambda: bridge(tokens),
    }, rounds=5)
    base = timings["plain_hf_eager_forward"]["median_s"]
    ratios = {k: v["median_s"] / base for k, v in timings.items()}
    memory = {mode: in_fresh_process(Path(__file__), mode) for mode in ("plain", "probe", "full-cache")}
    print("batch 8 x 128 tokens of austen on smollm2-135m; median of 5 interleaved rounds")
    for name, ratio in ratios.items():
        print(f"  {name:<24} {timings[name]['median_s']:.3f} s   x{ratio:.2f} vs plain HF eager forward")
    for mode, mb in memory.items():
        print(f"  fresh process, {mode:<11} resident after loading {mb['rss_after_load_mb']:6.0f} MB, peak during the "
              f"pass {mb['peak_rss_mb']:6.0f} MB (+{mb['peak_rss_mb'] - mb['rss_after_load_mb']:.0f} MB)")
    save("probe_overhead", {"timings": timings, "ratios": ratios, "peak_rss_mb": memory,
                            "targets": {"ratio": 1.2, "peak_rss_mb": 2048}})


if __name__ == "__main__":
    child(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--child" else main()
