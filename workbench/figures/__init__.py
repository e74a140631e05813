"""THE shared figure layer: one style, plot functions over Results, and the survey-figure registry.

    >>> from workbench import figures
    >>> figures.build(["sink-grid"], out="figures/")          # compute (cached) -> PNG/PDF/CSV + gallery
    >>> fig, frame = figures.plots.sink_grid(results)         # any plot function on your own Results

Plot functions take Results and never run a model; each returns (figure, DataFrame of what it plots).
"""

from workbench.figures.registry import REGISTRY, FigureContext, FigureError, Recipe, build, recipe, recipes

__all__ = ["REGISTRY", "FigureContext", "FigureError", "Recipe", "build", "recipe", "recipes"]
