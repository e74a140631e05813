"""What a figure's cached Results depend on: the recipe (and its version), the model, the parameters, the
seed, and the SHA-256 of every weights file the recipe reads. Equal identity, reusable Results.

    >>> identity(REGISTRY["sink-grid"], ctx)["weights"]      # {'smollm2-135m': 'b179c9...'}
    >>> model_weights("shapes-vit-reg4")                     # from the zoo's manifest; None if not trained yet

A recipe that reads weights other than its context's model (the two trained ViTs, the toys it trains)
declares them with `recipe(..., weights=fn)`; a retrained model or toy checkpoint changes the identity, so
Results computed from the old weights are not reused.
"""

from __future__ import annotations

from pathlib import Path

from workbench.core.cache import sha256_file
from workbench.core.errors import ModelNotAvailable
from workbench.gallery.registry import FigureContext, FigureError, Recipe

# Bump when a recipe's computation changes meaning, so cached Results are recomputed.
RECIPE_VERSION = 1


def model_weights(name: str) -> str | None:
    """The SHA-256 of a zoo model's weights, from its manifest (checked against the file's size and mtime).

    None for a model without a manifest: tiny random models, local directories, Hugging Face ids, and a
    model trained here that is not trained yet (the recipe's compute trains it). A bundled model that is not
    fetched cannot be fetched offline during a build: ModelNotAvailable, naming the command."""
    from workbench import zoo
    from workbench.zoo import manifest

    if zoo.is_cached(name):
        return manifest.check(name)["weights_sha256"]
    if name in zoo.BUNDLED:
        raise ModelNotAvailable(f"model {name!r} is not available offline: run `sinkbench models fetch {name}`")
    return None


def file_weights(path: str | Path) -> str | None:
    """The SHA-256 of a weights file (a toy checkpoint), None if it is not there yet."""
    path = Path(path)
    return sha256_file(path) if path.is_file() else None


def identity(entry: Recipe, ctx: FigureContext) -> dict:
    """The identity of `entry`'s Results under `ctx`, read from the weights as they are now."""
    try:
        weights = entry.weights(ctx) if entry.weights is not None else {ctx.model_name: model_weights(ctx.model_name)}
    except ModelNotAvailable as exc:
        raise FigureError(f"figure {entry.name!r}: {exc}") from exc
    return {"recipe": entry.name, "version": RECIPE_VERSION, "model": ctx.model_name, "weights": weights,
            "params": ctx.params, "seed": ctx.seed}
