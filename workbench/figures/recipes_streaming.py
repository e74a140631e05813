"""StreamingLLM figures (Xiao et al. 2024): how many first tokens a sliding KV cache must keep
(Table 2), and the log-perplexity of dense / window / sinks / recompute along a long text (Fig. 3).

Both run `workbench.streaming` on the fast path over the first `tokens` tokens of a novel; the
defaults cost well under a minute each on SmolLM2 (2 CPU cores). The report-size runs (>= 8k
tokens) are `sinkbench stream` commands (see workbench/streaming.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter

from workbench import models, streaming
from workbench.figures import style
from workbench.figures.registry import FigureContext, recipe
from workbench.results import Results

# One colour per policy in every streaming figure (Xiao Fig. 3's four curves).
POLICY_COLOURS = {"dense": style.PALETTE[0], "window": style.PALETTE[1], "sinks": style.PALETTE[2],
                  "recompute": style.PALETTE[3]}


def _long_text(ctx: FigureContext):
    model = ctx.model()
    params = ctx.params
    text = streaming.long_text(model, corpus=params["corpus"], document=params["document"],
                               max_tokens=params["tokens"])
    return model, text


def _text_label(results: Results) -> str:
    source = str(results.provenance.get("data_source", "")).replace("corpus:", "")
    return f"{source}, {results.provenance.get('n_tokens')} tokens"


def _perplexities(results: Results) -> pd.DataFrame:
    return results.filter(metric="perplexity").df


# --------------------------------------------------------------------------------------------------
# (a) Xiao Table 2: perplexity vs the number of sinks S, per cache size
# --------------------------------------------------------------------------------------------------


@recipe("streaming-sinks", title="Streaming perplexity vs number of initial tokens kept (S + (W - S) cache)",
        reproduces="Xiao et al. 2024 (StreamingLLM), Table 2",
        params={"tokens": 1024, "caches": [256, 512], "sinks": [0, 1, 2, 4, 8], "corpus": "austen",
                "document": "Emma", "chunk": 256},
        quick_params={"tokens": 96, "caches": [16, 32], "document": 0, "chunk": 32})
def streaming_sinks(ctx: FigureContext) -> Results:
    model, text = _long_text(ctx)
    params = ctx.params
    policies = [streaming.Sinks(s, w) for w in params["caches"] for s in params["sinks"]]
    return streaming.run(model, text, policies, chunk=params["chunk"], curve_bin=params["tokens"],
                         seed=ctx.seed, progress=False)


@streaming_sinks.plotter
def _(results: Results, ctx: FigureContext):
    frame = _perplexities(results)[["cache_size", "sinks", "recent", "value", "ci_low", "ci_high", "n"]]
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
    style.label(ax, "streaming perplexity", model=results.provenance.get("model"), text=_text_label(results))
    return fig, frame


@streaming_sinks.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = _perplexities(results)
    parts = []
    for cache, part in frame.groupby("cache_size"):
        values = ", ".join(f"S={s}: {v:.2f}" for s, v in zip(part["sinks"], part["value"]))
        parts.append(f"W={cache}: {values}")
    return (f"Perplexity of {results.provenance.get('model')} reading {_text_label(results)} through a KV cache of "
            f"W tokens that keeps the first S tokens and the last W - S (positions assigned inside the cache, "
            f"fast chunked path). {'; '.join(parts)}. Error bars: 95 % bootstrap over {streaming.CI_BLOCK}-token "
            "blocks.")


# --------------------------------------------------------------------------------------------------
# (b) Xiao Fig. 3: log-perplexity along the text
# --------------------------------------------------------------------------------------------------


@recipe("streaming-curves", title="Log-perplexity along a long text: dense, window, sinks, recompute",
        reproduces="Xiao et al. 2024 (StreamingLLM), Fig. 3",
        params={"tokens": 1024, "window": 256, "sinks": 4, "recompute_stride": 64, "curve_bin": 64,
                "corpus": "austen", "document": "Emma", "chunk": 256},
        quick_params={"tokens": 96, "window": 16, "sinks": 2, "recompute_stride": 4, "curve_bin": 8,
                      "document": 0, "chunk": 32})
def streaming_curves(ctx: FigureContext) -> Results:
    model, text = _long_text(ctx)
    params = ctx.params
    window, sinks = params["window"], params["sinks"]
    policies = [streaming.Window(window), streaming.Sinks(sinks, window), streaming.Recompute(window)]
    if len(text.sequences[0]) <= models.info(model).n_ctx:
        policies.insert(0, streaming.Dense())
    return streaming.run(model, text, policies, chunk=params["chunk"], recompute_stride=params["recompute_stride"],
                         curve_bin=params["curve_bin"], seed=ctx.seed, progress=False)


@streaming_curves.plotter
def _(results: Results, ctx: FigureContext):
    curves = results.filter(metric="nll").df
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
    style.label(ax, "log perplexity vs tokens", model=results.provenance.get("model"), text=_text_label(results))
    return fig, frame


@streaming_curves.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = _perplexities(results)
    values = ", ".join(f"{p}: {v:.2f}" for p, v in zip(frame["policy"], frame["value"]))
    strides = results.filter(metric="perplexity", policy="recompute").df
    stride = int(strides["stride"].iloc[0]) if len(strides) else None
    return (f"Mean NLL per bin of tokens of {results.provenance.get('model')} reading {_text_label(results)}; "
            f"perplexity over the whole text: {values}. Window and sinks keep positions inside the cache; "
            f"recompute re-encodes the last W tokens for every block of {stride} predictions.")
