"""Figure recipes of the mitigation lab (workbench.toy): sinks emerging, or not, while toys train.

    >>> from workbench import figures
    >>> figures.build(["toy-emergence"], out="figures/")          # trains 7 small toys (cached), then plots

The full reproduction (`sinkbench train`, preset `default`, 1000 steps per variant) is for reports; this
recipe trains the reduced `figure` preset so that it fits in the figure build (about a minute of CPU on one
core for all seven variants, measured 57 s), and keeps each run under out/data/toy-emergence/ so that a
rebuild only re-plots. `emergence_results` gathers runs trained elsewhere for the same plot.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.figures.registry import FigureContext, recipe
from workbench.results import Results, identity_hash

# (metric, panel title, y label, log y)
_PANELS = [
    ("bos_attention", "Attn_<s>: weight on <s>", "mean over bigram positions", False),
    ("bos_share", "share of each row's weight on <s>", "mean over bigram positions", False),
    ("backcopy_risk", "backcopy risk", "cross-entropy (nats)", True),
    ("bigram_risk", "bigram excess risk", "KL(true || model) (nats)", True),
    ("v_bos_norm", "value-state norm ||v_<s>||", "L2 norm", True),
    ("resid_bos_norm", "residual norm ||h_<s>|| (last layer)", "L2 norm", True),
]


@recipe("toy-emergence", title="Attention-sink emergence on Bigram-Backcopy for seven attention variants",
        reproduces="Guo et al. 2024, Fig. 4(b) and the ReLU-attention dynamics (Attn_<s>, ||Val_<s>||, backcopy and "
                   "bigram risks); the mitigations of Gu et al. 2025 Tables 4 and 6, Qiu et al. 2025 (gated "
                   "attention), Miller 2023 (softmax+1) and gpt-oss (sink logits), on one seed",
        params={"preset": "figure", "steps": 400, "seed": 0, "corpus": "shakespeare",
                "variants": ["softmax", "softmax1", "sigmoid", "relu", "gated", "sink-logit", "kv-bias"]},
        quick_params={"preset": "tiny", "steps": 20},
        model="toy")
def toy_emergence(ctx: FigureContext) -> Results:
    from workbench.toy.train import preset, train

    p = ctx.params
    runs = {}
    for variant in p["variants"]:
        model_cfg, train_cfg = preset(p["preset"], attention=variant, steps=p["steps"], seed=p["seed"],
                                      corpus=p["corpus"])
        key = identity_hash({"preset": p["preset"], "seed": p["seed"], "corpus": p["corpus"], "variant": variant})
        runs[variant] = ctx.out_dir / "data" / "toy-emergence" / f"{variant}-{key[:10]}"
        train(runs[variant], model_cfg, train_cfg, resume=True, progress=False, log=lambda _: None)
    results = emergence_results(runs)
    results.provenance["toy_preset"] = p["preset"]
    return results


def emergence_results(runs: dict[str, str | Path]) -> Results:
    """The summary curves (rows without layer/head) of finished toy runs, one per variant, as one Results;
    what the figure plots. Also for runs trained elsewhere:

        >>> res = emergence_results({v: f"runs/bb-{v}-s0" for v in ("softmax", "relu")})
    """
    rows, described = [], {}
    header: dict = {}
    for variant, directory in runs.items():
        results = Results.load(Path(directory) / "results.json")
        rows += [r for r in results if r["layer"] is None]
        prov = results.provenance
        described[variant] = {"directory": str(directory), "weights_sha256": prov.get("model_weights_sha256"),
                              "variant": prov.get("variant")}
        header = {k: prov.get(k) for k in ("packages", "python", "git_commit", "git_dirty", "seed")}
        header.update(toy_config={k: v for k, v in prov["toy_config"].items() if k != "attention"},
                      train_config=prov["train_config"])
    header.update(experiment="toy-emergence", model="toy", runs=described)
    return Results(rows, header)


@toy_emergence.plotter
def _plot(results: Results, ctx: FigureContext):
    from workbench.figures import style

    frame = results.df
    frame = frame[frame["metric"].isin([m for m, *_ in _PANELS])][["variant", "step", "metric", "value"]]
    variants = list(dict.fromkeys(frame["variant"]))
    fig, axes = style.new_figure("double", height=5.6, nrows=2, ncols=3, sharex=True)
    for ax, (metric, title, ylabel, log) in zip(axes.flat, _PANELS):
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
    fig.suptitle(f"Bigram-Backcopy toy ({cfg.get('n_layers')} layer x {cfg.get('n_heads')} head, d_model "
                 f"{cfg.get('d_model')}, T={cfg.get('n_ctx')}), seed {prov.get('seed')}: does a sink on <s> form?",
                 fontsize=8.5)
    return fig, frame.reset_index(drop=True)


@toy_emergence.captioner
def _caption(results: Results, ctx: FigureContext) -> str:
    frame = results.df
    bos = frame[frame["metric"] == "bos_attention"]
    parts = []
    for variant, curve in bos.groupby("variant", sort=False):
        curve = curve.sort_values("step")
        crossed = curve[curve["value"] >= 0.5]
        when = f", >= 0.5 from step {int(crossed['step'].iloc[0])}" if len(crossed) else ""
        parts.append(f"{variant} {curve['value'].iloc[-1]:.2f}{when}")
    steps = int(pd.to_numeric(bos["step"]).max())
    return ("Seven attention variants trained on the same Bigram-Backcopy batches (same seed, same initial "
            "weights where the parameters coincide). Attn_<s> is the mean attention weight on <s> from queries "
            f"whose token is not a trigger (sigmoid's raw weights start near sigmoid(0) = 0.5 on every key, so its "
            f"share panel is the comparable one). Attn_<s> after {steps} steps: " + "; ".join(parts) + ".")
