"""Long-context recipes (issue 14): sinks and their causal role against the context length T.

Passes whose attention pattern would not fit the memory budget run blockwise by themselves
(workbench.attention.plan), so these recipes reach T = 8192 on SmolLM2 in linear memory. Lengths stop at
the model's context and at `longest` (8192 by default; `longest_for` raises it per model: Qwen2.5-0.5B,
whose context is 32768, reads one window of 32768 tokens in sink-ratio-vs-length).
"""

from __future__ import annotations

from workbench import plots, probes
from workbench.core import data
from workbench.core.results import Results
from workbench.experiment import run
from workbench.gallery.registry import FigureContext, recipe
from workbench.probes.by_position import sink_by_position


def _lengths(ctx: FigureContext) -> list[int]:
    """The requested lengths that fit the model's context and its `longest` (per model), each >= 4 tokens."""
    model_info = ctx.model().sinkbench
    longest = ctx.params.get("longest_for", {}).get(model_info.name, ctx.params.get("longest", 8192))
    return [t for t in ctx.params["lengths"] if 4 <= t <= min(model_info.n_ctx, longest)]


def _windows(ctx: FigureContext, length: int):
    n = max(1, min(ctx.params["max_windows"], ctx.params["tokens"] // length))
    return data.corpus_windows(ctx.model(), ctx.params.get("corpus", "austen"), length, n)


def _stacked(parts: list[tuple[int, Results]]) -> Results:
    rows = [{**row, "T": length} for length, part in parts for row in part.rows]
    header = {**parts[-1][1].provenance, "lengths": [length for length, _ in parts],
              "n_sequences": {length: part.provenance.get("n_sequences") for length, part in parts}}
    return Results(rows, header)


@recipe("sink-ratio-vs-length", title="Sink ratio against context length", reproduces="Gu et al. 2025, Fig. 3",
        params={"lengths": [64, 512, 2048, 8192, 32768], "tokens": 2048, "max_windows": 8, "longest": 8192,
                "longest_for": {"qwen2.5-0.5b": 32768}},
        quick_params={"lengths": [16, 32, 64], "tokens": 64, "max_windows": 2})
def sink_ratio_vs_length(ctx: FigureContext) -> Results:
    model = ctx.model()
    return _stacked([(t, probes.sinks(model, _windows(ctx, t), eps=(0.3, 0.5, 0.8), progress=False))
                     for t in _lengths(ctx)])


@sink_ratio_vs_length.plotter
def _(results, ctx):
    return plots.sink_ratio_vs_length(results)


@sink_ratio_vs_length.captioner
def _(results, ctx):
    frame = results.filter(metric="sink_ratio", eps=0.3, layer=None).df.sort_values("T")
    values = ", ".join(f"T={int(t)}: {v:.3f}" for t, v in zip(frame["T"], frame["value"]))
    return (f"Share of heads of {results.provenance.get('model')} whose mean first-token attention exceeds eps, "
            f"for windows of austen of T tokens (BOS first; up to {ctx.params['tokens']} tokens per length, one "
            f"window at the longest). eps = 0.3: {values}. Long windows run through blockwise attention.")


@recipe("sink-by-position", title="Sink attention against query position",
        reproduces="Xiao et al. 2024 / Gu et al. 2025: the sink's share as the number of keys grows",
        params={"length": 4096, "bins": 40}, quick_params={"length": 64, "bins": 8})
def sink_by_position_recipe(ctx: FigureContext) -> Results:
    model = ctx.model()
    length = min(ctx.params["length"], model.sinkbench.n_ctx)
    windows = data.corpus_windows(model, ctx.params.get("corpus", "austen"), length, 1)
    return sink_by_position(model, windows, bins=ctx.params["bins"], progress=False)


@sink_by_position_recipe.plotter
def _(results, ctx):
    return plots.sink_position_profile(results)


@sink_by_position_recipe.captioner
def _(results, ctx):
    frame = results.df
    last = frame[frame["q_low"] == frame["q_low"].max()]
    first = frame[frame["q_low"] == frame["q_low"].min()]
    return (f"Attention to BOS averaged over heads, per query position (log-spaced bins), for selected layers of "
            f"{results.provenance.get('model')} reading one window of {results.provenance.get('window')} tokens of "
            f"austen. Mean over layers: {first['value'].mean():.3f} at the first positions, {last['value'].mean():.3f} "
            "at the last: if the sink's share grows with q, attention that has nowhere to go piles onto it "
            "(the sum-to-one account).")


@recipe("interventions-vs-length", title="Removing the sink against context length",
        reproduces="Gu et al. 2025 / Sun et al. 2024 causal tests, against T",
        params={"lengths": [128, 512, 2048], "tokens": 2048, "max_windows": 8},
        quick_params={"lengths": [16, 32], "tokens": 64, "max_windows": 2})
def interventions_vs_length(ctx: FigureContext) -> Results:
    model = ctx.model()
    return _stacked([(t, run(model, _windows(ctx, t), ["mask-sink", "zero-implicit-bias"], progress=False,
                             seed=ctx.seed)) for t in _lengths(ctx)])


@interventions_vs_length.plotter
def _(results, ctx):
    return plots.interventions_vs_length(results)


@interventions_vs_length.captioner
def _(results, ctx):
    frame = results.filter(metric="delta_loss").df.sort_values("T")
    parts = [f"{name}: " + ", ".join(f"T={int(t)} {v:+.3f}" for t, v in zip(p["T"], p["value"]))
             for name, p in frame.groupby("intervention")]
    return (f"Change of the next-token loss of {results.provenance.get('model')} when every query's attention to "
            f"BOS is masked (renormalised) or the sink term A[q,0]v_0 is removed, against the window length, 95 % "
            f"bootstrap intervals over windows. {'; '.join(parts)}.")
