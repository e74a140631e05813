"""Interventions vs plain HF eager forwards (SmolLM2): the cost of one intervention pass, and the throughput of a
(layer, head) sweep relative to the same number of plain forwards.
Targets (issue 4, kept by issue 18): <= 1.10x for a single pass; >= 90 % throughput for the sweep.

    .venv/bin/python bench/intervention_overhead.py [--rounds 7] [--sweep-rounds 3]

Everything is timed in interleaved A/B rounds, so machine noise hits both sides alike: within each round every
candidate runs once (single passes: the plain forward and each intervention; sweep: the plain forwards and a
sweep of as many units). Reported: per candidate the median time over rounds and the median over rounds of its
ratio to the plain forward of the same round (what the README quotes); min/max show the spread.
Also reported, per intervention: the share of its pass spent inside its own hooks (each hook wrapped in a timer,
median over passes). That share is a floor under the overhead which the machine's noise barely moves (the
interleaved ratios of a 3 s pass spread by +-15 % on a 2-core VM).
The sweep rounds sweep zero-head over every layer and heads 0-1 (60 units: every layer's hooks, ~1/4.5 of the
270-unit sweep, so a round stays short); `--full-sweep` also times the whole 270-unit sweep once, unpaired.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _common import interleaved_times, plain_forward, save, setup

from workbench import experiment
from workbench.core import data
from workbench.experiment.runner import as_intervention
from workbench.passes import PassContext

SINGLE = ("mask-sink", "zero-implicit-bias", "zero-sink-value", "zero-head:layers=15,heads=4")


def hook_share(bridge, name: str, tokens: torch.Tensor, passes: int = 4) -> dict:
    """Seconds inside the intervention's hooks per pass, and their share of the pass (median over `passes`
    after one warm-up): each hook is wrapped in a timer, so this is the edit's own cost, not the noise."""
    intervention = as_intervention(name)
    intervention.validate(bridge)
    spent = [0.0]

    def timed(fn: Callable) -> Callable:
        def wrapper(tensor: torch.Tensor, hook) -> torch.Tensor | None:
            started = time.perf_counter()
            result = fn(tensor, hook)
            spent[0] += time.perf_counter() - started
            return result
        return wrapper

    measured = []
    for _ in range(passes + 1):
        ctx = PassContext.of(bridge, tokens, intervention.sink_spec() if intervention.sink_aware else "bos", None)
        hooks = [(where, timed(fn)) for where, fn in intervention.hooks(bridge, ctx)]
        spent[0] = 0.0
        started = time.perf_counter()
        with torch.no_grad(), bridge.hooks(fwd_hooks=hooks):
            bridge(tokens)
        measured.append((spent[0], time.perf_counter() - started))
    measured = measured[1:]
    return {"hook_s": statistics.median(h for h, _ in measured), "pass_s": statistics.median(p for _, p in measured),
            "share": statistics.median(h / p for h, p in measured)}


def paired_rounds(candidates: dict[str, Callable[[], None]], reference: str, rounds: int,
                  warmup: int = 1) -> dict[str, dict]:
    """Each round runs every candidate once (in the given order); per candidate the median/min/max seconds and
    the median/min/max over rounds of seconds / the reference's seconds in the same round."""
    times = interleaved_times(candidates, rounds, warmup)
    out = {}
    for name, seconds in times.items():
        ratios = [s / r for s, r in zip(seconds, times[reference])]
        out[name] = {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
                     "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                     "seconds": seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the single passes")
    parser.add_argument("--sweep-rounds", type=int, default=3, help="interleaved rounds of sweep vs plain")
    parser.add_argument("--full-sweep", action="store_true", help="also time the 270-unit sweep once")
    args = parser.parse_args()
    bridge, hf, dataset = setup()
    tokens = dataset.tensor()

    def under(name: str):
        def go() -> None:
            with torch.no_grad(), experiment.hooked(bridge, name, tokens):
                bridge(tokens)
        return go

    single = {"plain_hf_eager_forward": plain_forward(hf, tokens), **{name: under(name) for name in SINGLE}}
    timings = paired_rounds(single, "plain_hf_eager_forward", args.rounds)
    print(f"single intervention pass, 8 x 128 tokens (all layers and heads unless stated); {args.rounds} "
          "interleaved rounds: median seconds, median per-round ratio to the plain forward [min-max]")
    for name, t in timings.items():
        print(f"  {name:<30} {t['median_s']:.3f} s   x{t['ratio_median']:.2f} [{t['ratio_min']:.2f}-"
              f"{t['ratio_max']:.2f}]")

    shares = {name: hook_share(bridge, name, tokens) for name in SINGLE}
    print("time inside each intervention's own hooks (median of 4 passes): ms per pass, share of the pass")
    for name, t in shares.items():
        print(f"  {name:<30} {t['hook_s'] * 1e3:.0f} ms   {t['share']:.1%}")

    small = data.corpus_windows(bridge, "austen", window=64, n_windows=4)
    small_tokens = small.tensor()
    swept_units: list[int] = []

    def sweep_once() -> None:
        swept = experiment.sweep(bridge, small, "zero-head", over="head", heads="0-1", progress=False)
        swept_units.append(len({r["intervention"] for r in swept if r["intervention"] != "none"}))

    sweep_once()  # the warm-up, and the unit count
    units = swept_units[0]
    plain_once = plain_forward(hf, small_tokens)

    def plains() -> None:
        for _ in range(units):
            plain_once()

    paired = paired_rounds({f"{units}_plain_forwards": plains, f"sweep_{units}_units": sweep_once},
                           f"{units}_plain_forwards", args.sweep_rounds, warmup=0)
    ratio = paired[f"sweep_{units}_units"]["ratio_median"]
    throughput = 1 / ratio
    print(f"(layer, head) sweep of zero-head on 4 x 64 tokens, every layer, heads 0-1 ({units} units), "
          f"{args.sweep_rounds} interleaved rounds vs {units} plain forwards: median sweep "
          f"{paired[f'sweep_{units}_units']['median_s']:.1f} s, plain {paired[f'{units}_plain_forwards']['median_s']:.1f}"
          f" s -> {throughput:.0%} of their throughput (per-round ratios "
          f"{', '.join(f'{s / p:.2f}' for s, p in zip(paired[f'sweep_{units}_units']['seconds'], paired[f'{units}_plain_forwards']['seconds']))})")
    full = None
    if args.full_sweep:
        started = time.perf_counter()
        swept = experiment.sweep(bridge, small, "zero-head", over="head", progress=False)
        seconds = time.perf_counter() - started
        n = len({r["intervention"] for r in swept if r["intervention"] != "none"})
        full = {"units": n, "seconds": seconds,
                "throughput_vs_plain": n * paired[f"{units}_plain_forwards"]["median_s"] / units / seconds}
        print(f"full sweep (unpaired): {n} units in {seconds:.1f} s -> {full['throughput_vs_plain']:.0%}")
    save("intervention_overhead", {"single_pass": timings, "hook_share": shares,
                                   "single_pass_ratio": {k: v["ratio_median"] for k, v in timings.items()},
                                   "sweep": {"units": units, "rounds": paired, "throughput_vs_plain": throughput,
                                             "full": full},
                                   "targets": {"single_pass_ratio": 1.10, "sweep_throughput": 0.90}})


if __name__ == "__main__":
    main()
