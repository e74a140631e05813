"""Causal interventions: effects with bootstrap intervals, per-head and per-layer sweeps, active vs dormant
heads, and attribution patching against the exact sweep.

    >>> fig, frame = intervention_effects(experiment.run(model, windows, ["zero-implicit-bias", "mask-sink"]))
    >>> fig, frame = sweep_heatmap(experiment.sweep(model, windows, "zero-head", over="head"))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require, sink_metric, text_of


def intervention_effects(results: Results, metric: str = "delta_loss", order: Sequence[str] | None = None,
                         labels: dict[str, str] | None = None):
    """Bars of an intervention metric with bootstrap 95 % intervals (e.g. the zero vs constant
    implicit-bias pair side by side). Input: `experiment.run` Results."""
    frame = require(results.df, metric, "intervention_effects")
    frame = frame[frame.intervention != "none"].copy()
    if order:
        frame["intervention"] = pd.Categorical(frame.intervention, [o for o in order if o in set(frame.intervention)])
        frame = frame.dropna(subset=["intervention"]).sort_values("intervention")
    names = [labels.get(i, i) if labels else i for i in frame.intervention.astype(str)]
    fig, ax = style.new_figure("wide", height=0.32 * len(frame) + 1.3)
    y = np.arange(len(frame))
    low = (frame.value - frame.ci_low).fillna(0).clip(lower=0)
    high = (frame.ci_high - frame.value).fillna(0).clip(lower=0)
    colors = [style.PALETTE[1] if v > 0 else style.PALETTE[0] for v in frame.value]
    ax.barh(y, frame.value, xerr=[low, high], color=colors, capsize=2, height=0.6, error_kw={"lw": 0.8})
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    magnitudes = frame.value.abs()
    small = magnitudes[magnitudes > 0].median() if (magnitudes > 0).any() else 1.0
    if magnitudes.max() > 30 * small:  # effects spanning orders of magnitude: linear near 0, log beyond
        ax.set_xscale("symlog", linthresh=max(float(small), 1e-3))
    ax.set_xlabel(f"{metric.replace('_', ' ')} vs baseline (nats/token; 95% bootstrap CI)")
    right = np.maximum(frame.ci_high.fillna(frame.value).to_numpy(), np.maximum(frame.value.to_numpy(), 0))
    for yi, value, x in zip(y, frame.value, right):
        ax.annotate(f"{value:+.3f}", (x, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=6.5)
    ax.set_xlim(right=ax.get_xlim()[1] * (1.6 if ax.get_xscale() == "symlog" else 1.15))
    base = results.df[(results.df.intervention == "none") & (results.df.metric == "loss")]
    extra = f"baseline loss {base.value.iloc[0]:.3f}" if not base.empty else ""
    fig.suptitle(f"causal interventions on the sink | {model_of(results)} | {text_of(results)}\n{extra}", x=0.02,
                 ha="left", fontsize=8.5)
    return fig, frame.assign(label=names)[["label", "intervention", "metric", "value", "ci_low", "ci_high"]]


def sweep_heatmap(results: Results, metric: str = "delta_loss"):
    """Layer x head heatmap of an intervention metric from a head sweep (diverging, centred on 0)."""
    from matplotlib.colors import TwoSlopeNorm

    frame = require(results.df, metric, "sweep_heatmap")
    frame = frame[frame["head"].notna()]
    grid = frame.pivot_table(index="layer", columns="head", values="value")
    fig, ax = style.new_figure("single", height=4.2)
    limit = float(np.nanmax(np.abs(grid.values))) or 1e-9
    image = ax.imshow(grid.values, aspect="auto", origin="lower", cmap=style.DIVERGING_CMAP,
                      norm=TwoSlopeNorm(0.0, -limit, limit))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(grid.shape[1]))
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=f"{metric.replace('_', ' ')} (nats/token)")
    experiment = str(results.provenance.get("experiment", ""))
    name = experiment.split(":")[1] if ":" in experiment else ""
    estimated = " (attribution estimate)" if experiment.startswith("attribution") else ""
    style.label(ax, f"{name} per head{estimated}", model_of(results), text_of(results))
    return fig, grid.reset_index().melt(id_vars="layer", var_name="head", value_name=metric)


def sweep_profile(results: Results, metric: str = "delta_loss", label: str | None = None):
    """An intervention metric per layer from layer sweeps (one line per swept intervention), with its
    bootstrap interval as a band. Input: one or more `experiment.sweep(..., over="layer")` Results."""
    frame = require(results.df, metric, "sweep_profile")
    frame = frame[frame.layer.notna()].copy()
    frame["name"] = frame.intervention.astype(str).str.split("@").str[0]
    fig, ax = style.new_figure("single")
    for i, (name, part) in enumerate(frame.groupby("name", sort=False)):
        part = part.sort_values("layer")
        ax.plot(part.layer, part.value, "o-", ms=2.5, color=style.PALETTE[i], label=name)
        if part.ci_low.notna().any():
            ax.fill_between(part.layer, part.ci_low, part.ci_high, color=style.PALETTE[i], alpha=0.18, lw=0)
    ax.axhline(0, color="black", lw=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer intervened on")
    ax.set_ylabel(label or f"{metric.replace('_', ' ')} vs baseline")
    ax.legend(loc="best")
    style.label(ax, f"{metric.replace('_', ' ')} per layer", model_of(results), text_of(results))
    return fig, frame[["name", "layer", "metric", "value", "ci_low", "ci_high"]]


def dormant_heads(sink_scores: Results, ablation: Results, metric: str = "delta_loss"):
    """Per head: mean attention on the sink vs the loss change when the head is zeroed, coloured by layer
    (Guo et al. 2024's active/dormant heads)."""
    frame = sink_scores.df
    score_metric = sink_metric(frame)
    scores = require(frame, score_metric, "dormant_heads")[["layer", "head", "value"]]
    effect = require(ablation.df, metric, "dormant_heads")
    effect = effect[effect["head"].notna()][["layer", "head", "value"]]
    merged = scores.merge(effect, on=["layer", "head"], suffixes=("_sink", "_effect"))
    if merged.empty:
        raise KeyError("dormant_heads: no (layer, head) in both the sink scores and the ablation sweep")
    fig, ax = style.new_figure("single")
    points = ax.scatter(merged.value_sink, merged.value_effect, c=merged.layer, cmap="viridis", s=9, alpha=0.85)
    fig.colorbar(points, ax=ax, label="layer")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("mean attention on token 0")
    ax.set_ylabel(f"{metric.replace('_', ' ')} when the head is zeroed")
    ax.set_xlim(-0.02, 1.02)
    style.label(ax, "active vs dormant heads", model_of(ablation), text_of(ablation))
    return fig, merged.rename(columns={"value_sink": score_metric, "value_effect": metric})


def attribution_scatter(estimate: Results, exact: Results, metric: str = "delta_loss", k: int = 10):
    """Attribution-patching estimate vs the exact sweep, one point per head (coloured by layer; the exact top-k
    heads by |effect| ringed), with the Spearman rank correlation, the top-k recall and the estimate's cost.

    Inputs: `experiment.attribution_sweep` and `experiment.sweep(..., over="head")` Results. The frame holds
    every plotted head and, in every row, the three numbers of the title (spearman, top{k}_recall, cost_fb)."""
    from workbench.core.metrics import spearman

    guess = require(estimate.df, "attribution_delta_loss", "attribution_scatter")[["layer", "head", "value"]]
    truth = require(exact.df, metric, "attribution_scatter")
    truth = truth[truth["head"].notna()][["layer", "head", "value"]]
    merged = guess.merge(truth, on=["layer", "head"], suffixes=("_estimate", "_exact"))
    if merged.empty:
        raise KeyError("attribution_scatter: no (layer, head) in both the estimate and the exact sweep")
    k = min(k, len(merged))
    # top-k by |value|, ties broken by (layer, head) as experiment.attribution.top_k_recall does
    order = ["layer", "head"]
    top_exact = merged.assign(m=-merged.value_exact.abs()).sort_values(["m", *order]).head(k).index
    top_estimate = merged.assign(m=-merged.value_estimate.abs()).sort_values(["m", *order]).head(k).index
    merged["top_exact"] = merged.index.isin(top_exact)
    merged["top_estimate"] = merged.index.isin(top_estimate)
    rho = spearman(merged.value_estimate, merged.value_exact) if len(merged) >= 3 else float("nan")
    recall = len(set(top_exact) & set(top_estimate)) / k
    cost = (estimate.provenance.get("cost") or {})
    fb, exact_fb = cost.get("fb_equivalents"), cost.get("exact_sweep_forward_passes")
    mode = estimate.provenance.get("mode") or "atp"
    fig, ax = style.new_figure("single")
    points = ax.scatter(merged.value_exact, merged.value_estimate, s=8, c=merged.layer, cmap="viridis", zorder=2)
    ringed = merged[merged.top_exact]
    ax.scatter(ringed.value_exact, ringed.value_estimate, s=40, facecolors="none", edgecolors=style.PALETTE[1],
               lw=0.8, zorder=3, label=f"exact top {k} (|effect|)")
    fig.colorbar(points, ax=ax, label="layer")
    low = float(min(merged.value_exact.min(), merged.value_estimate.min()))
    high = float(max(merged.value_exact.max(), merged.value_estimate.max()))
    ax.plot([low, high], [low, high], ls=":", color="grey", label="estimate = exact")
    ax.axhline(0, color="black", lw=0.4)
    ax.axvline(0, color="black", lw=0.4)
    ax.set_xlabel(f"exact {metric.replace('_', ' ')} (nats/token)")
    ax.set_ylabel(f"{mode} estimate (nats/token)")
    ax.legend(loc="upper left", fontsize=6.5)
    spent = f"cost {fb:g} F+B" + (f" vs {exact_fb} F exact" if exact_fb else "") if fb is not None else "cost n/a"
    ax.text(0.98, 0.02, f"Spearman {rho:.2f}\ntop-{k} recall {recall:.1f}\n{spent}", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=7, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "lw": 0.5})
    style.label(ax, f"attribution ({mode}) vs exact, {len(merged)} heads", model_of(exact))
    merged = merged.assign(mode=mode, spearman=rho, **{f"top{k}_recall": recall}, cost_fb=fb)
    return fig, merged

