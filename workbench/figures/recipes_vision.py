"""Vision recipes: attention and norms of a small ViT trained here, with vs without register tokens
(Darcet et al. 2024). Each recipe probes `shapes-vit` and `shapes-vit-reg4` (trained on first use,
deterministically, about a minute each on 2 cores, then cached) on generated shapes it has never seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.core.results import Results
from workbench.figures import style
from workbench.figures.registry import FigureContext, recipe

MODELS = ("shapes-vit", "shapes-vit-reg4")
PARAMS = {"n_images": 128, "seed": 1, "examples": 3}
QUICK = {"n_images": 32}
KIND_COLOURS = {"[CLS]": style.PALETTE[0], "registers": style.PALETTE[1], "background": style.PALETTE[7],
                "object": style.PALETTE[2], "[TTR]": style.PALETTE[3]}


def _probe_both(ctx: FigureContext, probe: str, **options: Any) -> Results:
    """Run one image probe on both models over the same generated images."""
    import torch

    from workbench import probes, vision

    rows, runs = [], {}
    threads = torch.get_num_threads()
    # One thread: these 140k-parameter models gain nothing from more, and on a busy 2-core machine two OpenMP
    # threads made this probe 20x slower (8.0 s vs 0.37 s for 128 images).
    torch.set_num_threads(1)
    try:
        for name in MODELS:
            model = vision.trained(name)
            images = vision.image_set(model, "shapes", n=ctx.params["n_images"], seed=ctx.params["seed"])
            result = probes.run(probe, model, images, progress=False, **options)
            rows += result.rows
            runs[name] = result.provenance
    finally:
        torch.set_num_threads(threads)
    return Results(rows, {**runs[MODELS[0]], "runs": runs, "models": list(MODELS)})


def _text(results: Results) -> str:
    prov = results.provenance
    return f"{prov.get('n_images')} generated shapes (seed {prov.get('data_seed')})"


def _short(name: str) -> str:
    return "4 registers" if name.endswith("reg4") else "no registers"


# --------------------------------------------------------------------------------------------------
# where attention goes
# --------------------------------------------------------------------------------------------------


@recipe("vit-attention-by-kind", title="Where a small ViT's attention goes, with and without registers",
        reproduces="Darcet et al. 2024 (arXiv 2309.16588), §2-3: attention to [CLS], registers and background patches",
        params={k: v for k, v in PARAMS.items() if k != "examples"}, quick_params=QUICK, model=MODELS[0],
        families=("image-classifier",))
def attention_by_kind(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "image-attention", examples=0)


@attention_by_kind.plotter
def _(results: Results, ctx: FigureContext):
    frame = results.df
    frame = frame[frame.metric.isin(["attention_share", "cls_attention_share"])]
    table = frame.groupby(["model", "metric", "layer", "kind"]).value.mean().reset_index()  # mean over heads
    fig, axes = style.new_figure("double", 4.4, nrows=2, ncols=2, sharey=True, sharex=True)
    drawn = {}
    for row, name in enumerate(MODELS):
        for col, metric in enumerate(["attention_share", "cls_attention_share"]):
            ax = axes[row, col]
            part = table[(table.model == name) & (table.metric == metric)]
            bottom = None
            for kind, colour in KIND_COLOURS.items():
                values = part[part.kind == kind].set_index("layer").value
                if values.empty:
                    continue
                base = bottom.reindex(values.index).fillna(0) if bottom is not None else 0 * values
                drawn[kind] = ax.bar(values.index, values, bottom=base, color=colour, label=kind, width=0.7)
                bottom = base + values if bottom is None else bottom.add(values, fill_value=0)
            who = "all queries" if col == 0 else "the [CLS] query"
            style.label(ax, f"attention share from {who}", f"{name}")
            ax.set_xticks(sorted(part.layer.unique()))
            ax.set_ylim(0, 1)
            if row == 1:
                ax.set_xlabel("layer")
            if col == 0:
                ax.set_ylabel(f"share ({_short(name)})")
    fig.legend(drawn.values(), drawn.keys(), loc="outside lower center", ncol=len(drawn))
    fig.suptitle(f"attention received by each kind of token (mean over heads) | {_text(results)}", fontsize=8,
                 x=0.01, ha="left")
    return fig, table


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


def _grid(frame: pd.DataFrame, rows: int, cols: int) -> np.ndarray:
    grid = np.full((rows, cols), np.nan)
    patches = frame[frame.token == "patch"]
    grid[patches.row.astype(int), patches.col.astype(int)] = patches.value
    return grid


def _map_figure(results: Results, ctx: FigureContext, metric: str, what: str, cmap: str):
    from workbench import vision

    frame = results.df
    frame = frame[frame.metric == metric]
    layer = int(frame.layer.max())
    examples = [int(i) for i in sorted(frame.image.dropna().unique())]
    rows_, cols_ = int(frame.row.max()) + 1, int(frame.col.max()) + 1
    prov = results.provenance  # the probed images, regenerated (shapes(n, seed) is deterministic for the pair)
    pixels, labels, _ = vision.shapes(int(prov["n_images"]), int(prov["image_size"][0]), int(prov["data_seed"]))
    fig, axes = style.new_figure("double", 2.3 * len(examples), nrows=len(examples), ncols=1 + len(MODELS))
    axes = np.atleast_2d(axes)
    plotted = []
    for r, image in enumerate(examples):
        axes[r, 0].imshow(pixels[image])
        axes[r, 0].set_title(f"image {image}: {vision.SHAPES[labels[image]]}", loc="left")
        for c, name in enumerate(MODELS, start=1):
            part = frame[(frame.model == name) & (frame.image == image) & (frame.layer == layer)]
            grid = _grid(part, rows_, cols_)
            shown = axes[r, c].imshow(grid, cmap=cmap, interpolation="nearest")
            fig.colorbar(shown, ax=axes[r, c], fraction=0.046, pad=0.03)
            extra = part[part.token != "patch"]
            note = ", ".join(f"{t} {v:.2f}" for t, v in zip(extra.token, extra.value)
                             if t == "[CLS]" or t.startswith("[REG"))
            if r == 0:
                style.label(axes[r, c], what, f"{name}, layer {layer}")
            axes[r, c].set_xlabel(note, fontsize=6)
            plotted.append(part.assign(layer=layer)[["model", "image", "layer", "position", "token", "row", "col",
                                                    "value"]])
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    return fig, pd.concat(plotted, ignore_index=True)


@recipe("vit-attention-maps", title="[CLS] attention over the image, with and without registers",
        reproduces="Darcet et al. 2024 (arXiv 2309.16588), Figs. 1 and 9: last-layer [CLS] attention maps",
        params=PARAMS, quick_params=QUICK, model=MODELS[0], families=("image-classifier",))
def attention_maps(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "image-attention", examples=ctx.params["examples"], layers=[3])


@attention_maps.plotter
def _(results: Results, ctx: FigureContext):
    return _map_figure(results, ctx, "example_cls_attention", "[CLS] attention", style.ATTENTION_CMAP)


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
        params=PARAMS, quick_params=QUICK, model=MODELS[0], families=("image-classifier",))
def norm_maps(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "patch-norms", examples=ctx.params["examples"])


@norm_maps.plotter
def _(results: Results, ctx: FigureContext):
    return _map_figure(results, ctx, "example_norm", "||h||", "magma")


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
        families=("image-classifier",))
def norm_histograms(ctx: FigureContext) -> Results:
    return _probe_both(ctx, "patch-norms", examples=0)


@norm_histograms.plotter
def _(results: Results, ctx: FigureContext):
    frame = results.df
    hist = frame[frame.metric == "norm_histogram"]
    layers = sorted(hist.layer.unique().astype(int))
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = style.new_figure("double", 2.4, nrows=1, ncols=len(layers), sharey=True, sharex=True)
    axes = np.atleast_1d(axes)
    for ax, layer in zip(axes, layers):
        for colour, name in zip(style.PALETTE, MODELS):
            part = hist[(hist.model == name) & (hist.layer == layer)].sort_values("bin")
            edges = np.append(part.bin_low.values, part.bin_high.values[-1])
            ax.stairs(part.value.values + 0.5, edges, color=colour, label=_short(name), baseline=0.5)
            registers = frame[(frame.metric == "norm_mean") & (frame.kind == "registers") & (frame.model == name)
                              & (frame.layer == layer)]
            for value in registers.value:
                ax.axvline(value, color=colour, linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        style.label(ax, f"layer {layer}", None, None)
        ax.set_xlabel("patch-token norm")
    axes[0].set_ylabel("patches (count + 0.5)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names))
    fig.suptitle(f"Patch-token residual norms | {', '.join(MODELS)} | {_text(results)}", fontsize=8, x=0.01, ha="left")
    return fig, hist[["model", "layer", "bin", "bin_low", "bin_high", "value"]]


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
