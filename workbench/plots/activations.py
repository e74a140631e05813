"""Massive activations (Sun et al. 2024): a few residual-stream dimensions, at a few tokens, orders of
magnitude above the median.

    >>> fig, frame = massive_layerwise(probes.massive_activations(model, windows))
    >>> fig, frame = massive_3d(probes.activations.layer_snapshot(model, "Summer is warm. Winter is cold."))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require, text_of


def massive_3d(results: Results):
    """|activation| over (token x dimension) of one layer for one input, as 3-D bars (Sun et al. 2024,
    Fig. 1). Input: `probes.activations.layer_snapshot` Results."""
    frame = require(results.df, "abs_activation", "massive_3d")
    tokens = frame.drop_duplicates("position").sort_values("position")
    dims = sorted(frame.dim.unique())
    fig = style.new_figure("wide", height=3.6)[0]
    fig.clf()
    ax = fig.add_subplot(projection="3d")
    xs = frame.position.map({p: i for i, p in enumerate(tokens.position)}).to_numpy()
    ys = frame.dim.map({d: i for i, d in enumerate(dims)}).to_numpy()
    heights = frame.value.to_numpy()
    top = heights.max() or 1.0
    colors = [style.PALETTE[1] if h > 0.3 * top else style.PALETTE[0] for h in heights]
    ax.bar3d(xs, ys, np.zeros_like(heights), 0.6, 0.6, heights, color=colors, shade=True)
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels([repr(t)[1:-1][:8] for t in tokens.token], rotation=60, fontsize=5.5, ha="right")
    ax.set_yticks(range(len(dims)))
    ax.set_yticklabels([str(d) for d in dims], fontsize=5.5)
    ax.set_ylabel("dimension", fontsize=7, labelpad=6)
    ax.set_zlabel("|activation|", fontsize=7)
    ax.view_init(elev=24, azim=-58)
    layer = int(frame.layer.iloc[0])
    ax.set_title(f"|residual stream| after layer {layer} | {model_of(results)}", loc="left", fontsize=8)
    return fig, frame[["layer", "position", "token", "dim", "value"]]


def massive_layerwise(results: Results):
    """Top-1/2/3 and median |activation| per layer on a log axis (Sun et al. 2024, Fig. 2).
    Input: `probes.massive_activations` Results."""
    frame = results.df
    rows = []
    for metric in ("top1", "top2", "top3", "median"):
        part = frame[frame.metric == metric]
        if part.empty and metric != "top3":
            require(frame, metric, "massive_layerwise")
        rows.append(part[["layer", "value"]].assign(series=metric))
    data = pd.concat(rows)
    fig, ax = style.new_figure("single")
    for i, (series, part) in enumerate(data.groupby("series", sort=False)):
        ax.plot(part.layer, part.value, "o-" if series != "median" else "s--", ms=2.5, label=series,
                color=style.PALETTE[i])
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("|activation| (residual stream)")
    first = frame[frame.metric == "first_massive_layer"]
    if not first.empty and first.value.iloc[0] is not None and first.value.iloc[0] == first.value.iloc[0]:
        ax.axvline(first.value.iloc[0], color="grey", ls=":", lw=1)
        ax.text(first.value.iloc[0] + 0.3, ax.get_ylim()[1] / 3, "first massive", fontsize=6.5, color="grey")
    ax.legend(loc="center right")
    style.label(ax, "top-k vs median |activation|", model_of(results), text_of(results))
    return fig, data

