"""The figure registry: a survey figure is a recipe = compute (run experiments -> Results) + plot + caption.

    >>> @recipe("sink-grid", title="First-token attention per head", reproduces="Gu et al. 2025, Figs. 19-24",
    ...         params={"window": 64, "n": 32})
    ... def sink_grid(ctx):                       # compute: run experiments, return Results
    ...     model = ctx.model()
    ...     return probes.sinks(model, data.corpus_windows(model, "austen", ctx.params["window"], ctx.params["n"]))
    >>> @sink_grid.plotter
    ... def _(results, ctx):                      # plot: Results -> (figure, DataFrame of what is plotted)
    ...     return plots.sink_grid(results)
    >>> @sink_grid.captioner
    ... def _(results, ctx):                      # caption: what the figure shows, with its numbers
    ...     ...

Recipes live in `workbench/gallery/recipes_*.py`; `recipes()` imports them all, which fills REGISTRY in
the order of the modules' names (those in `APPENDED` last), then of the definitions (the order of the gallery).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.errors import WorkbenchError
from workbench.core.results import Results

RECIPE_PREFIX = "recipes_"

REGISTRY: dict[str, Recipe] = {}


class FigureError(WorkbenchError):
    """A recipe could not be drawn (missing data, unavailable model)."""


@dataclasses.dataclass
class FigureContext:
    """What a recipe's compute and plot functions get: the model to use, parameters, the models loaded."""

    model_name: str
    out_dir: Path
    params: dict[str, Any]
    seed: int = 0
    quick: bool = False
    _loaded: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def model(self, name: str | None = None):
        from workbench import zoo

        name = name or self.model_name
        if name not in self._loaded:
            self._loaded[name] = zoo.load(name)
        return self._loaded[name]


@dataclasses.dataclass
class Recipe:
    name: str
    title: str
    reproduces: str
    compute: Callable[[FigureContext], Results]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    quick_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str | None = None  # a recipe tied to one model (e.g. the encoder recipes); else the --model
    families: tuple[str, ...] = ("causal-lm",)
    plot: Callable[[Results, FigureContext], tuple[Any, pd.DataFrame]] | None = None
    caption: Callable[[Results, FigureContext], str] | None = None
    # The SHA-256 of every weights file `compute` reads, by name (None: not there yet); part of the cache key.
    # Default: the context's model (workbench.gallery.identity.model_weights).
    weights: Callable[[FigureContext], dict[str, str | None]] | None = None

    def plotter(self, fn):
        self.plot = fn
        return fn

    def captioner(self, fn):
        self.caption = fn
        return fn


def recipe(name: str, *, title: str, reproduces: str, params: dict | None = None,
           quick_params: dict | None = None, model: str | None = None,
           families: tuple[str, ...] = ("causal-lm",),
           weights: Callable[[FigureContext], dict[str, str | None]] | None = None) -> Callable[[Callable], Recipe]:
    """Register a figure recipe; decorate its compute function (see the module docstring)."""
    def wrap(compute: Callable[[FigureContext], Results]) -> Recipe:
        if name in REGISTRY:
            raise ValueError(f"figure recipe {name!r} is registered twice")
        entry = Recipe(name, title, reproduces, compute, dict(params or {}), dict(quick_params or {}), model,
                       families, weights=weights)
        REGISTRY[name] = entry
        return entry
    return wrap


# Recipe modules of families added later go after the others, in this order (by name alone recipes_moe would
# open the gallery).
APPENDED = ("recipes_moe", "recipes_multimodal")


def _gallery_order(module: str) -> tuple:
    return (APPENDED.index(module) + 1 if module in APPENDED else 0, module)


def recipes() -> dict[str, Recipe]:
    """Every registered recipe (importing each `workbench/gallery/recipes_*.py` registers its own)."""
    import pkgutil

    modules = [m.name for m in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]),
                                      key=lambda m: _gallery_order(m.name)) if m.name.startswith(RECIPE_PREFIX)]
    for name in modules:
        importlib.import_module(f"workbench.gallery.{name}")
    # a recipe module imported earlier (a notebook or test using its helpers) registered out of turn: gallery order
    rank = {f"workbench.gallery.{name}": index for index, name in enumerate(modules)}
    ordered = sorted(REGISTRY.items(), key=lambda item: rank.get(item[1].compute.__module__, len(rank)))
    REGISTRY.clear()
    REGISTRY.update(ordered)
    return dict(REGISTRY)
