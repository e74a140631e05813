"""Multimodal recipe: visual attention sinks in the small LLaVA trained here (Kang et al. 2025). The recipe probes
`shapes-llava` (trained on first use, deterministically, then cached) on generated scenes it has never seen; its
weights' checksum is part of the cache key, so retraining it recomputes the figure's Results.
"""

from __future__ import annotations

from workbench.core.results import Results
from workbench.gallery.identity import model_weights
from workbench.gallery.registry import FigureContext, recipe

MODEL = "shapes-llava"
PARTS = ("attention", "activations", "answers")


def _weights(ctx: FigureContext) -> dict[str, str | None]:
    return {MODEL: model_weights(MODEL)}


def _split(results: Results) -> dict[str, Results]:
    frame = results.df
    return {part: Results(frame[frame.part == part].drop(columns="part"), results.provenance["runs"][part])
            for part in PARTS}


@recipe("multimodal-visual-sinks", title="Visual attention sinks in a small LLaVA trained here",
        reproduces="Kang et al. 2025 (ICLR, arXiv 2503.03321): visual sink tokens, their sink dimensions, "
                   "masking them and VAR",
        params={"n": 128, "seed": 1, "threshold": 0.05, "p": 0.6, "rho": 0.5}, quick_params={"n": 32},
        model=MODEL, families=("causal-lm",), weights=_weights)
def visual_sinks(ctx: FigureContext) -> Results:
    import torch

    from interventions.multimodal import answer_accuracy
    from workbench import probes, zoo
    from workbench.multimodal import mixed_set

    zoo.fetch(MODEL)  # trained here on first use (about two minutes on 2 cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more OpenMP threads only spin on a busy machine
    try:
        model = ctx.model(MODEL)
        p = ctx.params
        data = mixed_set(model, n=p["n"], seed=p["seed"])
        runs = {
            "attention": probes.mixed_attention(model, data, threshold=p["threshold"], progress=False),
            "activations": probes.visual_sink_activations(model, data, threshold=p["threshold"], progress=False),
            "answers": answer_accuracy(model, data, ["none", f"mask-visual-sinks:threshold={p['threshold']}",
                                                     f"var:threshold={p['threshold']},p={p['p']},rho={p['rho']}"]),
        }
    finally:
        torch.set_num_threads(threads)
    rows = [{**row, "part": part} for part, result in runs.items() for row in result.rows]
    return Results(rows, {**runs["attention"].provenance, "runs": {k: v.provenance for k, v in runs.items()}})


@visual_sinks.plotter
def _(results: Results, ctx: FigureContext):
    from workbench.plots.multimodal import visual_sinks_overview

    parts = _split(results)
    return visual_sinks_overview(parts["attention"], parts["activations"], parts["answers"])


@visual_sinks.captioner
def _(results: Results, ctx: FigureContext) -> str:
    parts = _split(results)
    att, act, answers = (parts[k].df for k in PARTS)
    last = int(att.layer.max())
    share = att[(att.metric == "attention_share") & (att.layer == last)].groupby("kind").value.mean()
    sinks = att[(att["head"].isna()) & (att.layer == last)].groupby("metric").value.mean()
    phi = act[(act.metric == "sink_dim_ratio") & (act.layer == last)].set_index("group").value
    acc = answers[(answers.metric == "accuracy") & (answers.question == "all")].set_index("intervention").value
    threshold = parts["attention"].provenance.get("threshold")
    grew = sinks["visual_sink_fraction"] > 0
    verdict = (f"{100 * sinks['visual_sink_fraction']:.1f} % of the visual tokens are visual sinks (more than "
               f"{threshold} of the text queries' attention), {100 * sinks['visual_sink_share']:.1f} % of that "
               f"attention lands on them" if grew else
               f"no visual token receives more than {threshold} of the text queries' attention: the model grew no "
               "visual sink")
    return (f"shapes-llava (frozen shapes-vit tower, trained projector + 3-layer Llama), "
            f"{parts['attention'].provenance.get('n_sequences')} held-out scenes. At layer {last} the text queries "
            f"put {share.get('bos', float('nan')):.3f} of their attention on the text BOS, "
            f"{share.get('visual-bg', float('nan')):.3f} on background and {share.get('visual-obj', float('nan')):.3f} "
            f"on object visual tokens and {share.get('question', float('nan')):.3f} on the question; {verdict}. "
            f"Sink-dimension ratio phi at layer {last}: BOS {phi.get('bos', float('nan')):.2f}, visual sinks "
            f"{phi.get('visual-sink', float('nan')):.2f}, other visual tokens {phi.get('visual-other', float('nan')):.2f}"
            f" (Kang et al. find visual sinks carrying the BOS sink's massive dimensions; here "
            f"{'they do' if phi.get('visual-sink', 0) > 2 * phi.get('visual-other', 1) else 'they do not'}). "
            "Answer accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()) + ".")
