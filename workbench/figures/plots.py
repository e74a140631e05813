"""Plot functions over Results. Each returns (figure, DataFrame of exactly what it plots) and never runs a model.

    >>> fig, frame = sink_grid(probes.sinks(model, data))
    >>> style.save(fig, frame, "out/sink-grid")

Titles name the metric, the model and the text (from the Results' provenance); colourbars carry units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from workbench.core.results import Results
from workbench.figures import style


def _model(results: Results) -> str:
    return str(results.provenance.get("model", ""))


def _text(results: Results) -> str:
    prov = results.provenance
    source = str(prov.get("data_source", "")).replace("corpus:", "").replace("control:", "")
    window = prov.get("window")
    bos = prov.get("bos_policy")
    parts = [source] + ([f"T={window}"] if window else []) + ([f"n={prov['n_sequences']}"] if prov.get("n_sequences") else [])
    if bos == "none":
        parts.append("no BOS")
    return ", ".join(p for p in parts if p)


def _require(frame: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    found = frame[frame.metric == metric]
    if found.empty:
        raise KeyError(f"{what} needs rows with metric {metric!r}; the Results have {sorted(set(frame.metric))}")
    return found


# --------------------------------------------------------------------------------------------------
# Where attention goes
# --------------------------------------------------------------------------------------------------


def attention_heatmaps(results: Results, layers: Sequence[int] | None = None, average_heads: bool = True):
    """Averaged attention maps of a few layers, linear (top) and log (bottom) colour scales
    (StreamingLLM Fig. 2). Input: `probes.attention_maps` Results."""
    from matplotlib.colors import LogNorm

    frame = _require(results.df, "attention", "attention_heatmaps")
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
    fig.suptitle(f"Averaged attention | {_model(results)} | {_text(results)}", x=0.02, ha="left", fontsize=9)
    return fig, pd.concat(plotted)[["layer", "q", "k", "value"]]


def sink_grid(results: Results, eps: float = 0.3):
    """Layer x head grid of first-token (sink) attention with a 0-1 colourbar and the sink ratio
    (Gu et al. 2025, Figs. 19-24). Input: `probes.sinks` Results."""
    frame = results.df
    metric = "first_token_attention" if "first_token_attention" in set(frame.metric) else "sink_attention"
    scores = _require(frame, metric, "sink_grid")
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
    title = f"{metric.replace('_', ' ')} | {_model(results)} | {_text(results)}"
    if not ratio.empty:
        title += f"\nsink ratio (eps={eps:g}) = {ratio.value.iloc[0]:.1%} of heads"
    ax.set_title(title, loc="left")
    return fig, grid.reset_index().melt(id_vars="layer", var_name="head", value_name=metric)


def depth_profile(results: Results):
    """Attention of the last query to token 0 per layer, mean +- std over heads (StreamingLLM Fig. 12),
    with the mean over all queries beside it. Input: `probes.sinks` Results."""
    frame = results.df
    last = _require(frame, "last_token_attention", "depth_profile")
    metric = "first_token_attention" if "first_token_attention" in set(frame.metric) else "sink_attention"
    every = _require(frame, metric, "depth_profile")
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
    style.label(ax, "attention to the first token per layer", _model(results), _text(results))
    return fig, stats


def control_prompts(results: Results, eps: float = 0.3):
    """Sink ratio on natural text, random tokens and one repeated token, with and without BOS
    (Gu et al. 2025, Table 1). Input: concatenated `probes.sinks` Results with a `prompts` and `bos` column."""
    frame = _require(results.df, "sink_ratio", "control_prompts")
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
    style.label(ax, f"sink ratio Sink_1^{eps:g}", _model(results), f"T={results.provenance.get('window')}")
    return fig, frame


# --------------------------------------------------------------------------------------------------
# Massive activations
# --------------------------------------------------------------------------------------------------


def massive_3d(results: Results):
    """|activation| over (token x dimension) of one layer for one input, as 3-D bars (Sun et al. 2024,
    Fig. 1). Input: `probes.activations.layer_snapshot` Results."""
    frame = _require(results.df, "abs_activation", "massive_3d")
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
    ax.set_title(f"|residual stream| after layer {layer} | {_model(results)}", loc="left", fontsize=8)
    return fig, frame[["layer", "position", "token", "dim", "value"]]


def massive_layerwise(results: Results):
    """Top-1/2/3 and median |activation| per layer on a log axis (Sun et al. 2024, Fig. 2).
    Input: `probes.massive_activations` Results."""
    frame = results.df
    rows = []
    for metric in ("top1", "top2", "top3", "median"):
        part = frame[frame.metric == metric]
        if part.empty and metric != "top3":
            _require(frame, metric, "massive_layerwise")
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
    style.label(ax, "top-k vs median |activation|", _model(results), _text(results))
    return fig, data


# --------------------------------------------------------------------------------------------------
# Norms and the implicit bias
# --------------------------------------------------------------------------------------------------


def norms(results: Results):
    """Kobayashi et al. 2020: attention weight vs what the head writes, sink vs other keys, per layer
    (means over heads). Left: ||v||; right: attention share of the sink vs its norm-based share."""
    frame = results.df
    table = frame[frame["head"].notna()].pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")
    needed = ["value_norm_sink", "value_norm_other", "attention_share_sink", "contribution_share_sink"]
    for metric in needed:
        if metric not in table:
            _require(frame, metric, "norms")
    fig, (left, right) = style.new_figure("double", height=2.6, ncols=2)
    left.plot(table.index, table.value_norm_sink, "o-", ms=2.5, label="sink (token 0)")
    left.plot(table.index, table.value_norm_other, "s-", ms=2.5, label="other tokens")
    left.set_xlabel("layer")
    left.set_ylabel("||v|| (mean over heads)")
    left.legend()
    left.set_title("value norms", loc="left")
    fig.suptitle(f"attention is not only a weight | {_model(results)} | {_text(results)}", x=0.02, ha="left",
                 fontsize=8.5)
    right.plot(table.index, table.attention_share_sink, "o-", ms=2.5, label="attention share (A)")
    right.plot(table.index, table.contribution_share_sink, "s-", ms=2.5, label="norm-based share (||A v W_O||)")
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("layer")
    right.set_ylabel("share going to the sink")
    right.legend()
    right.set_title("share of the sink: weight vs what is written", loc="left")
    return fig, table[needed].reset_index()


def implicit_bias_constancy(results: Results):
    """How constant the sink term A[q, s] v_s W_O is across queries and inputs, vs a non-sink term
    (median over heads per layer; RMS coefficient of variation), and its share of the head output."""
    frame = results.df
    table = frame[frame["head"].notna()].pivot_table(index="layer", columns="metric", values="value",
                                                     aggfunc="median")
    for metric in ("sink_term_cv", "null_term_cv", "sink_term_share"):
        if metric not in table:
            _require(frame, metric, "implicit_bias_constancy")
    fig, (left, right) = style.new_figure("double", height=2.6, ncols=2)
    left.plot(table.index, table.sink_term_cv, "o-", ms=2.5, label="sink term (token 0)")
    left.plot(table.index, table.null_term_cv, "s-", ms=2.5, label="term of token 1 (null)")
    left.set_yscale("log")
    left.set_xlabel("layer")
    left.set_ylabel("coeff. of variation (median, heads)")
    left.legend()
    left.set_title("constancy of the sink term A[q,0] v_0 W_O", loc="left")
    fig.suptitle(f"implicit attention bias | {_model(results)} | {_text(results)}", x=0.02, ha="left", fontsize=8.5)
    right.plot(table.index, table.sink_term_share, "o-", ms=2.5, color=style.PALETTE[2])
    right.set_ylim(0, max(1.0, float(table.sink_term_share.max()) * 1.05))
    right.set_xlabel("layer")
    right.set_ylabel("||sink term|| / ||head output||")
    right.set_title("size of the sink term", loc="left")
    return fig, table[["sink_term_cv", "null_term_cv", "sink_term_share"]].reset_index()


# --------------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------------


def intervention_effects(results: Results, metric: str = "delta_loss", order: Sequence[str] | None = None,
                         labels: dict[str, str] | None = None):
    """Bars of an intervention metric with bootstrap 95 % intervals (e.g. the zero vs constant
    implicit-bias pair side by side). Input: `experiment.run` Results."""
    frame = _require(results.df, metric, "intervention_effects")
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
    fig.suptitle(f"causal interventions on the sink | {_model(results)} | {_text(results)}\n{extra}", x=0.02,
                 ha="left", fontsize=8.5)
    return fig, frame.assign(label=names)[["label", "intervention", "metric", "value", "ci_low", "ci_high"]]


def sweep_heatmap(results: Results, metric: str = "delta_loss"):
    """Layer x head heatmap of an intervention metric from a head sweep (diverging, centred on 0)."""
    from matplotlib.colors import TwoSlopeNorm

    frame = _require(results.df, metric, "sweep_heatmap")
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
    style.label(ax, f"{name} per head{estimated}", _model(results), _text(results))
    return fig, grid.reset_index().melt(id_vars="layer", var_name="head", value_name=metric)


def dormant_heads(sink_scores: Results, ablation: Results, metric: str = "delta_loss"):
    """Per head: mean attention on the sink vs the loss change when the head is zeroed, coloured by layer
    (Guo et al. 2024's active/dormant heads)."""
    frame = sink_scores.df
    score_metric = "first_token_attention" if "first_token_attention" in set(frame.metric) else "sink_attention"
    scores = _require(frame, score_metric, "dormant_heads")[["layer", "head", "value"]]
    effect = _require(ablation.df, metric, "dormant_heads")
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
    style.label(ax, "active vs dormant heads", _model(ablation), _text(ablation))
    return fig, merged.rename(columns={"value_sink": score_metric, "value_effect": metric})


def attribution_scatter(estimate: Results, exact: Results, metric: str = "delta_loss"):
    """Attribution-patching estimate vs the exact sweep, one point per head."""
    guess = _require(estimate.df, "attribution_delta_loss", "attribution_scatter")[["layer", "head", "value"]]
    truth = _require(exact.df, metric, "attribution_scatter")
    truth = truth[truth["head"].notna()][["layer", "head", "value"]]
    merged = guess.merge(truth, on=["layer", "head"], suffixes=("_estimate", "_exact"))
    fig, ax = style.new_figure("single")
    ax.scatter(merged.value_exact, merged.value_estimate, s=8, c=merged.layer, cmap="viridis")
    low = float(min(merged.value_exact.min(), merged.value_estimate.min()))
    high = float(max(merged.value_exact.max(), merged.value_estimate.max()))
    ax.plot([low, high], [low, high], ls=":", color="grey")
    ax.set_xlabel(f"exact {metric.replace('_', ' ')}")
    ax.set_ylabel("attribution estimate")
    rho = exact.provenance.get("attribution_spearman")
    style.label(ax, "attribution patching vs exact" + (f" (Spearman {rho:.2f})" if rho is not None else ""),
                _model(exact))
    return fig, merged


def special_tokens(results: Results):
    """Per-head attention to special tokens and punctuation per layer (Clark et al. 2019, Fig. 2).
    Input: `probes.special_token_attention` Results."""
    frame = _require(results.df, "sink_attention", "special_tokens")
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
    style.label(ax, "attention to special tokens", _model(results), _text(results))
    return fig, frame[["target", "layer", "head", "value"]]


def sweep_profile(results: Results, metric: str = "delta_loss", label: str | None = None):
    """An intervention metric per layer from layer sweeps (one line per swept intervention), with its
    bootstrap interval as a band. Input: one or more `experiment.sweep(..., over="layer")` Results."""
    frame = _require(results.df, metric, "sweep_profile")
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
    style.label(ax, f"{metric.replace('_', ' ')} per layer", _model(results), _text(results))
    return fig, frame[["name", "layer", "metric", "value", "ci_low", "ci_high"]]


# --------------------------------------------------------------------------------------------------
# Streaming (utilization)
# --------------------------------------------------------------------------------------------------

# One colour per policy in every streaming figure (Xiao Fig. 3's four curves).
POLICY_COLOURS = {"dense": style.PALETTE[0], "window": style.PALETTE[1], "sinks": style.PALETTE[2],
                  "recompute": style.PALETTE[3]}


def _stream_text(results: Results) -> str:
    source = str(results.provenance.get("data_source", "")).replace("corpus:", "")
    return f"{source}, {results.provenance.get('n_tokens')} tokens"


def streaming_perplexity(results: Results):
    """Perplexity vs the number of initial tokens kept, per cache size (Xiao et al. 2024, Table 2).
    Input: `streaming.run` Results over `Sinks(S, W)` policies."""
    frame = _require(results.df, "perplexity", "streaming_perplexity")[["cache_size", "sinks", "recent", "value", "ci_low", "ci_high", "n"]]
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
    Input: `streaming.run` Results with an `nll` curve (curve_bin > 1)."""
    curves = _require(results.df, "nll", "streaming_curves")
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
    window = results.filter(metric="perplexity", policy="window").df["window"]
    if len(window):
        ax.axvline(float(window.iloc[0]), color="0.5", linestyle=":", linewidth=0.8)
        ax.annotate("cache full", (float(window.iloc[0]), ax.get_ylim()[1]), fontsize=6, ha="left", va="top",
                    xytext=(2, -2), textcoords="offset points", color="0.4")
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel(f"log perplexity (mean NLL per {int(np.nanmax(frame['n']))} tokens, nats)")
    ax.legend()
    style.label(ax, "log perplexity vs tokens", model=results.provenance.get("model"), text=_stream_text(results))
    return fig, frame


# emergence_curves: (metric, panel title, y label, log y)
_TOY_PANELS = [
    ("bos_attention", "Attn_<s>: weight on <s>", "mean over bigram positions", False),
    ("bos_share", "share of each row's weight on <s>", "mean over bigram positions", False),
    ("backcopy_risk", "backcopy risk", "cross-entropy (nats)", True),
    ("bigram_risk", "bigram excess risk", "KL(true || model) (nats)", True),
    ("v_bos_norm", "value-state norm ||v_<s>||", "L2 norm", True),
    ("resid_bos_norm", "residual norm ||h_<s>|| (last layer)", "L2 norm", True),
]


def emergence_curves(results: Results):
    """Sink emergence while toys train (Guo et al. 2024, Fig. 4): Attn_<s>, the share of each row on <s>, the
    backcopy and bigram risks, ||v_<s>|| and ||h_<s>|| against the training step, one line per attention
    variant. Input: `workbench.toy.emergence_results` (the summary rows of finished runs)."""
    _require(results.df, "bos_attention", "emergence_curves")
    frame = results.df
    frame = frame[frame["metric"].isin([m for m, *_ in _TOY_PANELS])][["variant", "step", "metric", "value"]]
    variants = list(dict.fromkeys(frame["variant"]))
    fig, axes = style.new_figure("double", height=5.6, nrows=2, ncols=3, sharex=True)
    for ax, (metric, title, ylabel, log) in zip(axes.flat, _TOY_PANELS):
        for index, variant in enumerate(variants):
            curve = frame[(frame["variant"] == variant) & (frame["metric"] == metric)].sort_values("step")
            ax.plot(curve["step"], curve["value"], label=variant, color=style.PALETTE[index % len(style.PALETTE)],
                    linewidth=1.8 if variant == "softmax" else 1.1)
        if metric in ("bos_attention", "bos_share"):
            ax.axhline(0.5, color="0.5", linewidth=0.7, linestyle=":")
            ax.set_ylim(-0.02, 1.02)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, loc="left")
        ax.set_ylabel(ylabel)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    prov = results.provenance
    cfg = prov.get("toy_config", {})
    fig.suptitle(f"Bigram-Backcopy {prov.get('model', 'toy')} ({cfg.get('n_layers')} layer x {cfg.get('n_heads')} head, d_model "
                 f"{cfg.get('d_model')}, T={cfg.get('n_ctx')}), seed {prov.get('seed')}: does a sink on <s> form?",
                 fontsize=8.5)
    return fig, frame.reset_index(drop=True)
