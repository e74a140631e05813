"""THE shared figure layer: one style, plot functions over Results, and the survey-figure registry.

    >>> from workbench import figures
    >>> figures.build(["sink-grid"], out="figures/")          # compute (cached) -> PNG/PDF/CSV + gallery
    >>> fig, frame = figures.plots.sink_grid(results)         # any plot function on your own Results

Plot functions take Results and never run a model; each returns (figure, DataFrame of what it plots).
"""

from workbench.figures import plots, style
from workbench.figures.registry import REGISTRY, FigureContext, FigureError, Recipe, build, recipe, recipes


def show(fig) -> None:
    """Display a figure in a notebook as PNG, whatever matplotlib backend is active, and close it."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    plt.close(fig)
    display(Image(buffer.getvalue()))


__all__ = ["REGISTRY", "FigureContext", "FigureError", "Recipe", "build", "plots", "recipe", "recipes", "show", "style"]
