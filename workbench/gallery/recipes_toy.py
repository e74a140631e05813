"""Figure recipes of the mitigation lab (workbench.toy): sinks emerging, or not, while toys train.

    >>> from workbench import gallery
    >>> gallery.build(["toy-emergence"], out="figures/")          # trains 7 small toys (cached), then plots

The full reproduction (`sinkbench train`, preset `default`, 1000 steps per variant) is for reports; this
recipe trains the reduced `figure` preset so that it fits in the figure build, and keeps each run under
out/data/toy-emergence/ so that a rebuild only re-plots. The checkpoints are part of the cache key: a
retrained run recomputes the figure's Results. `workbench.toy.emergence_results` gathers runs trained
elsewhere for the same plot (`workbench.plots.emergence_curves`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench import plots
from workbench.core.results import Results, identity_hash
from workbench.gallery.identity import file_weights
from workbench.gallery.registry import FigureContext, recipe


def runs(ctx: FigureContext) -> dict[str, Path]:
    """The run directory of each variant the recipe trains, named by what determines the run."""
    p = ctx.params
    found = {}
    for variant in p["variants"]:
        key = identity_hash({"preset": p["preset"], "seed": p["seed"], "corpus": p["corpus"], "variant": variant})
        found[variant] = ctx.out_dir / "data" / "toy-emergence" / f"{variant}-{key[:10]}"
    return found


def checkpoints(ctx: FigureContext) -> dict[str, str | None]:
    """The SHA-256 of each run's latest checkpoint (None before it is trained)."""
    from workbench.toy.checkpoint import WEIGHTS

    return {f"toy:{variant}": file_weights(directory / WEIGHTS) for variant, directory in runs(ctx).items()}


@recipe("toy-emergence", title="Attention-sink emergence on Bigram-Backcopy for seven attention variants",
        reproduces="Guo et al. 2024, Fig. 4(b) and the ReLU-attention dynamics (Attn_<s>, ||Val_<s>||, backcopy and "
                   "bigram risks); the mitigations of Gu et al. 2025 Tables 4 and 6, Qiu et al. 2025 (gated "
                   "attention), Miller 2023 (softmax+1) and gpt-oss (sink logits), on one seed",
        params={"preset": "figure", "steps": 400, "seed": 0, "corpus": "shakespeare",
                "variants": ["softmax", "softmax1", "sigmoid", "relu", "gated", "sink-logit", "kv-bias"]},
        quick_params={"preset": "tiny", "steps": 20},
        model="toy", weights=checkpoints)
def toy_emergence(ctx: FigureContext) -> Results:
    from workbench.toy.train import emergence_results, preset, train

    p = ctx.params
    directories = runs(ctx)
    for variant, directory in directories.items():
        model_cfg, train_cfg = preset(p["preset"], attention=variant, steps=p["steps"], seed=p["seed"],
                                      corpus=p["corpus"])
        train(directory, model_cfg, train_cfg, resume=True, progress=False, log=lambda _: None)
    results = emergence_results(directories)
    results.provenance["toy_preset"] = p["preset"]
    return results


@toy_emergence.plotter
def _plot(results: Results, ctx: FigureContext):
    return plots.emergence_curves(results)


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
