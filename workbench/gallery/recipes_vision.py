"""Vision recipes: attention and norms of a small ViT trained here, with vs without register tokens
(Darcet et al. 2024). Each recipe probes `shapes-vit` and `shapes-vit-reg4` (trained on first use,
deterministically, then cached) on generated shapes they have never seen; their weights' checksums are part
of the cache key, so retraining either model recomputes the figures' Results.
"""

from __future__ import annotations

from typing import Any

from workbench import plots
from workbench.core.results import Results
from workbench.gallery.identity import model_weights
from workbench.gallery.registry import FigureContext, recipe

MODELS = ("shapes-vit", "shapes-vit-reg4")
PARAMS = {"n_images": 128, "seed": 1, "examples": 3}
QUICK = {"n_images": 32}


def vits(ctx: FigureContext) -> dict[str, str | None]:
    """The weights every vision recipe reads: both trained ViTs (None until trained)."""
    return {name: model_weights(name) for name in MODELS}


def _probe_both(ctx: FigureContext, probe: str, **options: Any) -> Results:
    """Run one image probe on both models over the same generated images."""
    import torch

    from workbench import probes, vision

    rows, runs = [], {}
    threads = torch.get_num_threads()
    # One thread: these tiny models gain nothing from more, and extra OpenMP threads slow them down on a busy machine
    torch.set_num_threads(1)
    try:
        for name in MODELS:
            model = vision.trained(name)
            images = vision.image_set(model, "shapes", n=ctx.params["n_images"], seed=ctx.params["seed"])
            result = probes.by_name(probe, model, images, progress=False, **options)
            rows += result.rows
            runs[name] = result.provenance
    finally:
        torch.set_num_threads(threads)
    return Results(rows, {**runs[MODELS[0]], "runs": runs, "models": list(MODELS)})


def _examples(results: Results):
    """The probed images, regenerated (shapes(n, size, seed) is deterministic), and their shapes' names."""
    from workbench import vision

    prov = results.provenance
    pixels, labels, _ = vision.shapes(int(prov["n_images"]), int(prov["image_size"][0]), int(prov["data_seed"]))
    return pixels, [vision.SHAPES[label] for label in labels]


# --------------------------------------------------------------------------------------------------
# where attention goes
# --------------------------------------------------------------------------------------------------


@recipe("vit-attention-by-kind", title="Where a small ViT's attention goes, with and without registers",
        reproduces="Darcet et al. 2024 (arXiv 2309.16588), §2-3: attention to [CLS], registers and background patches",
        params={k: v for k, v in PARAMS.items() if k != "examples"}, quick_params=QUICK, model=MODELS[0],
        families=("image-classifier",), weights=vits)
def attention_by_kind(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "image-attention", examples=0)


@attention_by_kind.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_attention_by_kind(results)


@attention_by_kind.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    last = frame.layer.max()
    share = frame[(frame.metric == "attention_share") & (frame.layer == last)].groupby(["model", "kind"]).value.mean()
    ratio = frame[(frame.metric == "background_to_object_ratio") & (frame.layer == last)].groupby("model").value.mean()
    reg = share.get((MODELS[1], "registers"), float("nan"))
    return (f"Share of attention (mean over heads and queries) received by [CLS], register tokens, background and "
            f"object patches per layer. In the last layer the 4 registers of {MODELS[1]} receive {reg:.1%} of all "
            f"attention; per token, background patches receive {ratio.get(MODELS[0], float('nan')):.2f}x "
            f"(no registers) and {ratio.get(MODELS[1], float('nan')):.2f}x (registers) the attention of object patches.")


# --------------------------------------------------------------------------------------------------
# maps over the image
# --------------------------------------------------------------------------------------------------


@recipe("vit-attention-maps", title="[CLS] attention over the image, with and without registers",
        reproduces="Darcet et al. 2024 (arXiv 2309.16588), Figs. 1 and 9: last-layer [CLS] attention maps",
        params=PARAMS, quick_params=QUICK, model=MODELS[0], families=("image-classifier",), weights=vits)
def attention_maps(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "image-attention", examples=ctx.params["examples"], layers=[3])


@attention_maps.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_attention_maps(results, *_examples(results))


@attention_maps.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    top = frame[(frame.metric == "cls_top_key_kind") & (frame.kind == "background")].groupby("model").value.mean()
    return ("Attention of the [CLS] query to every patch in the last layer (mean over heads) for example images; the "
            "x-label gives the attention to [CLS] itself and to each register. Darcet et al. find that in large ViTs "
            "this map has spikes on background patches that registers remove. Over all probed images, the patch the "
            f"[CLS] query attends to most is a background patch for {top.get(MODELS[0], float('nan')):.0%} of "
            f"(image, head) pairs without registers and {top.get(MODELS[1], float('nan')):.0%} with registers.")


@recipe("vit-norm-maps", title="Patch-token norms over the image, with and without registers",
        reproduces="Darcet et al. 2024 (arXiv 2309.16588), Fig. 2: high-norm artifact tokens on background patches",
        params=PARAMS, quick_params=QUICK, model=MODELS[0], families=("image-classifier",), weights=vits)
def norm_maps(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "patch-norms", examples=ctx.params["examples"])


@norm_maps.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_norm_maps(results, *_examples(results))


@norm_maps.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    d = frame[(frame.metric == "ashman_d_background") & (frame.layer == frame.layer.max())].set_index("model").value
    return ("L2 norm of every patch token's residual stream after the last block for example images (x-label: [CLS] "
            "and register norms). Two populations among background patches would show as a few bright background "
            f"cells; Ashman's D among background patches in the last layer: {d.get(MODELS[0], float('nan')):.2f} "
            f"(no registers), {d.get(MODELS[1], float('nan')):.2f} (registers); one normal population gives 2.65.")


# --------------------------------------------------------------------------------------------------
# norm distributions
# --------------------------------------------------------------------------------------------------


@recipe("vit-norm-histograms", title="Distribution of patch-token norms per layer, with and without registers",
        reproduces="Darcet et al. 2024 (arXiv 2309.16588), Fig. 3: bimodal (log-scale) histograms of token norms",
        params={k: v for k, v in PARAMS.items() if k != "examples"}, quick_params=QUICK, model=MODELS[0],
        families=("image-classifier",), weights=vits)
def norm_histograms(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "patch-norms", examples=0)


@norm_histograms.plotter
def _(results: Results, ctx: FigureContext):
    return plots.vit_norm_histograms(results)


@norm_histograms.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    last = frame.layer.max()
    d = frame[(frame.metric == "ashman_d") & (frame.layer == last)].set_index("model").value
    ratio = frame[(frame.metric == "max_to_median") & (frame.layer == last)].set_index("model").value
    return (f"Histograms of patch-token norms per layer (log-log; dotted: mean register norm). Last layer: max / median "
            f"norm {ratio.get(MODELS[0], float('nan')):.2f} (no registers) vs {ratio.get(MODELS[1], float('nan')):.2f} "
            f"(registers); Ashman's D of the Otsu split {d.get(MODELS[0], float('nan')):.2f} vs "
            f"{d.get(MODELS[1], float('nan')):.2f} (background and object patches already differ on these images). "
            "Darcet et al. see a separate mode of norms > 150 (2.37 % of tokens) in DINOv2 ViT-g only.")
