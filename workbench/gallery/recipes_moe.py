"""Sinks in Mixture-of-Experts models: is there a super expert, and does the sink need it?

    >>> from workbench import gallery
    >>> gallery.build(["moe-super-experts"], out="figures/")        # trains moe-toy-bb once (cached), then plots
    >>> res = prune_test(zoo.load("moe-toy-bb"), task.dataset(64))  # the causal test on any MoE model

Su et al. 2025 (arXiv 2507.23279) find a handful of experts whose outputs become the massive activations at the
sink; pruning them collapses the attention sink, while pruning as many random experts barely matters. No MoE
weights are reachable here, so the recipe runs the test on `moe-toy-bb`, a 2-layer MoE toy (8 ReLU experts per
layer, top-2) trained at setup on Bigram-Backcopy (`sinkbench models fetch moe-toy-bb`); `prune_test` runs
unchanged on the tiny OLMoE / Mixtral / Qwen2-MoE and on a local MoE model directory.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from workbench.core.errors import InputError, check_range
from workbench.core.results import Results, provenance
from workbench.gallery.identity import model_weights
from workbench.gallery.registry import FigureContext, recipe

TOY = "moe-toy-bb"


def _over_draws(values: list[float], seed: int) -> tuple[float, float, float]:
    """Mean and a 95 % percentile-bootstrap interval over independent draws (NaN interval for one draw)."""
    import torch

    from workbench.core.metrics import SequenceStats

    stats = SequenceStats.from_sequences(torch.tensor(values, dtype=torch.float64))
    return (stats.mean(), *stats.bootstrap_ci(seed=seed))


def prune_test(model: Any, data: Any, n_super: int = 1, draws: int = 10, seed: int = 0, mode: str = "renorm",
               batch_size: int = 16, progress: bool = False, threads: int | None = 1) -> Results:
    """Prune the top `n_super` super experts vs `draws` sets of as many random experts (other (layer, expert)
    pairs, drawn uniformly): attention to the sink per layer, |resid| at the sink on the massive dims per layer
    and the loss, before and after.

        >>> res = prune_test(model, data, n_super=1, draws=10)
        >>> res.filter(metric="sink_attention", condition="random").df       # the draws' mean and 95 % t-interval

    The super experts and the massive dims come from `probes.super_experts` on the unedited model (its
    `super_expert` ranking); every condition is then measured with the same dims. Rows: `condition` (baseline,
    super, random, random_draw), `pruned` (the (layer, expert) pairs), per layer `sink_attention` (mean over heads
    of the attention to the sink, `probes.sinks`' first_token_attention), `sink_massive` and `massive_ratio`
    (`probes.super_experts` with the baseline's dims), and `loss` (mean next-token loss, `experiment.run`).
    `threads`: torch's CPU threads while it runs (None: as they are); one by default, since the toys' small
    matrices gain nothing from more and extra OpenMP threads slow them down on a busy machine.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        check_range("threads", threads, 1, 1 << 10)
        torch.set_num_threads(threads)
    try:
        return _prune_test(model, data, n_super, draws, seed, mode, batch_size, progress)
    finally:
        torch.set_num_threads(before)


def _prune_test(model: Any, data: Any, n_super: int, draws: int, seed: int, mode: str, batch_size: int,
                progress: bool) -> Results:
    import interventions as iv
    from workbench import probes
    from workbench.core import sites
    from workbench.experiment import batch_hooks, run

    model_info = sites.require_experts(model, "prune_test")
    pairs_total = model_info.n_layers * model_info.n_experts
    check_range("n_super", n_super, 1, pairs_total - 1)
    check_range("draws", draws, 1, 10_000)
    if mode not in ("renorm", "zero"):
        raise InputError(f"prune_test: mode {mode!r}: use renorm or zero")
    ranked = probes.super_experts(model, data, top=n_super, batch_size=batch_size, progress=progress)
    dims = ranked.provenance["dims"]
    top = ranked.df[ranked.df.metric == "super_expert"].sort_values("rank")
    super_pairs = [(int(r.layer), int(r.expert)) for r in top.itertuples()]
    others = [(layer, expert) for layer in range(model_info.n_layers) for expert in range(model_info.n_experts)
              if (layer, expert) not in super_pairs]
    rng = np.random.default_rng([seed, 19])
    random_sets = [[others[i] for i in sorted(rng.choice(len(others), size=n_super, replace=False))]
                   for _ in range(draws)]

    def edit(pairs: list[tuple[int, int]]):
        parts = [iv.get("prune-expert", layers=layer, experts=expert, mode=mode) for layer, expert in pairs]
        return parts[0] if len(parts) == 1 else iv.Compose(tuple(parts))

    conditions = [("baseline", None, [])] + [("super", edit(super_pairs), super_pairs)] + \
        [("random_draw", edit(pairs), pairs) for pairs in random_sets]
    losses = run(model, data, [c[1] for c in conditions[1:]], metrics=("loss",), batch_size=batch_size,
                 progress=progress, experiment="moe-prune-test")
    loss_of = {row["intervention"]: row["value"] for row in losses if row["metric"] == "loss"}
    rows, measured = [], {}
    for draw, (condition, intervention, pairs) in enumerate(conditions):
        hooks, _ = batch_hooks(model, intervention, data)
        attention = probes.sinks(model, data, batch_size=batch_size, progress=progress, hooks=hooks).df
        attention = attention[attention.metric == "first_token_attention"].groupby("layer").value.mean()
        massive = probes.super_experts(model, data, dims=dims, batch_size=batch_size, progress=progress,
                                       hooks=hooks).df
        label = ";".join(f"L{layer}E{expert}" for layer, expert in pairs) or "none"
        values = {("loss", None): loss_of[str(intervention) if intervention is not None else "none"]}
        values.update({("sink_attention", int(layer)): float(v) for layer, v in attention.items()})
        for metric in ("sink_massive", "massive_ratio"):
            at = massive[massive.metric == metric]
            values.update({(metric, int(r.layer)): float(r.value) for r in at.itertuples()})
        measured[draw] = values
        for (metric, layer), value in values.items():
            rows.append({"experiment": "moe-prune-test", "model": model_info.name, "condition": condition,
                         "draw": draw - 2 if condition == "random_draw" else None, "pruned": label,
                         "metric": metric, "layer": layer, "head": None, "value": value})
    random_draws = [measured[i] for i in range(2, len(conditions))]
    for key in measured[0]:
        mean, low, high = _over_draws([values[key] for values in random_draws], seed)
        rows.append({"experiment": "moe-prune-test", "model": model_info.name, "condition": "random", "draw": None,
                     "pruned": f"{n_super} random", "metric": key[0], "layer": key[1], "head": None, "value": mean,
                     "n": draws, "ci_low": low, "ci_high": high})
    header = provenance("moe-prune-test", model, data, seed=seed, n_super=n_super, draws=draws, mode=mode,
                        super_experts=[f"L{layer}E{expert}" for layer, expert in super_pairs], dims=dims,
                        super_share=[float(s) for s in top.massive_share], random_sets=[
                            [f"L{layer}E{expert}" for layer, expert in pairs] for pairs in random_sets])
    return Results(rows, header)


def _weights(ctx: FigureContext) -> dict[str, str | None]:
    return {TOY: model_weights(TOY)}


@recipe("moe-super-experts", title="Super experts in an MoE toy: pruning them vs random experts",
        reproduces="Su et al. 2025 (Super Experts), Figs. 1-3 and Table 2 in miniature: the experts that write the "
                   "massive activations at the sink, and pruning them vs as many random experts",
        params={"n": 64, "n_super": 1, "draws": 10, "seed": 0}, quick_params={"n": 16, "draws": 3},
        model=TOY, weights=_weights)
def moe_super_experts(ctx: FigureContext) -> Results:
    from workbench import probes, zoo
    from workbench.toy.tasks import load_task
    from workbench.zoo.manifest import model_dir

    p = ctx.params
    zoo.fetch(TOY, log=lambda _: None)  # trained once at setup (deterministic, about a minute on 2 cores)
    model = zoo.load(TOY)
    data = load_task(model_dir(TOY)).dataset(p["n"], seed=p["seed"])
    tested = prune_test(model, data, n_super=p["n_super"], draws=p["draws"], seed=p["seed"])
    ranked = probes.super_experts(model, data, dims=tested.provenance["dims"], progress=False)
    routed = probes.routing(model, data, progress=False)
    rows = tested.rows + [{**r, "condition": "baseline"} for r in ranked.rows + routed.rows]
    return Results(rows, {**tested.provenance, "data": ranked.provenance.get("data")})


@moe_super_experts.plotter
def _plot(results: Results, ctx: FigureContext):
    from workbench.plots.moe import super_expert_pruning

    return super_expert_pruning(results)


@moe_super_experts.captioner
def _caption(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    prov = results.provenance

    def value(condition: str, metric: str, layer: Any = None) -> tuple[float, float, float]:
        at = frame[(frame.condition == condition) & (frame.metric == metric)]
        at = at[at.layer.isna()] if layer is None else at[at.layer == layer]
        row = at.iloc[0]
        return float(row.value), float(row.get("ci_low", math.nan)), float(row.get("ci_high", math.nan))

    attention = frame[(frame.condition == "baseline") & (frame.metric == "sink_attention")]
    sink_layer = int(attention.sort_values("value").iloc[-1].layer)
    parts = []
    for metric, layer, what in (("sink_attention", sink_layer, f"attention to <s> in layer {sink_layer}"),
                                ("sink_massive", 0, "|h_<s>| on the massive dims after layer 0"),
                                ("loss", None, "loss")):
        base, _, _ = value("baseline", metric, layer)
        pruned, _, _ = value("super", metric, layer)
        rand, low, high = value("random", metric, layer)
        parts.append(f"{what} {base:.3f} -> {pruned:.3f} (super) vs {rand:.3f} [{low:.3f}, {high:.3f}] (random)")
    return (f"{prov.get('model')}: the top super expert {', '.join(prov['super_experts'])} writes "
            f"{prov['super_share'][0]:.1%} of its layer's routed output on the sink's top dims {prov['dims']}. "
            f"Pruned (mode {prov['mode']}) vs {prov['draws']} random draws of as many experts (mean, 95 % "
            f"bootstrap interval over draws): " + "; ".join(parts) + ".")
