"""The survey-figure gallery: each figure is a registered recipe that computes its Results (cached), plots
them with `workbench.plots` and writes a caption naming the paper and figure it reproduces.

    >>> from workbench import gallery
    >>> gallery.build(["sink-grid"], out="figures/")        # compute (cached) -> PNG/PDF/CSV + gallery
    >>> gallery.recipes()["sink-grid"].reproduces           # 'Gu et al. 2025, Figs. 19-24 and Table 1'

Rooms: `registry` (Recipe, the `recipe` decorator, discovery of `recipes_*.py`), `identity` (what cached
Results depend on, weights checksums included), `builder` (compute, draw, build), `page` (index.md/html),
and the recipes: `recipes_survey` (language models), `recipes_streaming`, `recipes_toy`, `recipes_vision`,
`recipes_vision_dinov2` (DINOv2-S on photographs), `recipes_zoo` (across the zoo's causal LMs), `recipes_moe`.
"""

from workbench.gallery.builder import build
from workbench.gallery.page import write_gallery
from workbench.gallery.registry import REGISTRY, FigureContext, FigureError, Recipe, recipe, recipes

__all__ = ["REGISTRY", "FigureContext", "FigureError", "Recipe", "build", "recipe", "recipes", "write_gallery"]
