"""Sink Workbench: measure attention sinks, intervene on them causally through TransformerLens hooks,
and turn every result into a figure.

    >>> import workbench as wb
    >>> model = wb.load("smollm2-135m")
    >>> data = wb.corpus_windows(model, window=128, n_windows=8)

The public surface is listed in `__all__`; everything else is importable but not advertised.
Submodules load lazily so that `sinkbench --help` does not import torch.
"""

from workbench.core import offline as _offline  # noqa: F401  (must run before transformers is imported)

__version__ = "0.1.0"

_PUBLIC = {
    # models
    "load": "workbench.zoo",
    "info": "workbench.zoo",
    "fetch": "workbench.zoo",
    "ModelInfo": "workbench.zoo",
    # data
    "Dataset": "workbench.core.data",
    "corpus_windows": "workbench.core.data",
    "control_prompts": "workbench.core.data",
    "from_text": "workbench.core.data",
    "from_file": "workbench.core.data",
    # results
    "Results": "workbench.core.results",
    # experiments
    "evaluate": "workbench.experiment",
    "run": "workbench.experiment",
    "sweep": "workbench.experiment",
    "hooked": "workbench.experiment",
    "attribution_sweep": "workbench.experiment",
    "RunSpec": "workbench.experiment",
    # errors
    "WorkbenchError": "workbench.core.errors",
    "InputError": "workbench.core.errors",
    "ModelNotAvailable": "workbench.core.errors",
    "InterventionError": "workbench.core.errors",
}
# Rooms reachable as attributes (`from workbench import data`): the ground floor's data module is public.
_MODULES = {"data": "workbench.core.data", "results": "workbench.core.results", "sites": "workbench.core.sites"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    import importlib

    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
