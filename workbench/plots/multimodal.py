"""Visual attention sinks in a multimodal LM (Kang et al. 2025): where the text queries' attention goes in
S = [BOS] [V'] text, whether the visual sinks carry the LM's BOS sink dimensions, and what editing them does.

    >>> att = probes.mixed_attention(model, data)
    >>> act = probes.visual_sink_activations(model, data)
    >>> answers = interventions.multimodal.answer_accuracy(model, data, ["mask-visual-sinks", "var"])
    >>> fig, frame = visual_sinks_overview(att, act, answers)
"""

from __future__ import annotations

import pandas as pd

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require

KIND_COLOURS = {"bos": style.PALETTE[0], "visual-bg": style.PALETTE[7], "visual-obj": style.PALETTE[2],
                "question": style.PALETTE[3], "answer": style.PALETTE[4]}
GROUP_COLOURS = {"bos": style.PALETTE[0], "visual-sink": style.PALETTE[1], "visual-other": style.PALETTE[7],
                 "question": style.PALETTE[3]}


def _text(results: Results) -> str:
    prov = results.provenance
    return f"{prov.get('n_sequences')} generated scenes (seed {prov.get('data_seed')})"


def visual_sinks_overview(attention: Results, activations: Results, answers: Results):
    """Three panels: (a) the text queries' attention share per kind and layer (mean over heads, stacked), with the
    share on visual sinks as a line; (b) the sink-dimension ratio phi per layer for BOS, visual sinks, the other
    visual tokens and the question; (c) answer accuracy per question type under each intervention.
    Inputs: `probes.mixed_attention`, `probes.visual_sink_activations`, `interventions.multimodal.answer_accuracy`."""
    model = model_of(attention)
    shares = require(attention.df, "attention_share", "visual_sinks_overview")
    shares = shares.groupby(["layer", "kind"]).value.mean().reset_index()
    sink_share = require(attention.df, "visual_sink_share", "visual_sinks_overview")[["layer", "value"]]
    phi = require(activations.df, "sink_dim_ratio", "visual_sinks_overview")
    phi = phi[phi.group.isin(GROUP_COLOURS)][["layer", "group", "value"]]
    accuracy = require(answers.df, "accuracy", "visual_sinks_overview")[["intervention", "question", "value"]]

    fig, axes = style.new_figure("double", 3.3, ncols=3)
    ax = axes[0]
    bottom = None
    for kind, colour in KIND_COLOURS.items():
        values = shares[shares.kind == kind].set_index("layer").value
        base = 0 * values if bottom is None else bottom.reindex(values.index).fillna(0)
        ax.bar(values.index, values, bottom=base, color=colour, width=0.7, label=kind)
        bottom = base + values
    ax.plot(sink_share.layer, sink_share.value, "k--", marker="o", label="visual sinks")
    ax.set_xticks(sorted(shares.layer.unique()))
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer")
    ax.set_ylabel("share of the text queries' attention")
    ax.legend(fontsize=6, loc="upper right")
    style.label(ax, "(a) text queries' attention")

    ax = axes[1]
    for group, colour in GROUP_COLOURS.items():
        part = phi[phi.group == group]
        ax.plot(part.layer, part.value, marker="o", color=colour, label=group)
    ax.set_xticks(sorted(phi.layer.unique()))
    ax.set_xlabel("layer (residual after the block)")
    ax.set_ylabel("phi = max |x_d| over BOS sink dims / RMS(x)")
    ax.legend(fontsize=6)
    style.label(ax, f"(b) BOS sink dims (top {activations.provenance.get('top_dims')})")

    ax = axes[2]
    names = list(dict.fromkeys(accuracy.intervention))
    questions = list(dict.fromkeys(accuracy.question))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        part = accuracy[accuracy.intervention == name].set_index("question").value.reindex(questions)
        ax.bar([i + k * width for i in range(len(questions))], part.values, width=width, label=name,
               color=style.PALETTE[k % len(style.PALETTE)])
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(questions))], questions)
    ax.set_ylim(0, 1)
    ax.set_ylabel("answer accuracy (first answer token)")
    ax.legend(fontsize=5.5, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    style.label(ax, f"(c) answers (n={int(answers.df.n.max())})")
    fig.suptitle(f"visual attention sinks | {model} | {_text(attention)} | threshold "
                 f"{attention.provenance.get('threshold')}", fontsize=8, x=0.01, ha="left")
    frame = pd.concat([shares.assign(panel="a", metric="attention_share"),
                       sink_share.assign(panel="a", metric="visual_sink_share"),
                       phi.assign(panel="b", metric="sink_dim_ratio"),
                       accuracy.assign(panel="c", metric="accuracy")], ignore_index=True)
    return fig, frame
