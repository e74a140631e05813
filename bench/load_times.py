"""Warm load time of each bundled model from the cache (fresh process each; imports timed separately).

    .venv/bin/python bench/load_times.py
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import save

CHILD = """
import time, json
t0 = time.perf_counter()
import torch, transformers, transformer_lens.model_bridge  # noqa
import workbench
from workbench import zoo
t1 = time.perf_counter()
zoo.load({name!r})
t2 = time.perf_counter()
print(json.dumps({{"imports_s": t1 - t0, "load_s": t2 - t1}}))
"""


def main() -> None:
    report = {}
    for name in ("smollm2-135m", "gemma3-270m", "minilm-l6", "qwen2.5-0.5b", "dinov2-s14"):
        runs = []
        for _ in range(3):
            done = subprocess.run([sys.executable, "-c", CHILD.format(name=name)], capture_output=True, text=True,
                                  check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        best = min(r["load_s"] for r in runs)
        report[name] = {"runs": runs, "best_load_s": best}
        print(f"{name:<14} warm load {best:.2f} s (best of 3; imports {min(r['imports_s'] for r in runs):.2f} s)")
    save("load_times", report)


if __name__ == "__main__":
    main()
