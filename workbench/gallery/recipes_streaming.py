"""StreamingLLM figures (Xiao et al. 2024): how many first tokens a sliding KV cache must keep
(Table 2), and the log-perplexity of dense / window / sinks / recompute along a long text (Fig. 3).

Both run `workbench.streaming.stream_policies` on the fast path over the first `tokens` tokens of a
novel; the report-size runs (>= 8k tokens) are `sinkbench stream` commands.
"""

from __future__ import annotations

import pandas as pd

from workbench import plots, streaming, zoo
from workbench.core.results import Results
from workbench.gallery.registry import FigureContext, recipe


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
    return streaming.stream_policies(model, text, policies, chunk=params["chunk"], curve_bin=params["tokens"],
                                     seed=ctx.seed, progress=False)


@streaming_sinks.plotter
def _(results: Results, ctx: FigureContext):
    return plots.streaming_perplexity(results)


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
    if len(text.sequences[0]) <= zoo.info(model).n_ctx:
        policies.insert(0, streaming.Dense())
    return streaming.stream_policies(model, text, policies, chunk=params["chunk"],
                                     recompute_stride=params["recompute_stride"], curve_bin=params["curve_bin"],
                                     seed=ctx.seed, progress=False)


@streaming_curves.plotter
def _(results: Results, ctx: FigureContext):
    return plots.streaming_curves(results)


@streaming_curves.captioner
def _(results: Results, ctx: FigureContext) -> str:
    frame = _perplexities(results)
    values = ", ".join(f"{p}: {v:.2f}" for p, v in zip(frame["policy"], frame["value"]))
    strides = results.filter(metric="perplexity", policy="recompute", empty_ok=True)
    stride = int(strides.df["stride"].iloc[0]) if len(strides.rows) else None
    return (f"Mean NLL per bin of tokens of {results.provenance.get('model')} reading {_text_label(results)}; "
            f"perplexity over the whole text: {values}. Window and sinks keep positions inside the cache; "
            f"recompute re-encodes the last W tokens for every block of {stride} predictions.")
