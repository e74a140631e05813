"""Survey-figure recipes for language models: the Interpretation axis (where attention goes, massive
activations, norms, the implicit bias) and its causal tests.

Each recipe = an experiment (compute, cached) + a plot from `workbench.plots` + a caption naming the paper
and figure it reproduces and the model and text it ran on.
"""

from __future__ import annotations

from workbench import plots, probes
from workbench.core import data
from workbench.core.results import Results
from workbench.experiment import attribution_sweep, run, sweep
from workbench.gallery.registry import FigureContext, recipe
from workbench.probes.activations import layer_snapshot


def _windows(ctx: FigureContext, window: int | None = None, n: int | None = None, **kw):
    model = ctx.model()
    return data.corpus_windows(model, ctx.params.get("corpus", "austen"), window or ctx.params["window"],
                               n or ctx.params["n"], **kw)


def _where(results: Results) -> str:
    prov = results.provenance
    source = str(prov.get("data_source", "")).replace("corpus:", "")
    return f"{prov.get('model')} on {source} ({prov.get('n_sequences')} windows of {prov.get('window')} tokens, " \
           f"BOS {'prepended' if prov.get('bos_policy') == 'bos' else 'absent'})"


# --------------------------------------------------------------------------------------------------


@recipe("attention-maps", title="Averaged attention maps", reproduces="Xiao et al. 2024 (StreamingLLM), Fig. 2",
        params={"window": 16, "n": 64}, quick_params={"n": 4})
def attention_maps(ctx: FigureContext) -> Results:
    model = ctx.model()
    n_layers = model.sinkbench.n_layers
    layers = sorted({0, 1, n_layers // 2, n_layers - 1})
    return probes.attention_maps(model, _windows(ctx), layers=layers, progress=False)


@attention_maps.plotter
def _(results, ctx):
    return plots.attention_heatmaps(results)


@attention_maps.captioner
def _(results, ctx):
    return (f"Attention averaged over heads and inputs for four layers of {_where(results)}; top linear, bottom "
            "log colour scale. Beyond the first layers the first column (the sink) lights up.")


@recipe("sink-grid", title="First-token attention per head", reproduces="Gu et al. 2025, Figs. 19-24 and Table 1",
        params={"window": 64, "n": 32}, quick_params={"n": 4})
def sink_grid(ctx: FigureContext) -> Results:
    return probes.sinks(ctx.model(), _windows(ctx), eps=(0.3, 0.5, 0.8), progress=False)


@sink_grid.plotter
def _(results, ctx):
    return plots.sink_grid(results)


@sink_grid.captioner
def _(results, ctx):
    ratio = results.value("sink_ratio", eps=0.3, layer=None)
    return (f"Mean attention to position 0 of every (layer, query head) of {_where(results)}, queries q >= 1. "
            f"Sink_1^0.3 = {ratio:.1%} of heads (Gu et al. report 92.5 % for LLaMA2-7B at T = 64).")


@recipe("depth-profile", title="Attention to the first token per layer",
        reproduces="Xiao et al. 2024 (StreamingLLM), Fig. 12", params={"window": 256, "n": 8},
        quick_params={"window": 32, "n": 2})
def depth_profile(ctx: FigureContext) -> Results:
    return probes.sinks(ctx.model(), _windows(ctx), progress=False)


@depth_profile.plotter
def _(results, ctx):
    return plots.depth_profile(results)


@depth_profile.captioner
def _(results, ctx):
    return (f"Attention from the last of {results.provenance.get('window')} tokens to token 0, per layer, mean and "
            f"std over heads, for {_where(results)}; the line is the mean over all queries q >= 1.")


@recipe("control-prompts", title="Sink ratio on natural, random and repeated tokens",
        reproduces="Gu et al. 2025, Table 1", params={"window": 64, "n": 16}, quick_params={"n": 2})
def control_prompts(ctx: FigureContext) -> Results:
    return probes.sink_ratio_controls(ctx.model(), window=ctx.params["window"], n=ctx.params["n"], seed=ctx.seed)


@control_prompts.plotter
def _(results, ctx):
    return plots.control_prompts(results)


@control_prompts.captioner
def _(results, ctx):
    frame = results.df
    pick = frame[frame.layer.isna() & (frame.bos == False)]  # noqa: E712
    values = {p: pick[pick.prompts == p].value.iloc[0] for p in set(pick.prompts)}
    return (f"Percentage of heads of {results.provenance.get('model')} whose first-token attention exceeds 0.3 on "
            f"{ctx.params['n']} sequences of {ctx.params['window']} tokens. Without BOS: natural "
            f"{values.get('natural', 0):.1%}, random {values.get('random', 0):.1%}, repeated "
            f"{values.get('repeated', 0):.1%} (Gu et al., LLaMA2-7B: 92.47 / 90.13 / 0.00 %). With BOS the first "
            "token is always BOS, so the sink survives the repeated-token control.")


@recipe("massive-activations-3d", title="Massive activations in one layer",
        reproduces="Sun et al. 2024, Fig. 1", params={"text": "Summer is warm. Winter is cold."})
def massive_3d(ctx: FigureContext) -> Results:
    return layer_snapshot(ctx.model(), ctx.params["text"])


@massive_3d.plotter
def _(results, ctx):
    return plots.massive_3d(results)


@massive_3d.captioner
def _(results, ctx):
    prov = results.provenance
    return (f"|residual stream| of {prov.get('model')} after layer {prov.get('layer')} for \"{prov.get('text')}\" "
            f"(BOS prepended), over its top-3 dimensions {prov.get('top_dims')} and nine random others; top / median "
            f"= {prov.get('top1_to_median', 0):.0f}.")


@recipe("massive-activations-layers", title="Top and median activation magnitude per layer",
        reproduces="Sun et al. 2024, Fig. 2", params={"window": 128, "n": 8}, quick_params={"window": 32, "n": 2})
def massive_layers(ctx: FigureContext) -> Results:
    return probes.massive_activations(ctx.model(), _windows(ctx), progress=False)


@massive_layers.plotter
def _(results, ctx):
    return plots.massive_layerwise(results)


@massive_layers.captioner
def _(results, ctx):
    top = results.df[results.df.metric == "top1"]
    peak = top.loc[top.value.idxmax()]
    return (f"Largest three and median |activation| of the residual stream after each layer of {_where(results)}. "
            f"Peak {peak.value:.0f} at layer {int(peak.layer)}, position {int(peak.position)} ({peak.token!r}), "
            f"dimension {int(peak.dim)}; first layer with a massive activation (|a| > 100 and >= 1000 x median): "
            f"{results.value('first_massive_layer')}.")


@recipe("norms", title="Attention weight vs norm-based contribution of the sink",
        reproduces="Kobayashi et al. 2020 (norm-based analysis)", params={"window": 64, "n": 16},
        quick_params={"n": 2})
def norms(ctx: FigureContext) -> Results:
    return probes.norms(ctx.model(), _windows(ctx), progress=False)


@norms.plotter
def _(results, ctx):
    return plots.norms(results)


@norms.captioner
def _(results, ctx):
    return (f"Left: value-vector norms of the sink (token 0) and of the other tokens per layer; right: the share "
            f"of attention the sink receives vs its share of ||A v W_O||, means over heads, for {_where(results)}. "
            "A high attention share with a low contribution share is the no-op signature.")


@recipe("implicit-bias-constancy", title="How constant the sink term is",
        reproduces="Sun et al. 2024, Fig. 8 / survey §4.3 (implicit attention bias)",
        params={"window": 64, "n": 16}, quick_params={"n": 2})
def implicit_bias_constancy(ctx: FigureContext) -> Results:
    return probes.implicit_bias(ctx.model(), _windows(ctx), progress=False)


@implicit_bias_constancy.plotter
def _(results, ctx):
    return plots.implicit_bias_constancy(results)


@implicit_bias_constancy.captioner
def _(results, ctx):
    dev = results.df[results.df.metric == "sink_value_max_deviation_relative"].value.max()
    return (f"Left: RMS coefficient of variation, over queries and inputs, of the sink term A[q,0] v_0 W_O "
            f"(median over heads) vs the same term for token 1; right: its size relative to the head output; "
            f"{_where(results)}. The BOS value vector differs across inputs by at most {dev:.1e} (relative).")


@recipe("implicit-bias-test", title="Causal test of the implicit attention bias",
        reproduces="survey §4.3 causal test; Sun et al. 2024, Table 3", params={"window": 128, "n": 8},
        quick_params={"window": 32, "n": 2})
def implicit_bias_test(ctx: FigureContext) -> Results:
    entries = ["zero-implicit-bias", "mean-implicit-bias", "zero-sink-value", "mean-sink-value", "mask-sink",
               "scale-sink", "softmax-plus-one", "massive-activations", "massive-activations:mode=mean"]
    # (defaults: scale-sink gamma=0.5, massive-activations mode=zero; a label shows only parameters given)
    model = ctx.model()
    if ctx.quick:
        entries = entries[:5]
    return run(model, _windows(ctx), entries, progress=False, seed=ctx.seed)


_LABELS = {"zero-implicit-bias": "zero the sink term A[q,0]v_0",
           "mean-implicit-bias": "replace it by its mean (constant)",
           "zero-sink-value": "v_0 := 0",
           "mean-sink-value": "v_0 := mean(v_0)",
           "mask-sink": "mask the sink, renormalise",
           "scale-sink": "scale the sink by 0.5, renormalise",
           "softmax-plus-one": "softmax+1 in every head",
           "massive-activations": "massive activations at BOS := 0",
           "massive-activations(mode='mean')": "massive activations at BOS := mean"}


@implicit_bias_test.plotter
def _(results, ctx):
    return plots.intervention_effects(results, order=list(_LABELS), labels=_LABELS)


@implicit_bias_test.captioner
def _(results, ctx):
    def delta(key: str) -> str:
        rows = results.filter(metric="delta_loss", intervention=key, empty_ok=True).rows
        return f"{rows[0]['value']:+.3f}" if rows else "n/a"

    zero, mean = delta("zero-implicit-bias"), delta("mean-implicit-bias")
    massive_zero, massive_mean = delta("massive-activations"), delta("massive-activations(mode='mean')")
    return (f"Change of the next-token loss (baseline {results.value('loss', intervention='none'):.3f}) under each "
            f"intervention on every layer and head of {_where(results)}, 95 % bootstrap intervals over sequences. "
            f"Zeroing the sink term: {zero}; replacing it by a constant: {mean}; massive activations zeroed: "
            f"{massive_zero}, set to their mean: {massive_mean}.")


@recipe("dormant-heads", title="Active and dormant heads",
        reproduces="Guo et al. 2024 (Active-Dormant attention), LLM head interventions",
        params={"window": 48, "n": 2}, quick_params={"window": 16, "n": 1})
def dormant_heads(ctx: FigureContext) -> Results:
    model = ctx.model()
    dataset = _windows(ctx)
    scores = probes.sinks(model, dataset, eps=(0.3,), progress=False)
    ablation = sweep(model, dataset, "zero-head", over="head", progress=False, rows_per_forward=16)
    tagged = [{**r, "part": "sinks"} for r in scores] + [{**r, "part": "ablation"} for r in ablation]
    return Results(tagged, {**ablation.provenance, "sink_probe_seconds": scores.provenance.get("wall_seconds")})


@dormant_heads.plotter
def _(results, ctx):
    return plots.dormant_heads(results.filter(part="sinks"), results.filter(part="ablation"))


@dormant_heads.captioner
def _(results, ctx):
    return (f"Each point is one head of {_where(results)}: its mean attention on token 0 against the change of the "
            "loss when its output is zeroed. Sink-dominated heads cluster near zero effect (dormant).")


@recipe("implicit-bias-heads", title="Which heads' sink term matters (attribution estimate)",
        reproduces="survey §4.3 per-head causal test, estimated by attribution patching (Nanda 2023)",
        params={"window": 64, "n": 8}, quick_params={"window": 16, "n": 2})
def implicit_bias_heads(ctx: FigureContext) -> Results:
    estimate = attribution_sweep(ctx.model(), _windows(ctx), "zero-implicit-bias", progress=False)
    return Results([{**r, "metric": "delta_loss"} for r in estimate], estimate.provenance)


@implicit_bias_heads.plotter
def _(results, ctx):
    return plots.sweep_heatmap(results)


@implicit_bias_heads.captioner
def _(results, ctx):
    return (f"First-order estimate (gradient x difference, one forward and backward pass) of the loss change when "
            f"each head's sink term A[q,0] v_0 is removed, {_where(results)}. See bench/ for its rank correlation "
            "with the exact per-head sweep.")


@recipe("attribution-vs-exact", title="Attribution patching vs the exact per-head sweep",
        reproduces="Kramár et al. 2024 (AtP*), Fig. 1 style: estimate vs activation patching per node",
        params={"window": 64, "n": 4, "intervention": "mask-sink", "mode": "ig"},
        quick_params={"window": 16, "n": 2})
def attribution_vs_exact(ctx: FigureContext) -> Results:
    model, windows = ctx.model(), _windows(ctx)
    name, mode = ctx.params["intervention"], ctx.params["mode"]
    estimate = attribution_sweep(model, windows, name, progress=False, mode=mode)
    exact = sweep(model, windows, name, over="head", metrics=("delta_loss",), progress=False)
    rows = [{**r, "part": "estimate"} for r in estimate] + [{**r, "part": "exact"} for r in exact]
    return Results(rows, {**exact.provenance, "mode": mode, "cost": estimate.provenance["cost"],
                          "attribution_wall_seconds": estimate.provenance["wall_seconds"]})


@attribution_vs_exact.plotter
def _(results, ctx):
    return plots.attribution_scatter(results.filter(part="estimate"), results.filter(part="exact"))


@attribution_vs_exact.captioner
def _(results, ctx):
    from workbench.experiment.attribution import compare

    estimate = results.filter(part="estimate")
    k = min(10, len(estimate))
    scores = compare(estimate, results.filter(part="exact"), k=k)
    return (f"Each point is one head of {_where(results)}: the {scores['mode']} estimate of the loss change when "
            f"{ctx.params['intervention']} acts on that head alone, against the exact change (one forward pass per "
            f"head). Spearman {scores['spearman']:.2f}, top-{k} recall {scores[f'top{k}_recall']:.1f}, at "
            f"{scores['cost_fb']:g} forward+backward equivalents instead of {scores['exact_fb']} forward passes.")


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------


@recipe("encoder-sinks", title="Where a BERT encoder's sink sits", model="minilm-l6", families=("encoder",),
        reproduces="Clark et al. 2019, Fig. 2; Kobayashi et al. 2020", params={"window": 48, "n": 16},
        quick_params={"n": 2})
def encoder_sinks(ctx: FigureContext) -> Results:
    model = ctx.model()
    dataset = data.corpus_windows(model, "austen", ctx.params["window"], ctx.params["n"])
    return probes.special_token_attention(model, dataset)


@encoder_sinks.plotter
def _(results, ctx):
    return plots.special_tokens(results)


@encoder_sinks.captioner
def _(results, ctx):
    frame = results.df
    mean = frame.groupby("target").value.mean()
    return (f"Per-head attention of {_where(results)} to [CLS], [SEP], '.' and ',' (summed over occurrences, "
            f"queries that are not the token itself); lines are layer means. Mean over all heads: "
            + ", ".join(f"{k} {v:.2f}" for k, v in mean.items())
            + ". Clark et al. find BERT-base's middle layers on [SEP]; this distilled model sinks on [CLS].")
