"""Where attention goes: averaged maps, the layer x head grid of sink attention, its depth profile, the
control prompts and, for encoders, attention to special tokens.

    >>> fig, frame = sink_grid(probes.sinks(model, windows))
    >>> style.save(fig, frame, "out/sink-grid")          # PNG + PDF + the CSV of what is plotted
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require, sink_metric, text_of


def attention_heatmaps(results: Results, layers: Sequence[int] | None = None, average_heads: bool = True):
    """Averaged attention maps of a few layers, linear (top) and log (bottom) colour scales
    (StreamingLLM Fig. 2). Input: `probes.attention_maps` Results."""
    from matplotlib.colors import LogNorm

    frame = require(results.df, "attention", "attention_heatmaps")
    layers = list(layers) if layers is not None else sorted(frame.layer.unique())
    if average_heads:
        frame = frame.groupby(["layer", "q", "k"], as_index=False).value.mean()
    length = int(frame.q.max()) + 1
    fig, axes = style.new_figure("double", height=3.6, nrows=2, ncols=len(layers), squeeze=False)
    plotted = []
    for col, layer in enumerate(layers):
        cells = frame[frame.layer == layer]
        grid = np.full((length, length), np.nan)
        grid[cells.q.astype(int), cells.k.astype(int)] = cells.value
        plotted.append(cells.assign(layer=layer))
        for row, log in enumerate((False, True)):
            ax = axes[row][col]
            norm = LogNorm(vmin=1e-3, vmax=1.0) if log else None
            image = ax.imshow(np.where(grid > 0, grid, np.nan) if log else grid, cmap=style.ATTENTION_CMAP,
                              vmin=None if log else 0, vmax=None if log else 1, norm=norm)
            ax.set_title(f"layer {layer}" + (" (log)" if log else ""))
            ax.set_xlabel("key position")
            if col == 0:
                ax.set_ylabel("query position")
            ax.grid(False)
        if col == len(layers) - 1:
            fig.colorbar(image, ax=axes[:, col], shrink=0.8, label="attention (mean over heads and inputs)")
    fig.suptitle(f"Averaged attention | {model_of(results)} | {text_of(results)}", x=0.02, ha="left", fontsize=9)
    return fig, pd.concat(plotted)[["layer", "q", "k", "value"]]


def sink_grid(results: Results, eps: float = 0.3):
    """Layer x head grid of first-token (sink) attention with a 0-1 colourbar and the sink ratio
    (Gu et al. 2025, Figs. 19-24). Input: `probes.sinks` Results."""
    frame = results.df
    metric = sink_metric(frame)
    scores = require(frame, metric, "sink_grid")
    grid = scores.pivot_table(index="layer", columns="head", values="value")
    ratio = frame[(frame.metric == "sink_ratio") & (frame.eps == eps) & frame.layer.isna()]
    fig, ax = style.new_figure("single", height=4.2)
    image = ax.imshow(grid.values, aspect="auto", cmap=style.ATTENTION_CMAP, vmin=0, vmax=1, origin="lower")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(grid.shape[1]))
    step = max(1, grid.shape[0] // 10)
    ax.set_yticks(range(0, grid.shape[0], step))
    ax.set_yticklabels([int(v) for v in grid.index[::step]])
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=f"{metric.replace('_', ' ')} (0-1)")
    title = f"{metric.replace('_', ' ')} | {model_of(results)} | {text_of(results)}"
    if not ratio.empty:
        title += f"\nsink ratio (eps={eps:g}) = {ratio.value.iloc[0]:.1%} of heads"
    ax.set_title(title, loc="left")
    return fig, grid.reset_index().melt(id_vars="layer", var_name="head", value_name=metric)


def depth_profile(results: Results):
    """Attention of the last query to token 0 per layer, mean +- std over heads (StreamingLLM Fig. 12),
    with the mean over all queries beside it. Input: `probes.sinks` Results."""
    frame = results.df
    last = require(frame, "last_token_attention", "depth_profile")
    metric = sink_metric(frame)
    every = require(frame, metric, "depth_profile")
    stats = last.groupby("layer").value.agg(["mean", "std"]).rename(columns=lambda c: f"last_query_{c}")
    stats = stats.join(every.groupby("layer").value.agg(["mean", "std"]).rename(columns=lambda c: f"all_queries_{c}"))
    stats = stats.reset_index()
    fig, ax = style.new_figure("single")
    ax.errorbar(stats.layer, stats.last_query_mean, yerr=stats.last_query_std, fmt="o", capsize=2,
                label="last query (mean ± std over heads)")
    ax.plot(stats.layer, stats.all_queries_mean, "-", color=style.PALETTE[1], label="mean over all queries q ≥ 1")
    uniform = frame[frame.metric == "uniform_attention"]
    if not uniform.empty:
        ax.axhline(uniform.value.iloc[0], ls=":", color="grey", label="uniform attention")
    ax.set_xlabel("layer")
    ax.set_ylabel("attention to token 0")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best")
    style.label(ax, "attention to the first token per layer", model_of(results), text_of(results))
    return fig, stats


def control_prompts(results: Results, eps: float = 0.3):
    """Sink ratio on natural text, random tokens and one repeated token, with and without BOS
    (Gu et al. 2025, Table 1). Input: concatenated `probes.sinks` Results with a `prompts` and `bos` column."""
    frame = require(results.df, "sink_ratio", "control_prompts")
    frame = frame[(frame.eps == eps) & frame.layer.isna()][["prompts", "bos", "value"]]
    order = [p for p in ("natural", "random", "repeated") if p in set(frame.prompts)]
    fig, ax = style.new_figure("single", height=2.6)
    width = 0.38
    for i, bos in enumerate(sorted(set(frame.bos), reverse=True)):
        values = [frame[(frame.prompts == p) & (frame.bos == bos)].value.mean() for p in order]
        bars = ax.bar(np.arange(len(order)) + (i - 0.5) * width, np.array(values) * 100, width,
                      label="BOS prepended" if bos else "no BOS", color=style.PALETTE[i])
        ax.bar_label(bars, fmt="%.1f", fontsize=6.5, padding=1)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order)
    ax.set_ylabel(f"heads with score > {eps:g} (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="upper right")
    style.label(ax, f"sink ratio Sink_1^{eps:g}", model_of(results), f"T={results.provenance.get('window')}")
    return fig, frame


def special_tokens(results: Results):
    """Per-head attention to special tokens and punctuation per layer (Clark et al. 2019, Fig. 2).
    Input: `probes.special_token_attention` Results."""
    frame = require(results.df, "sink_attention", "special_tokens")
    if "target" not in frame:
        raise KeyError("special_tokens needs a 'target' column (probes.special_token_attention)")
    fig, ax = style.new_figure("single")
    targets = list(dict.fromkeys(frame.target))
    for i, target in enumerate(targets):
        part = frame[frame.target == target]
        jitter = (i - (len(targets) - 1) / 2) * 0.12
        ax.scatter(part.layer + jitter, part.value, s=7, alpha=0.7, color=style.PALETTE[i], label=target)
        mean = part.groupby("layer").value.mean()
        ax.plot(mean.index, mean.values, color=style.PALETTE[i], lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("attention to the token (per head)")
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title="summed over occurrences", loc="upper left", ncol=2)
    style.label(ax, "attention to special tokens", model_of(results), text_of(results))
    return fig, frame[["target", "layer", "head", "value"]]



def position_zero(results: Results):
    """Sink ratio and loss of each causal model against what stands at position 0 (the text's own first token,
    its BOS / EOS / chat-start tokens, a newline). Input: the `position-zero` recipe's Results (rows per
    model and `first`, metrics `sink_ratio` and `loss` with bootstrap intervals)."""
    frame = results.df
    require(frame, "sink_ratio", "position_zero")
    require(frame, "loss", "position_zero")
    models = list(results.provenance.get("models") or sorted(set(frame.model)))
    fig, axes = style.new_figure("double", 3.0, ncols=2)
    plotted = []
    for ax, metric, title in ((axes[0], "sink_ratio", "sink ratio (eps 0.3)"),
                              (axes[1], "loss", "loss on the same targets (nats)")):
        part = frame[frame.metric == metric]
        x0 = 0.0
        ticks, names = [], []
        for name in models:
            rows = part[part.model == name]
            xs = x0 + np.arange(len(rows))
            colours = [style.PALETTE[i % len(style.PALETTE)] for i in range(len(rows))]
            err = None
            if rows.ci_low.notna().all():
                err = np.vstack([rows.value - rows.ci_low, rows.ci_high - rows.value]).clip(min=0)
            ax.bar(xs, rows.value, color=colours, yerr=err, capsize=2, width=0.8)
            for x, first in zip(xs, rows["first"]):
                ticks.append(x)
                names.append(first)
            ax.text(x0 + (len(rows) - 1) / 2, 1.02, name, transform=ax.get_xaxis_transform(), ha="center", fontsize=7)
            plotted.append(rows.assign(x=xs))
            x0 += len(rows) + 1
        ax.set_xticks(ticks)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel(title)
        if metric == "sink_ratio":
            ax.set_ylim(0, 1)
    fig.suptitle(f"What stands at position 0 decides the sink | {', '.join(models)} | {text_of(results)}", x=0.02, ha="left", fontsize=9)
    data = pd.concat(plotted)
    return fig, data[["model", "first", "first_id", "metric", "value", "ci_low", "ci_high"]]
