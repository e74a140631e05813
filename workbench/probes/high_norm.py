"""Which patch tokens of an image model are high-norm? Measure every patch's residual norm, flag by a rule.

    >>> from workbench.probes.high_norm import mark_high_norm, patch_residual_norms
    >>> marked = mark_high_norm(model, images, "top:1")        # an ImageSet: sink="top-norm" now works
    >>> norms = patch_residual_norms(model, images, layer=3)   # [n, rows, cols]

Darcet et al. 2024 find a few patch tokens of large ViTs with norms far above the rest (> 150 in DINOv2
ViT-g), in redundant background patches; Jiang et al. 2025 flag norms > 30 at a chosen layer. The rule
(`workbench.vision.images.HighNormRule`: `top:K`, `abs:X` or `ratio:R`, `@L` for the layer, default the
last) reads the residual stream after block L (`hook_resid_post`) in one hooked pass, and the image set
records the flags in its position kinds and its provenance (`ImageSet.with_high_norm`). The patch-norms
probe (`workbench.probes.patches.patch_norms`) reports the same norms per layer as Results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from workbench.core import sites
from workbench.core.modelinfo import info
from workbench.passes import PassContext, probe_pass
from workbench.vision.images import HighNormRule, ImageSet


def patch_residual_norms(model: Any, images: ImageSet, layer: int, batch_size: int = 32,
                         progress: bool = False) -> np.ndarray:
    """[n, rows, cols] float32: the residual norm of every patch token after block `layer`.

        >>> patch_residual_norms(model, images, layer=0).max()
    """
    model_info = info(model)
    rows, cols = model_info.grid
    out = np.zeros((len(images), rows * cols), dtype=np.float32)

    def on_resid(_: int, resid: torch.Tensor, ctx: PassContext) -> None:
        start = model_info.n_prefix
        out[ctx.index] = resid[:, start:start + rows * cols].float().norm(dim=-1).cpu().numpy()

    probe_pass(model, images, [(sites.RESID_POST, on_resid)], [layer], batch_size=batch_size, progress=progress,
               desc="patch norms")
    return out.reshape(len(images), rows, cols)


def mark_high_norm(model: Any, images: ImageSet, rule: Any = "top:1", batch_size: int = 32,
                   progress: bool = False) -> ImageSet:
    """A copy of `images` whose patch kinds flag the high-norm patches of `model` under `rule` (sink `top-norm`).

        >>> marked = mark_high_norm(model, images, "ratio:3@4")
        >>> marked.high_norm                                   # {"rule", "layer", "fraction", "background_share"}
    """
    rule = HighNormRule.parse(rule)
    layer = rule.resolve_layer(info(model))
    norms = torch.from_numpy(patch_residual_norms(model, images, layer, batch_size, progress).reshape(len(images), -1))
    return images.with_high_norm(rule.flag(norms).numpy(), rule.label, layer)
