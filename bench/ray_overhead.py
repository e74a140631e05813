"""What Ray costs on one machine (issue 17): the 270-unit zero-head sweep of SmolLM2 (4 x 64 tokens of austen)
in this process against the same sweep through Ray workers, and the per-job overhead of the executor.

    .venv/bin/python bench/ray_overhead.py                  # local vs ray 1 worker x 2 threads vs 2 x 1
    .venv/bin/python bench/ray_overhead.py --rounds 2 --probe-jobs 300

Timed: `experiment.sweep(model, data, "zero-head", over="head")` (no out=) with executor local (2 torch
threads: this 2-core machine), with a Ray pool of 1 worker x 2 threads, and with 2 workers x 1 thread; the
sweep's layers in `--chunks` parts, each part timed in every configuration in turn (the order rotated, so
that load from other work hits all three alike), the parts' times summed. One local Ray instance (started here, not timed) holds both pools; their workers are
started and warmed up first (process start, model load by name and checksum, one job: not timed, reported as
`worker_start_s`), so the timed runs see what a long sweep sees. Every Ray run must return the local rows
bit for bit (checked). Per-job overhead: the same dispatch carrying a job that computes nothing (4 units in,
16 rows out: the shape of one sweep job), pipelined as in a sweep (`pipelined_ms`: wall / jobs) and one at
a time (`round_trip_ms`), plus the sweep's own excess over local divided by its jobs. Target: 1 x 2 at most
10 % over local. Runs only when the 1-minute load average is below 3 (else exits 2; --force to run anyway).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SINKBENCH_PROGRESS", "0")

OUT = Path(__file__).parent / "results"


@dataclasses.dataclass
class EmptyJob:
    """A job with a sweep job's payload (4 units in, 16 rows out) that computes nothing: the executor's cost."""

    units: list
    rows: list

    def describe(self) -> str:
        return "empty job"

    def run(self, state) -> list:
        return self.rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the whole sweep in each configuration")
    parser.add_argument("--chunks", type=int, default=3, help="the sweep's layers in this many parts, each timed "
                                                              "in every configuration in turn")
    parser.add_argument("--probe-jobs", type=int, default=200, help="empty jobs for the per-job overhead")
    parser.add_argument("--force", action="store_true", help="run even when the machine is busy")
    parser.add_argument("--out", default=str(OUT / "ray_overhead.json"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if load >= 3 and not args.force:
        print(f"load average {load:.2f} >= 3: other work would be timed too; rerun later (or --force)")
        return 2

    import ray
    import torch

    from workbench import experiment, zoo
    from workbench.core import data
    from workbench.experiment.executors import RayExecutor

    torch.set_num_threads(2)
    model = zoo.load(args.model, device="cpu")
    dataset = data.corpus_windows(model, "austen", window=64, n_windows=4)
    sweep = {"over": "head", "progress": False}
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        started = time.perf_counter()
        pools = {"ray_1x2": RayExecutor(workers=1, cpus_per_worker=2),
                 "ray_2x1": RayExecutor(workers=2, cpus_per_worker=1)}
        for pool in pools.values():  # start, load the model on every worker, run a job on each
            experiment.sweep(model, dataset, "zero-head", layers=0, heads="0-1", executor=pool,
                             rows_per_forward=4, log=lambda _: None, **sweep)
        worker_start = time.perf_counter() - started
        experiment.sweep(model, dataset, "zero-head", layers=0, heads="0-1", rows_per_forward=4, **sweep)  # warm

        def timed(executor, layers: str) -> tuple[float, list]:
            began = time.perf_counter()
            rows = experiment.sweep(model, dataset, "zero-head", layers=layers, executor=executor, log=lambda _: None,
                                    **sweep).rows
            return time.perf_counter() - began, rows

        n_layers = zoo.info(model).n_layers
        parts = min(args.chunks, n_layers)
        bounds = [round(i * n_layers / parts) for i in range(parts + 1)]
        chunks = [f"{low}-{high - 1}" for low, high in zip(bounds, bounds[1:])]
        candidates = {"local": "local", **pools}
        seconds: dict[str, list[float]] = {name: [] for name in candidates}
        identical, units, jobs = True, 0, 0
        stack = 16 // len(dataset)  # units a job: rows_per_forward (16) / sequences per batch
        for round_ in range(args.rounds):
            total = dict.fromkeys(candidates, 0.0)
            for i, layers in enumerate(chunks):  # interleaved per chunk, the order rotated: load hits all alike
                order = list(candidates)[i % 3:] + list(candidates)[:i % 3]
                found = {}
                for name in order:
                    wall, found[name] = timed(candidates[name], layers)
                    total[name] += wall
                    print(f"  round {round_ + 1}, layers {layers}: {name} {wall:.1f} s (load {os.getloadavg()[0]:.1f})",
                          file=sys.stderr, flush=True)
                identical &= all(rows == found["local"] for rows in found.values())
                if round_ == 0:
                    swept = len({r["intervention"] for r in found["local"]} - {"none"})
                    units, jobs = units + swept, jobs + -(-swept // stack)
                    reference = [r for r in found["local"] if r["intervention"] != "none"]
            for name, wall in total.items():
                seconds[name].append(wall)
        from workbench.experiment.runner import sweep_units

        payload = sweep_units(model, experiment.as_intervention("zero-head"), "head")[:4]
        probe = EmptyJob(payload, reference[:16])
        one = pools["ray_1x2"]
        list(one.map([probe] * 20))  # warm-up
        began = time.perf_counter()
        list(one.map([probe] * args.probe_jobs))
        pipelined = (time.perf_counter() - began) / args.probe_jobs
        trips = []
        for _ in range(min(args.probe_jobs, 100)):
            began = time.perf_counter()
            list(one.map([probe]))
            trips.append(time.perf_counter() - began)
        for pool in pools.values():
            pool.close()
    finally:
        ray.shutdown()

    median = {name: statistics.median(values) for name, values in seconds.items()}
    report = {
        "model": args.model, "data": "austen, 4 x 64 tokens", "units": units, "jobs_per_ray_sweep": jobs,
        "rounds": args.rounds, "load_average_at_start": round(load, 2), "torch_threads_local": 2,
        "seconds": {name: [round(v, 2) for v in values] for name, values in seconds.items()},
        "median_s": {name: round(v, 2) for name, v in median.items()},
        "ratio_to_local": {name: round(median[name] / median["local"], 3) for name in pools},
        "rows_identical": identical,
        "worker_start_s": round(worker_start, 1),
        "per_job_overhead_ms": {"pipelined_ms": round(1000 * pipelined, 2),
                                "round_trip_ms": round(1000 * statistics.median(trips), 2),
                                "sweep_excess_ms_per_job": round(1000 * (median["ray_1x2"] - median["local"]) / jobs,
                                                                 1)},
        "target": "ray_1x2 <= 1.10 x local",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    print(f"{units}-unit zero-head sweep on {args.model}: local {median['local']:.1f} s, ray 1x2 "
          f"{median['ray_1x2']:.1f} s ({report['ratio_to_local']['ray_1x2']:.3f}x; target <= 1.10), ray 2x1 "
          f"{median['ray_2x1']:.1f} s ({report['ratio_to_local']['ray_2x1']:.3f}x); per job "
          f"{report['per_job_overhead_ms']['pipelined_ms']} ms pipelined, "
          f"{report['per_job_overhead_ms']['round_trip_ms']} ms round trip; rows identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
