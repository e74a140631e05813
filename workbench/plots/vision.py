"""Vision Transformers with and without register tokens (Darcet et al. 2024): where attention goes by kind of
token, [CLS] attention and token norms over the image, and the distribution of patch-token norms.

    >>> res = probes.image_attention(model, images)                   # or several models' rows in one Results
    >>> fig, frame = vit_attention_by_kind(res)
    >>> pixels, labels, _ = vision.shapes(n, size, seed)              # the probed images, to draw under the maps
    >>> fig, frame = vit_attention_maps(res, pixels, [vision.SHAPES[i] for i in labels])

The Results may hold the rows of several models (a `model` column); one row (or panel) per model, in the
order of the provenance's `models`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import require

KIND_COLOURS = {"[CLS]": style.PALETTE[0], "registers": style.PALETTE[1], "background": style.PALETTE[7],
                "object": style.PALETTE[2], "[TTR]": style.PALETTE[3]}


def _models(results: Results) -> list[str]:
    return list(results.provenance.get("models") or sorted(set(results.df.model)))


def _text(results: Results) -> str:
    prov = results.provenance
    return f"{prov.get('n_images')} generated shapes (seed {prov.get('data_seed')})"


def _registers(name: str) -> str:
    found = re.search(r"reg(\d+)$", name)
    return f"{found.group(1)} registers" if found else "no registers"


def vit_attention_by_kind(results: Results):
    """Share of attention received by [CLS], registers, background and object patches per layer (mean over
    heads), from all queries (left) and from the [CLS] query (right), one row per model.
    Input: `probes.image_attention` Results."""
    frame = results.df
    require(frame, "attention_share", "vit_attention_by_kind")
    models = _models(results)
    frame = frame[frame.metric.isin(["attention_share", "cls_attention_share"])]
    table = frame.groupby(["model", "metric", "layer", "kind"]).value.mean().reset_index()  # mean over heads
    fig, axes = style.new_figure("double", 4.4, nrows=len(models), ncols=2, sharey=True, sharex=True, squeeze=False)
    drawn = {}
    for row, name in enumerate(models):
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
            if row == len(models) - 1:
                ax.set_xlabel("layer")
            if col == 0:
                ax.set_ylabel(f"share ({_registers(name)})")
    fig.legend(drawn.values(), drawn.keys(), loc="outside lower center", ncol=len(drawn))
    fig.suptitle(f"attention received by each kind of token (mean over heads) | {_text(results)}", fontsize=8,
                 x=0.01, ha="left")
    return fig, table


def _grid(frame: pd.DataFrame, rows: int, cols: int) -> np.ndarray:
    grid = np.full((rows, cols), np.nan)
    patches = frame[frame.token == "patch"]
    grid[patches.row.astype(int), patches.col.astype(int)] = patches.value
    return grid


def _token_maps(results: Results, pixels: np.ndarray, labels: Sequence[str], metric: str, what: str, cmap: str):
    """Each example image (left) and, per model, `metric` of every patch in the last probed layer."""
    frame = require(results.df, metric, what)
    models = _models(results)
    layer = int(frame.layer.max())
    examples = [int(i) for i in sorted(frame.image.dropna().unique())]
    rows_, cols_ = int(frame.row.max()) + 1, int(frame.col.max()) + 1
    fig, axes = style.new_figure("double", 2.3 * len(examples), nrows=len(examples), ncols=1 + len(models))
    axes = np.atleast_2d(axes)
    plotted = []
    for r, image in enumerate(examples):
        axes[r, 0].imshow(pixels[image])
        axes[r, 0].set_title(f"image {image}: {labels[image]}", loc="left")
        for c, name in enumerate(models, start=1):
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


def vit_attention_maps(results: Results, pixels: np.ndarray, labels: Sequence[str]):
    """Attention of the [CLS] query to every patch in the last probed layer (mean over heads) for the example
    images, beside the images; the x-label gives the attention to [CLS] itself and to each register.
    Input: `probes.image_attention(..., examples=K)` Results; `pixels[i]` ([H, W, 3]) and `labels[i]` (its
    shape's name) for every example image i."""
    return _token_maps(results, pixels, labels, "example_cls_attention", "[CLS] attention", style.ATTENTION_CMAP)


def vit_norm_maps(results: Results, pixels: np.ndarray, labels: Sequence[str]):
    """L2 norm of every patch token's residual stream after the last block for the example images (x-label:
    [CLS] and register norms). Input: `probes.patch_norms(..., examples=K)` Results; pixels and labels as in
    `vit_attention_maps`."""
    return _token_maps(results, pixels, labels, "example_norm", "||h||", "magma")


def vit_norm_histograms(results: Results):
    """Histograms of patch-token norms per layer, one line per model (log-log; dotted: mean register norm).
    Input: `probes.patch_norms` Results."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    frame = results.df
    hist = require(frame, "norm_histogram", "vit_norm_histograms")
    models = _models(results)
    layers = sorted(hist.layer.unique().astype(int))
    fig, axes = style.new_figure("double", 2.4, nrows=1, ncols=len(layers), sharey=True, sharex=True)
    axes = np.atleast_1d(axes)
    for ax, layer in zip(axes, layers):
        for colour, name in zip(style.PALETTE, models):
            part = hist[(hist.model == name) & (hist.layer == layer)].sort_values("bin")
            edges = np.append(part.bin_low.values, part.bin_high.values[-1])
            ax.stairs(part.value.values + 0.5, edges, color=colour, label=_registers(name), baseline=0.5)
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
    fig.suptitle(f"Patch-token residual norms | {', '.join(models)} | {_text(results)}", fontsize=8, x=0.01, ha="left")
    return fig, hist[["model", "layer", "bin", "bin_low", "bin_high", "value"]]
