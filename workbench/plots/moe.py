"""Mixture-of-Experts sinks: which experts write the massive activations at the sink, and what pruning them does.

    >>> fig, frame = super_expert_pruning(gallery_results)          # the `moe-super-experts` recipe's Results
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require

_CONDITIONS = [("baseline", "none"), ("super", "super"), ("random", "random")]


def _bars(ax, frame: pd.DataFrame, metric: str, layer, title: str, ylabel: str) -> list[dict]:
    at = frame[frame.metric == metric]
    at = at[at.layer.isna()] if layer is None else at[at.layer == layer]
    panel = " ".join(title.split())  # one line in the CSV
    plotted = []
    for index, (condition, _label) in enumerate(_CONDITIONS):
        row = at[at.condition == condition].iloc[0]
        low, high = row.get("ci_low", np.nan), row.get("ci_high", np.nan)
        error = None if pd.isna(low) else [[row.value - low], [high - row.value]]
        ax.bar(index, row.value, color=style.PALETTE[index], width=0.6, yerr=error, capsize=3)
        plotted.append({"panel": panel, "metric": metric, "layer": layer, "condition": condition,
                        "value": float(row.value), "ci_low": low, "ci_high": high, "draw": None})
    draws = at[at.condition == "random_draw"]
    jitter = np.linspace(-0.15, 0.15, max(len(draws), 1))
    ax.scatter(2 + jitter[:len(draws)], draws.value, s=6, color="0.2", zorder=3)
    plotted += [{"panel": panel, "metric": metric, "layer": layer, "condition": "random_draw", "value": float(v),
                 "draw": int(d), "ci_low": np.nan, "ci_high": np.nan} for v, d in zip(draws.value, draws.draw)]
    ax.set_xticks(range(len(_CONDITIONS)), [name for _, name in _CONDITIONS])
    ax.set_xlabel("experts pruned")
    ax.set_title(title, loc="left")
    ax.set_ylabel(ylabel)
    return plotted


def super_expert_pruning(results: Results):
    """Left: each expert's share of its layer's routed output on the massive dims at the sink (`massive_share`,
    layer x expert). Then attention to the sink (in the layer where it is largest), |h_sink| on the massive dims
    after the super expert's layer and the loss, for no pruning, the super expert(s) pruned, and as many random
    experts pruned (mean and 95 % bootstrap interval over the draws; dots: each draw). Input: the
    `moe-super-experts` recipe's Results (`workbench.gallery.recipes_moe.prune_test` + the baseline probes)."""
    frame = results.df
    require(frame, "sink_attention", "super_expert_pruning")
    prov = results.provenance
    shares = frame[(frame.metric == "massive_share") & (frame.condition == "baseline")]
    fig, axes = style.new_figure("double", height=2.9, ncols=4 if len(shares) else 3,
                                 gridspec_kw={"width_ratios": [1.5, 1, 1, 1] if len(shares) else [1, 1, 1]})
    axes = list(np.atleast_1d(axes))
    plotted: list[dict] = []
    if len(shares):
        grid = shares.pivot_table(index="layer", columns="expert", values="value")
        image = axes[0].imshow(grid.to_numpy(), vmin=0, vmax=1, cmap=style.ATTENTION_CMAP, aspect="auto")
        axes[0].set_xticks(range(grid.shape[1]), [int(e) for e in grid.columns])
        axes[0].set_yticks(range(grid.shape[0]), [int(layer) for layer in grid.index])
        axes[0].set_xlabel("expert")
        axes[0].set_ylabel("layer")
        axes[0].grid(False)
        axes[0].set_title(f"each expert's share of |g o|\non dims {prov.get('dims')} at <s>", loc="left")
        fig.colorbar(image, ax=axes[0], shrink=0.8)
        plotted += [{"panel": "massive_share", "metric": "massive_share", "layer": int(r.layer),
                     "expert": int(r.expert), "condition": "baseline", "value": float(r.value)}
                    for r in shares.itertuples()]
        axes = axes[1:]
    baseline = frame[(frame.condition == "baseline") & (frame.metric == "sink_attention")]
    sink_layer = int(baseline.sort_values("value").iloc[-1].layer)
    super_layer = int(str(prov.get("super_experts", ["L0"])[0])[1:].split("E")[0])
    plotted += _bars(axes[0], frame, "sink_attention", sink_layer, f"attention to <s>\nlayer {sink_layer}",
                     "mean over heads and queries")
    plotted += _bars(axes[1], frame, "sink_massive", super_layer, f"|h_<s>| on massive dims\nafter layer {super_layer}",
                     "mean |activation|")
    plotted += _bars(axes[2], frame, "loss", None, "next-token loss\n", "nats")
    losses = [row["value"] for row in plotted if row["metric"] == "loss"]
    axes[2].set_ylim(min(losses) * 0.95, max(losses) * 1.03)
    fig.suptitle(f"{model_of(results)}: pruning the super expert {', '.join(prov.get('super_experts', []))} vs "
                 f"{prov.get('draws')} draws of as many random experts (mode {prov.get('mode')})", fontsize=8.5)
    return fig, pd.DataFrame(plotted)
