"""Streaming with a bounded KV cache (Xiao et al. 2024, StreamingLLM): perplexity vs the number of initial
tokens kept, and log-perplexity along a long text per cache policy.

    >>> fig, frame = streaming_curves(streaming.stream_policies(model, text, policies, curve_bin=64))
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import require

POLICY_COLOURS = {"dense": style.PALETTE[0], "window": style.PALETTE[1], "sinks": style.PALETTE[2],
                  "recompute": style.PALETTE[3]}


def _stream_text(results: Results) -> str:
    source = str(results.provenance.get("data_source", "")).replace("corpus:", "")
    return f"{source}, {results.provenance.get('n_tokens')} tokens"


def streaming_perplexity(results: Results):
    """Perplexity vs the number of initial tokens kept, per cache size (Xiao et al. 2024, Table 2).
    Input: `streaming.stream_policies` Results over `Sinks(S, W)` policies."""
    frame = require(results.df, "perplexity", "streaming_perplexity")[["cache_size", "sinks", "recent", "value", "ci_low", "ci_high", "n"]]
    frame = frame.rename(columns={"value": "perplexity"}).sort_values(["cache_size", "sinks"])
    fig, ax = style.new_figure("single")
    sinks = sorted(frame["sinks"].unique())
    for index, (cache, part) in enumerate(frame.groupby("cache_size")):
        x = [sinks.index(s) for s in part["sinks"]]
        ax.errorbar(x, part["perplexity"], yerr=[part["perplexity"] - part["ci_low"], part["ci_high"] - part["perplexity"]],
                    marker="o", capsize=2, label=f"cache W = {cache}")
        for xi, value in zip(x, part["perplexity"]):
            # alternate the labels above / below the points so that two caches' numbers do not collide
            ax.annotate(f"{value:.1f}", (xi, value), textcoords="offset points", xytext=(4, 3 if index % 2 == 0 else -8),
                        fontsize=6)
    ax.set_xticks(range(len(sinks)), [f"{s}" for s in sinks])
    ax.set_xlabel("initial tokens kept S (S = 0: window attention; cache = S + (W - S))")
    ax.set_ylabel("perplexity (log scale; bars: 95 % CI)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.legend()
    style.label(ax, "streaming perplexity", model=results.provenance.get("model"), text=_stream_text(results))
    return fig, frame


def streaming_curves(results: Results):
    """Log-perplexity along a long text for each cache policy (Xiao et al. 2024, Fig. 3).
    Input: `streaming.stream_policies` Results with an `nll` curve (curve_bin > 1)."""
    curves = require(results.df, "nll", "streaming_curves")
    frame = curves[["policy", "sinks", "window", "position_start", "position", "value", "n"]].rename(
        columns={"value": "log_ppl"})
    fig, ax = style.new_figure("wide")
    order = [p for p in POLICY_COLOURS if p in set(frame["policy"])]
    order += [p for p in frame["policy"].unique() if p not in POLICY_COLOURS]
    for index, policy in enumerate(order):
        part = frame[frame["policy"] == policy]
        row = part.iloc[0]
        label = policy if pd.isna(row["window"]) else f"{policy} {int(row['sinks'])}+{int(row['window'] - row['sinks'])}"
        colour = POLICY_COLOURS.get(policy, style.PALETTE[(len(POLICY_COLOURS) + index) % len(style.PALETTE)])
        ax.plot(part["position"], part["log_ppl"], label=label, color=colour)
    windows = results.filter(metric="perplexity", policy="window", empty_ok=True)
    window = windows.df["window"] if len(windows.rows) else []
    if len(window):
        ax.axvline(float(window.iloc[0]), color="0.5", linestyle=":", linewidth=0.8)
        ax.annotate("cache full", (float(window.iloc[0]), ax.get_ylim()[1]), fontsize=6, ha="left", va="top",
                    xytext=(2, -2), textcoords="offset points", color="0.4")
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel(f"log perplexity (mean NLL per {int(np.nanmax(frame['n']))} tokens, nats)")
    ax.legend()
    style.label(ax, "log perplexity vs tokens", model=results.provenance.get("model"), text=_stream_text(results))
    return fig, frame

