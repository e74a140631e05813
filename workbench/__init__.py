"""Sink Workbench: measure attention sinks, intervene on them causally through TransformerLens hooks,
and turn every result into a figure.

    >>> import workbench as wb
    >>> model = wb.load("smollm2-135m")
    >>> data = wb.corpus_windows(model, window=128, n_windows=8)

The public surface is listed in `__all__`; everything else is importable but not advertised.
Submodules load lazily so that `sinkbench --help` does not import torch.
"""

from workbench import _offline  # noqa: F401  (must run before transformers is imported)

__version__ = "0.1.0"

_PUBLIC = {
    # models
    "load": "workbench.models",
    "info": "workbench.models",
    "fetch": "workbench.models",
    "ModelInfo": "workbench.models",
    # data
    "Dataset": "workbench.data",
    "corpus_windows": "workbench.data",
    "control_prompts": "workbench.data",
    "from_text": "workbench.data",
    "from_file": "workbench.data",
    # results
    "Results": "workbench.results",
    # experiments
    "evaluate": "workbench.experiment",
    "run": "workbench.experiment",
    "sweep": "workbench.experiment",
    "hooked": "workbench.experiment",
    "attribution_sweep": "workbench.attribution",
    "RunSpec": "workbench.spec",
    # errors
    "WorkbenchError": "workbench.errors",
    "InputError": "workbench.errors",
    "ModelNotAvailable": "workbench.errors",
    "InterventionError": "workbench.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
