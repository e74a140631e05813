"""The mitigation lab's toys (workbench.toy): does a sink on <s> form while they train?

    >>> fig, frame = emergence_curves(toy.emergence_results({v: f"runs/bb-{v}" for v in ("softmax", "relu")}))
"""

from __future__ import annotations

from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import require

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
    require(results.df, "bos_attention", "emergence_curves")
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

