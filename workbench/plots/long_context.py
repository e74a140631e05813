"""Sinks against context length: the sink ratio and the interventions' effects against T, and the sink's
share against the query's position.

    >>> fig, frame = sink_ratio_vs_length(results)          # rows sink_ratio (layer None) with a column T
    >>> fig, frame = sink_position_profile(results)         # rows sink_attention_by_position (probes.by_position)
"""

from __future__ import annotations

import numpy as np

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require


def sink_ratio_vs_length(results: Results):
    """Sink_1^eps (share of heads whose first-token attention exceeds eps) against the window length T, one
    line per eps (Gu et al. 2025, Fig. 3). Input: `probes.sinks` rows stacked over T (column `T`)."""
    frame = require(results.df, "sink_ratio", "sink_ratio_vs_length")
    frame = frame[frame["layer"].isna()][["T", "eps", "value"]].sort_values(["eps", "T"]).reset_index(drop=True)
    fig, ax = style.new_figure("single", height=2.6)
    for index, (eps, part) in enumerate(frame.groupby("eps")):
        ax.plot(part["T"], part["value"], marker="o", ms=3, color=style.PALETTE[index % len(style.PALETTE)],
                label=f"eps = {eps:g}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("window length T (tokens)")
    ax.set_ylabel("sink ratio (share of heads)")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title(f"{model_of(results)}: sink ratio against context length")
    return fig, frame


def sink_position_profile(results: Results, n_layers_shown: int = 6):
    """Mean attention to the sink against the query position (log-spaced bins), one line per layer (a
    spread of `n_layers_shown` layers). Input: `probes.by_position.sink_by_position` Results."""
    frame = require(results.df, "sink_attention_by_position", "sink_position_profile")
    layers = sorted(frame["layer"].dropna().astype(int).unique())
    shown = [layers[int(i)] for i in np.unique(np.linspace(0, len(layers) - 1, min(n_layers_shown, len(layers))))]
    frame = frame[frame["layer"].isin(shown)].copy()
    frame["q_mid"] = np.sqrt(frame["q_low"] * np.maximum(frame["q_high"] - 1, frame["q_low"]))
    frame = frame[["layer", "q_low", "q_high", "q_mid", "n", "value"]].sort_values(["layer", "q_low"])
    fig, ax = style.new_figure("single", height=2.6)
    for index, (layer, part) in enumerate(frame.groupby("layer")):
        ax.plot(part["q_mid"], part["value"], color=style.PALETTE[index % len(style.PALETTE)], lw=1,
                label=f"layer {int(layer)}")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("query position q")
    ax.set_ylabel("attention to the sink (mean over heads)")
    ax.legend(frameon=False, fontsize=6, ncol=2)
    ax.set_title(f"{model_of(results)}: sink attention against query position")
    return fig, frame.reset_index(drop=True)


def interventions_vs_length(results: Results, metric: str = "delta_loss"):
    """An intervention metric (default delta_loss) with its 95 % bootstrap interval against T, one line per
    intervention. Input: `experiment.run` rows stacked over T (column `T`)."""
    frame = require(results.df, metric, "interventions_vs_length")
    frame = frame[frame["intervention"] != "none"][["intervention", "T", "value", "ci_low", "ci_high"]]
    frame = frame.sort_values(["intervention", "T"]).reset_index(drop=True)
    fig, ax = style.new_figure("single", height=2.6)
    for index, (name, part) in enumerate(frame.groupby("intervention", sort=False)):
        colour = style.PALETTE[index % len(style.PALETTE)]
        ax.plot(part["T"], part["value"], marker="o", ms=3, color=colour, label=name)
        ax.fill_between(part["T"], part["ci_low"], part["ci_high"], color=colour, alpha=0.2, lw=0)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("window length T (tokens)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (nats/token; 95% CI)")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title(f"{model_of(results)}: interventions against context length")
    return fig, frame
