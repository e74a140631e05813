"""Experiments: model x data x interventions x metrics -> Results.

    >>> from workbench import experiment
    >>> res = experiment.run(model, data, ["mask-sink", "zero-implicit-bias", "mean-implicit-bias"])
    >>> experiment.sweep(model, data, "zero-implicit-bias", over="head", out="out/sweep.json")   # resumable

Rooms: `runner` (run, sweep, evaluate, hooked: the baseline pass + one pass per intervention, stacking,
journal and resume), `scoring` (one scorer per model family: which metrics exist and how an intervened pass
is compared with the baseline), `attribution` (gradient estimates of whole sweeps), `spec` (TOML
experiment specs and `--explain`).
"""

from workbench.experiment.attribution import attribution_sweep, spearman
from workbench.experiment.runner import (
    Unit,
    as_intervention,
    batch_hooks,
    evaluate,
    hooked,
    resolve_pair,
    run,
    sweep,
    sweep_units,
)
from workbench.experiment.spec import RunSpec

__all__ = ["RunSpec", "Unit", "as_intervention", "attribution_sweep", "batch_hooks", "evaluate", "hooked",
           "resolve_pair", "run", "spearman", "sweep", "sweep_units"]
