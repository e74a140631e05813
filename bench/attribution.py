"""Attribution patching vs the exact (layer, head) sweep on SmolLM2: Spearman rank correlation and cost.

    .venv/bin/python bench/attribution.py [INTERVENTION ...]     (default: zero-implicit-bias mask-sink zero-head)
"""

from __future__ import annotations

import sys
import time

from _common import save, setup

from workbench import experiment
from workbench.core import data
from workbench.experiment.attribution import attribution_sweep, spearman


def main(names: list[str]) -> None:
    bridge, _, _ = setup()
    dataset = data.corpus_windows(bridge, "austen", window=64, n_windows=4)
    report = {}
    for name in names:
        started = time.perf_counter()
        estimate = attribution_sweep(bridge, dataset, name, progress=False)
        t_estimate = time.perf_counter() - started
        started = time.perf_counter()
        exact = experiment.sweep(bridge, dataset, name, over="head", progress=False)
        t_exact = time.perf_counter() - started
        rho = spearman(estimate, exact)
        report[name] = {"spearman": rho, "attribution_seconds": t_estimate, "exact_seconds": t_exact}
        print(f"{name:<22} Spearman rho {rho:.3f}; attribution {t_estimate:.1f} s vs exact sweep {t_exact:.1f} s "
              f"(4 x 64 tokens of austen, 270 heads)")
    save("attribution", report)


if __name__ == "__main__":
    main(sys.argv[1:] or ["zero-implicit-bias", "mask-sink", "zero-head"])
