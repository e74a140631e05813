"""Shared helpers of the benchmarks: interleaved timing against a plain HF forward, and peak memory of
a measurement in a fresh process. Benchmarks report; tests never time anything."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("SINKBENCH_PROGRESS", "0")

import torch  # noqa: E402

import workbench  # noqa: E402,F401
from workbench import data, zoo  # noqa: E402

OUT = Path(__file__).parent / "results"


def setup(name: str = "smollm2-135m", window: int = 128, n: int = 8):
    """The bridge, an independent plain HF model (eager attention) and one batch of corpus windows."""
    torch.manual_seed(0)
    bridge = zoo.load(name)
    hf, _ = zoo.hf_reference(name)
    dataset = data.corpus_windows(bridge, "austen", window=window, n_windows=n)
    return bridge, hf, dataset


def plain_forward(hf, tokens: torch.Tensor) -> Callable[[], None]:
    def go() -> None:
        with torch.no_grad():
            hf(tokens)
    return go


def interleaved_times(candidates: dict[str, Callable[[], None]], rounds: int = 5,
                      warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of each candidate in each of `rounds` rounds, the candidates interleaved within a round
    so that machine noise hits them alike (after `warmup` untimed calls each)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def interleaved(candidates: dict[str, Callable[[], None]], rounds: int = 5, warmup: int = 1) -> dict[str, dict]:
    """Median / min / max wall time of each candidate over interleaved rounds (`interleaved_times`)."""
    times = interleaved_times(candidates, rounds, warmup)
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)} for name, t in times.items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start, or since `reset_peak_rss` where Linux allows it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (VmHWM) to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def in_fresh_process(script: Path, *args: str) -> dict:
    """Run `script --child ARGS` and return the JSON it prints last (peak RSS of a fresh process)."""
    done = subprocess.run([sys.executable, str(script), "--child", *args], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg(), "torch": torch.__version__}


def save(name: str, payload: dict) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({**payload, "machine": machine()}, indent=2))
    print(f"wrote {path}")
    return path
