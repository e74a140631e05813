"""Memory and speed of `probe sinks` and of `run` at long context, full pattern vs blockwise (issue 14).

    .venv/bin/python bench/long_context.py                              # T = 512 .. 8192 on smollm2-135m
    .venv/bin/python bench/long_context.py --lengths 512,1024 --modes blockwise --threads 2
    .venv/bin/python bench/long_context.py --command run --lengths 8192 --modes blockwise

Every point runs in a fresh process (peak RSS is a process-wide high-water mark): load the model, one
window of T tokens, then `probes.sinks` on the full path (mode `full`: the attention budget raised so that the
plan keeps it), inside `attention.blockwise(model)` (mode `blockwise`: what a long pass gets by default; B
chosen from the budget, and a layer whose pattern no hook reads runs fused) or inside
`attention.blockwise(model, fuse=False)` (mode `explicit`: every layer through its query blocks). Reported per point: peak RSS of the
whole process, its increment over the loaded model, wall time, tokens/s and the share of the wall time
spent inside the attention modules (a 16-token warm-up pass runs before the measurement, so first-call
allocations do not count as growth). The growth exponent is the least-squares slope of log(peak RSS) and of
log(increment) against log(T) (full attention ~2, linear memory ~1 or below). Targets (issue 14):
blockwise peak RSS <= 2.5 GB at T = 8192 and exponent <= 1.2; at T = 512 blockwise within 1.3x of full.

`--command run`: `experiment.run(model, data, ["mask-sink", "zero-implicit-bias", "scale-sink"], batch_size=1)`
(what `sinkbench run -i mask-sink -i zero-implicit-bias -i scale-sink --batch-size 1` runs: a baseline pass
and one pass per intervention; tokens/s counts the tokens of all four passes). "full" means the full-pattern
attention path; the loss, KL and top-1 of a long sequence are computed over query chunks either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (VmHWM) to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


RUN_INTERVENTIONS = ["mask-sink", "zero-implicit-bias", "scale-sink"]


def child(mode: str, length: int, model_name: str, threads: int, command: str = "probe") -> dict:
    """One point in this (fresh) process."""
    if mode == "full":
        os.environ["SINKBENCH_ATTENTION_BUDGET"] = "1T"  # the plan keeps the full path however large it is
    os.environ.setdefault("SINKBENCH_PROGRESS", "0")
    import contextlib
    import gc

    import torch

    import workbench  # noqa: F401  (offline environment first)
    from workbench import attention, experiment, probes, zoo
    from workbench.core import data

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = zoo.load(model_name)
    try:
        dataset = data.corpus_windows(model, "austen", window=length, n_windows=1)
        source = "austen"
    except Exception:  # no corpus in this cache: random tokens measure the same memory
        dataset = data.control_prompts(model, "random", window=length, n=1, seed=0)
        source = "random"
    attention_seconds = [0.0]
    started_at: dict[int, float] = {}
    handles = []
    for i, block in enumerate(model.blocks):
        handles.append(block.attn.register_forward_pre_hook(lambda *a, i=i: started_at.__setitem__(i, time.perf_counter())))
        handles.append(block.attn.register_forward_hook(
            lambda *a, i=i: attention_seconds.__setitem__(0, attention_seconds[0] + time.perf_counter() - started_at[i])))
    warmup = data.control_prompts(model, "random", window=16, n=1, seed=0)

    def measured(inputs):
        if command == "run":
            return experiment.run(model, inputs, RUN_INTERVENTIONS, batch_size=1, progress=False)
        return probes.sinks(model, inputs, progress=False, batch_size=1)

    def context():
        if mode == "full":
            return contextlib.nullcontext()
        return attention.blockwise(model, fuse=mode == "blockwise")

    with context():
        measured(warmup)  # first-call allocations (and the weights' pages) are not the T curve
    gc.collect()
    loaded = _current_rss_mb()
    _reset_peak_rss()
    started = time.perf_counter()
    with context() as run:
        result = measured(dataset)
    wall = time.perf_counter() - started
    passes = 1 + len(RUN_INTERVENTIONS) if command == "run" else 1
    for handle in handles:
        handle.remove()
    value = ({f"delta_loss {name}": result.value("delta_loss", intervention=name) for name in RUN_INTERVENTIONS}
             if command == "run" else {"sink_ratio_0.3": result.value("sink_ratio", eps=0.3, layer=None)})
    return {"command": command, "mode": mode, "T": length, "model": model_name, "data": source, "threads": threads,
            "loaded_rss_mb": round(loaded, 1), "peak_rss_mb": round(_peak_rss_mb(), 1),
            "increment_mb": round(_peak_rss_mb() - loaded, 1), "wall_s": round(wall, 3),
            "tokens_per_s": round(passes * length / wall, 1), "attention_share": round(attention_seconds[0] / wall, 3),
            "block": getattr(run, "largest_block", None), "n_blocks": getattr(run, "n_blocks", None),
            "n_fused": getattr(run, "n_fused", None),
            "full_pattern_estimate_mb": round(attention.full_pattern_bytes(model, 1, length) / 2**20, 1), **value}


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    pairs = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pairs) < 2:
        return None
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    den = sum((p[0] - mx) ** 2 for p in pairs)
    return sum((p[0] - mx) * (p[1] - my) for p in pairs) / den


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--command", choices=["probe", "run"], default="probe",
                        help="probe: probes.sinks; run: experiment.run with mask-sink, zero-implicit-bias, scale-sink")
    parser.add_argument("--lengths", default="512,1024,2048,4096,8192")
    parser.add_argument("--modes", default="full,blockwise,explicit",
                        help="full, blockwise (fused where no hook reads the pattern), explicit (blocks only)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per point")
    parser.add_argument("--out", default=str(OUT / "long_context.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.model, args.threads, args.command)))
        return
    lengths = [int(t) for t in args.lengths.split(",")]
    modes = args.modes.split(",")
    points = []
    for length in lengths:
        for mode in modes:
            done = subprocess.run([sys.executable, __file__, "--child", mode, str(length), "--model", args.model,
                                   "--threads", str(args.threads), "--command", args.command], capture_output=True, text=True,
                                  timeout=args.timeout, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            if done.returncode != 0:
                print(f"{mode} T={length}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            point = json.loads(done.stdout.strip().splitlines()[-1])
            points.append(point)
            print(f"{mode:9s} T={length:5d}  peak {point['peak_rss_mb']:8.1f} MB  (+{point['increment_mb']:7.1f})  "
                  f"{point['tokens_per_s']:8.1f} tok/s  attention {100 * point['attention_share']:4.1f} %  "
                  f"block {point['block']}  fused {point['n_fused']}", flush=True)
    summary = {}
    for mode in modes:
        mine = [p for p in points if p["mode"] == mode]
        summary[mode] = {"exponent_peak_rss": slope([(p["T"], p["peak_rss_mb"]) for p in mine]),
                         "exponent_increment": slope([(p["T"], p["increment_mb"]) for p in mine])}
    by = {(p["mode"], p["T"]): p for p in points}
    ratios = {f"{mode} T={t}": by[(mode, t)]["wall_s"] / by[("full", t)]["wall_s"] for t in lengths
              for mode in ("blockwise", "explicit") if (mode, t) in by and ("full", t) in by}
    for mode, fit in summary.items():
        print(f"{mode}: growth exponent of peak RSS {fit['exponent_peak_rss']}, of its increment "
              f"{fit['exponent_increment']}")
    for label, ratio in ratios.items():
        print(f"{label}: wall time / full {ratio:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import platform

    out.write_text(json.dumps({"points": points, "fit": summary, "time_ratio_blockwise_to_full": ratios,
                               "command": " ".join(sys.argv), "machine": {"cpus": os.cpu_count(),
                               "load_average": os.getloadavg(), "python": platform.python_version()}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
