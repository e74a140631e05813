"""The plots: every plot function renders from a small Results fixture, names its model, writes the CSV of
exactly what it plots, and matches its baseline image.

Refresh the baseline images after an intended change of a plot:
    SINKBENCH_REFRESH_FIGURES=1 .venv/bin/pytest tests/unit/test_plots.py
"""

import inspect
import os
from pathlib import Path

import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

from workbench import plots
from workbench.core.errors import InputError
from workbench.core.results import Results
from workbench.plots import style

BASELINE = Path(__file__).parents[1] / "figures" / "baseline"
# RMS difference (0-255 scale) tolerated between a rendering and its baseline: anti-aliasing noise only.
TOLERANCE = 2.0
PROV = {"model": "fixture-lm", "data_source": "corpus:austen", "window": 16, "n_sequences": 4, "bos_policy": "bos"}
VITS = ["fixture-vit", "fixture-vit-reg4"]
VIT_PROV = {"model": VITS[0], "models": VITS, "n_images": 3, "data_seed": 1, "image_size": [16, 16]}


def sinks_fixture(layers=6, heads=4):
    rng = np.random.default_rng(0)
    rows = []
    for layer in range(layers):
        for head in range(heads):
            score = float(np.clip(0.15 * layer + 0.1 * rng.standard_normal(), 0, 1))
            rows.append({"metric": "first_token_attention", "layer": layer, "head": head, "value": score})
            rows.append({"metric": "last_token_attention", "layer": layer, "head": head, "value": score * 0.9})
    scores = np.array([r["value"] for r in rows if r["metric"] == "first_token_attention"])
    rows.append({"metric": "sink_ratio", "eps": 0.3, "layer": None, "head": None, "value": float((scores > 0.3).mean())})
    rows.append({"metric": "uniform_attention", "layer": None, "head": None, "value": 0.1})
    return Results(rows, PROV)


def maps_fixture():
    rows = []
    for layer in (0, 3):
        for q in range(8):
            for k in range(q + 1):
                value = (0.7 if k == 0 and layer == 3 else 0.0) + (0.3 if layer == 3 else 1.0) / (q + 1)
                rows.append({"metric": "attention", "layer": layer, "head": 0, "q": q, "k": k, "value": value})
    return Results(rows, PROV)


def massive_fixture():
    rows = []
    for layer in range(6):
        big = 5.0 if layer < 2 else 2000.0
        rows += [{"metric": "top1", "layer": layer, "value": big, "position": 0, "token": "<bos>", "dim": 7},
                 {"metric": "top2", "layer": layer, "value": big / 2, "position": 0, "token": "<bos>", "dim": 3},
                 {"metric": "top3", "layer": layer, "value": 4.0, "position": 5, "token": ".", "dim": 1},
                 {"metric": "median", "layer": layer, "value": 0.5 + 0.1 * layer}]
    rows.append({"metric": "first_massive_layer", "layer": None, "value": 2})
    return Results(rows, PROV)


def snapshot_fixture():
    rows = []
    for position, token in enumerate(["<bos>", "Summer", " is", " warm", "."]):
        for dim in (1, 4, 7, 9):
            value = 900.0 if (position == 0 and dim == 7) else 300.0 if (position == 4 and dim == 4) else 1.0 + dim * 0.1
            rows.append({"metric": "abs_activation", "layer": 2, "position": position, "token": token, "dim": dim,
                         "value": value})
    return Results(rows, PROV)


def norms_fixture():
    rows = []
    for layer in range(6):
        for head in range(2):
            values = {"value_norm_sink": 0.5, "value_norm_other": 3.0 + layer * 0.2,
                      "attention_share_sink": 0.1 * layer, "contribution_share_sink": 0.05 * layer,
                      "sink_term_cv": 0.3 / (layer + 1), "null_term_cv": 2.0, "sink_term_share": 0.1 * layer}
            rows += [{"metric": m, "layer": layer, "head": head, "value": v} for m, v in values.items()]
    return Results(rows, PROV)


def run_fixture():
    rows = [{"intervention": "none", "metric": "loss", "value": 3.5, "ci_low": 3.2, "ci_high": 3.8}]
    for name, value in (("zero-implicit-bias", 0.35), ("mean-implicit-bias", 0.12), ("mask-sink", -0.01)):
        rows.append({"intervention": name, "metric": "delta_loss", "value": value, "ci_low": value - 0.05,
                     "ci_high": value + 0.05})
    return Results(rows, PROV)


def sweep_fixture():
    rows = [{"intervention": f"zero-head@L{layer}H{h}", "metric": "delta_loss", "layer": layer, "head": h,
             "value": 0.02 * (h - 1) * (layer + 1)} for layer in range(6) for h in range(4)]
    return Results(rows, {**PROV, "experiment": "sweep:zero-head:head"})


def control_fixture():
    rows = []
    for prompts, value in (("natural", 0.8), ("random", 0.75), ("repeated", 0.0)):
        for bos in (True, False):
            rows.append({"metric": "sink_ratio", "eps": 0.3, "layer": None, "value": value if not bos else 0.6,
                         "prompts": prompts, "bos": bos})
    return Results(rows, PROV)


def special_fixture():
    rows = [{"metric": "sink_attention", "layer": layer, "head": h, "target": target,
             "value": (0.5 if target == "[CLS]" else 0.05) + 0.01 * h}
            for target in ("[CLS]", "[SEP]", "'.'") for layer in range(4) for h in range(3)]
    return Results(rows, PROV)


def layer_sweep_fixture():
    rows = [{"intervention": f"{name}@L{layer}", "metric": "delta_loss", "layer": layer, "value": scale * layer,
             "ci_low": scale * layer - 0.01, "ci_high": scale * layer + 0.01}
            for name, scale in (("zero-implicit-bias", 0.02), ("mean-implicit-bias", 0.005)) for layer in range(6)]
    return Results(rows, PROV)


def streaming_fixture():
    rows = []
    for policy, sinks, window, ppl in (("dense", 0, None, 20.0), ("window", 0, 8, 60.0), ("sinks", 4, 8, 22.0)):
        rows.append({"metric": "perplexity", "policy": policy, "sinks": sinks, "window": window, "value": ppl,
                     "ci_low": ppl * 0.9, "ci_high": ppl * 1.1, "n": 64})
        for start in range(0, 64, 16):
            jump = 1.0 if (policy == "window" and start >= 8) else 0.0
            rows.append({"metric": "nll", "policy": policy, "sinks": sinks, "window": window, "position_start": start,
                         "position": start + 16, "value": np.log(ppl) - 0.3 + jump * 0.5 + 0.01 * start, "n": 16})
    return Results(rows, {**PROV, "n_tokens": 64})


def sinks_table_fixture():
    rows = [{"metric": "perplexity", "policy": "sinks", "cache_size": cache, "sinks": s, "recent": cache - s,
             "value": value, "ci_low": value * 0.95, "ci_high": value * 1.05, "n": 512}
            for cache, scale in ((16, 1.0), (32, 0.9))
            for s, value in ((0, 60.0 * scale), (1, 34.0 * scale), (2, 33.5 * scale), (4, 33.4 * scale))]
    return Results(rows, {**PROV, "n_tokens": 512})


def quant_rows(family, configs, base=20.0):
    """quantization.report-shaped rows: (bits, granularity, keep, perplexity, d_sink or None) per configuration."""
    rows = [{"intervention": "none", "metric": m, "value": v, "ci_low": v * 0.98, "ci_high": v * 1.02}
            for m, v in (("loss", np.log(base)), ("perplexity", base))]
    for bits, granularity, keep, ppl, d_sink in configs:
        columns = {"intervention": f"{family}:{bits}:{granularity}:{keep}", "family": family, "bits": bits,
                   "granularity": granularity, "keep": keep, "site": "kv" if family == "kv" else "linear",
                   "destroyed": ppl > 10 * base}
        delta = float(np.log(ppl) - np.log(base))
        rows += [{**columns, "metric": "perplexity", "value": ppl, "ci_low": ppl * 0.95, "ci_high": ppl * 1.05},
                 {**columns, "metric": "delta_loss", "value": delta, "ci_low": delta - 0.02, "ci_high": delta + 0.02}]
        if d_sink is not None:
            rows.append({**columns, "metric": "d_sink", "value": d_sink, "ci_low": d_sink - 0.03,
                         "ci_high": d_sink + 0.03})
    return Results(rows, PROV)


def quant_kv_fixture():
    table = {"none": (400.0, 35.0, 22.0, 20.05), "bos": (150.0, 32.0, 21.5, 20.04), "first:4": (120.0, 31.0, 21.4, 20.04)}
    configs = []
    for keep, ppls in table.items():
        for bits, ppl, none in zip((2, 3, 4, 8), ppls, table["none"]):
            configs.append((bits, "per-token", keep, ppl, None if keep == "none" else float(np.log(none / ppl))))
    return quant_rows("kv", configs)


def quant_activations_fixture():
    configs = [(8, "per-tensor", "none", 900.0, None), (8, "per-tensor", "bos", 30.0, 3.4),
               (8, "per-token", "none", 21.0, None), (8, "per-token", "bos", 20.8, 0.01),
               (4, "per-tensor", "none", 5000.0, None), (4, "per-tensor", "bos", 400.0, 2.5),
               (4, "per-token", "none", 60.0, None), (4, "per-token", "bos", 45.0, 0.29)]
    return quant_rows("activations", configs)


def attribution_fixture():
    exact = sweep_fixture()
    exact.provenance["attribution_spearman"] = 0.9
    estimate = Results([{"metric": "attribution_delta_loss", "layer": r["layer"], "head": r["head"],
                         "value": r["value"] * 0.8 + 0.001 * r["head"]} for r in sweep_fixture()], PROV)
    return estimate, exact


def emergence_fixture():
    rows = []
    for variant, final in (("softmax", 0.9), ("relu", 0.05), ("sink-logit", 0.1)):
        for step in range(0, 101, 20):
            grow = final * step / 100
            values = {"bos_attention": grow, "bos_share": grow, "backcopy_risk": 3.0 / (1 + step),
                      "bigram_risk": 1.0 / (1 + step) + 0.01, "v_bos_norm": 10 - 9 * grow, "resid_bos_norm": 20 + step}
            rows += [{"metric": m, "variant": variant, "step": step, "layer": None, "head": None, "value": v}
                     for m, v in values.items()]
    return Results(rows, {**PROV, "seed": 0, "toy_config": {"n_layers": 1, "n_heads": 1, "d_model": 64, "n_ctx": 32}})


def vit_kinds_fixture():
    rows = []
    for name in VITS:
        kinds = ["[CLS]", "background", "object"] + (["registers"] if name.endswith("reg4") else [])
        for layer in range(4):
            for head in range(2):
                for metric in ("attention_share", "cls_attention_share"):
                    weights = np.array([1.0 + layer * (k == "registers") + 0.5 * (k == "background") + 0.1 * head
                                        + 0.2 * (metric == "cls_attention_share") * (k == "object") for k in kinds])
                    rows += [{"metric": metric, "model": name, "layer": layer, "head": head, "kind": k, "value": v}
                             for k, v in zip(kinds, weights / weights.sum())]
    return Results(rows, VIT_PROV)


def vit_maps_fixture(metric):
    rows = []
    for name in VITS:
        registers = 4 if name.endswith("reg4") else 0
        for image in (0, 2):
            tokens = [("[CLS]", None, None)] + [(f"[REG{i}]", None, None) for i in range(registers)]
            tokens += [("patch", r, c) for r in range(4) for c in range(4)]
            for position, (token, row, col) in enumerate(tokens):
                value = 0.3 if token != "patch" else 0.05 + 0.02 * (row + col) + 0.1 * (image == 2) * (row == 0)
                rows.append({"metric": metric, "model": name, "image": image, "layer": 3, "position": position,
                             "token": token, "row": row, "col": col, "value": value})
    return Results(rows, VIT_PROV)


def vit_images():
    ramp = np.linspace(0.1, 0.9, 16)
    pixels = np.stack([np.stack([np.add.outer(ramp, ramp * k) / (1 + k) for _ in range(3)], axis=-1)
                       for k in range(3)])  # [3, 16, 16, 3] in [0, 1]
    return pixels, ["square", "circle", "ring"]


def vit_histogram_fixture():
    rows = []
    edges = np.geomspace(1.0, 100.0, 9)
    for name in VITS:
        for layer in (0, 1):
            centre = 3 + 2 * layer + (name.endswith("reg4"))
            for b in range(8):
                count = float(max(0, 40 - 12 * abs(b - centre)))
                rows.append({"metric": "norm_histogram", "model": name, "layer": layer, "bin": b,
                             "bin_low": edges[b], "bin_high": edges[b + 1], "value": count})
            if name.endswith("reg4"):
                rows.append({"metric": "norm_mean", "model": name, "layer": layer, "kind": "registers",
                             "value": 20.0 + 10 * layer})
    return Results(rows, VIT_PROV)


def length_fixture():
    rows = []
    for t in (64, 512, 2048, 8192):
        for eps, base in ((0.3, 0.8), (0.5, 0.4), (0.8, 0.1)):
            rows.append({"metric": "sink_ratio", "eps": eps, "layer": None, "head": None, "T": t,
                         "value": min(1.0, base + 0.02 * np.log2(t / 64))})
        for name, effect in (("mask-sink", -0.01), ("zero-implicit-bias", 0.35)):
            value = effect * (1 + 0.1 * np.log2(t / 64))
            rows.append({"metric": "delta_loss", "intervention": name, "T": t, "value": value,
                         "ci_low": value - 0.02, "ci_high": value + 0.02})
    return Results(rows, PROV)


def position_fixture():
    rows = []
    edges = [1, 2, 4, 8, 16, 32, 64]
    for layer in range(6):
        for low, high in zip(edges[:-1], edges[1:]):
            rows.append({"metric": "sink_attention_by_position", "layer": layer, "q_low": low, "q_high": high,
                         "n": high - low, "value": min(1.0, 0.1 * layer * np.log2(high))})
    return Results(rows, PROV)


def position_zero_fixture():
    rows = []
    for model, firsts in (("fixture-lm", ["text's own", "'<s>' (BOS)", "'\\n' (newline)"]),
                          ("fixture-qwen", ["text's own", "'<|endoftext|>' (BOS)"])):
        for i, first in enumerate(firsts):
            ratio = 0.05 if "endoftext" in first else 0.5 + 0.1 * i
            rows += [{"metric": "sink_ratio", "model": model, "first": first, "first_id": i or None, "value": ratio,
                      "ci_low": None, "ci_high": None},
                     {"metric": "loss", "model": model, "first": first, "first_id": i or None, "value": 3.0 + ratio,
                      "ci_low": 2.9 + ratio, "ci_high": 3.1 + ratio}]
    return Results(rows, {**PROV, "models": ["fixture-lm", "fixture-qwen"], "bos_policy": "varied"})


def moe_pruning_fixture():
    rows = [{"metric": "massive_share", "condition": "baseline", "layer": layer, "expert": expert,
             "value": 0.9 if (layer, expert) == (0, 1) else 0.03} for layer in (0, 1) for expert in range(4)]
    values = {"sink_attention": (0.67, 0.47, 0.66), "sink_massive": (18.6, 4.0, 18.5), "loss": (1.83, 1.88, 1.90)}
    for metric, (base, pruned, random) in values.items():
        layers = (0, 1) if metric == "sink_attention" else ((0,) if metric == "sink_massive" else (None,))
        for layer in layers:
            scale = 0.5 if layer == 0 and metric == "sink_attention" else 1.0
            for condition, value in (("baseline", base), ("super", pruned), ("random", random)):
                rows.append({"metric": metric, "layer": layer, "condition": condition, "value": value * scale,
                             "ci_low": value * scale * 0.98 if condition == "random" else None,
                             "ci_high": value * scale * 1.02 if condition == "random" else None, "draw": None})
            rows += [{"metric": metric, "layer": layer, "condition": "random_draw", "draw": d,
                      "value": random * scale * (1 + 0.01 * (d - 2))} for d in range(5)]
    return Results(rows, {**PROV, "dims": [29, 46], "super_experts": ["L0E1"], "draws": 5, "mode": "renorm"})


def multimodal_fixture():
    kinds = {"bos": 0.05, "visual-bg": 0.35, "visual-obj": 0.2, "question": 0.4}
    attention = [{"metric": "attention_share", "layer": layer, "head": head, "kind": kind, "value": value}
                 for layer in range(3) for head in range(2) for kind, value in kinds.items()]
    attention += [{"metric": "visual_sink_share", "layer": layer, "value": 0.02 * (layer + 1)} for layer in range(3)]
    activations = [{"metric": "sink_dim_ratio", "layer": layer, "group": group, "value": base + 0.1 * layer}
                   for layer in range(3) for group, base in (("bos", 2.2), ("visual-sink", 0.8),
                                                             ("visual-other", 1.0), ("question", 1.2))]
    answers = [{"metric": "accuracy", "intervention": name, "question": question, "value": value, "n": 32}
               for name, shift in (("none", 0.0), ("mask-visual-sinks", -0.05), ("var", -0.02))
               for question, value in (("shape", 0.87 + shift), ("colour", 0.75 + shift))]
    prov = {**PROV, "n_sequences": 8, "data_seed": 1, "threshold": 0.05, "top_dims": 2}
    return Results(attention, prov), Results(activations, prov), Results(answers, prov)


CASES = {
    "visual_sinks_overview": lambda: plots.visual_sinks_overview(*multimodal_fixture()),
    "super_expert_pruning": lambda: plots.super_expert_pruning(moe_pruning_fixture()),
    "position_zero": lambda: plots.position_zero(position_zero_fixture()),
    "sink_ratio_vs_length": lambda: plots.sink_ratio_vs_length(length_fixture()),
    "sink_position_profile": lambda: plots.sink_position_profile(position_fixture()),
    "interventions_vs_length": lambda: plots.interventions_vs_length(length_fixture()),
    "streaming_curves": lambda: plots.streaming_curves(streaming_fixture()),
    "streaming_perplexity": lambda: plots.streaming_perplexity(sinks_table_fixture()),
    "attribution_scatter": lambda: plots.attribution_scatter(*attribution_fixture()),
    "quant_kv_bits": lambda: plots.quant_kv_bits(quant_kv_fixture()),
    "quant_activations": lambda: plots.quant_activations(quant_activations_fixture()),
    "emergence_curves": lambda: plots.emergence_curves(emergence_fixture()),
    "special_tokens": lambda: plots.special_tokens(special_fixture()),
    "sweep_profile": lambda: plots.sweep_profile(layer_sweep_fixture()),
    "sink_grid": lambda: plots.sink_grid(sinks_fixture()),
    "depth_profile": lambda: plots.depth_profile(sinks_fixture()),
    "attention_heatmaps": lambda: plots.attention_heatmaps(maps_fixture()),
    "control_prompts": lambda: plots.control_prompts(control_fixture()),
    "massive_3d": lambda: plots.massive_3d(snapshot_fixture()),
    "massive_layerwise": lambda: plots.massive_layerwise(massive_fixture()),
    "norms": lambda: plots.norms(norms_fixture()),
    "implicit_bias_constancy": lambda: plots.implicit_bias_constancy(norms_fixture()),
    "intervention_effects": lambda: plots.intervention_effects(run_fixture()),
    "sweep_heatmap": lambda: plots.sweep_heatmap(sweep_fixture()),
    "dormant_heads": lambda: plots.dormant_heads(sinks_fixture(), sweep_fixture()),
    "head_comparison": lambda: plots.head_comparison(sinks_fixture(), "first_token_attention", sweep_fixture(),
                                                     "delta_loss", colour="last_token_attention"),
    "vit_attention_by_kind": lambda: plots.vit_attention_by_kind(vit_kinds_fixture()),
    "vit_attention_maps": lambda: plots.vit_attention_maps(vit_maps_fixture("example_cls_attention"), *vit_images()),
    "vit_norm_maps": lambda: plots.vit_norm_maps(vit_maps_fixture("example_norm"), *vit_images()),
    "vit_norm_histograms": lambda: plots.vit_norm_histograms(vit_histogram_fixture()),
}



@pytest.mark.parametrize("name", sorted(CASES))
def test_plot_matches_its_baseline_image(name, tmp_path):
    fig, frame = CASES[name]()
    assert len(frame) > 0
    titles = " ".join(ax.get_title(loc="left") + ax.get_title() for ax in fig.axes) + (
        fig.get_suptitle() if hasattr(fig, "get_suptitle") else "")
    assert ("fixture-vit" if name.startswith("vit_") else "fixture-lm") in titles  # every figure names its model
    written = style.save(fig, frame, tmp_path / name, formats=("png",))
    assert written[-1].read_text().count("\n") == len(frame) + 1  # the CSV holds exactly what is plotted
    baseline = BASELINE / f"{name}.png"
    if os.environ.get("SINKBENCH_REFRESH_FIGURES") == "1":
        BASELINE.mkdir(parents=True, exist_ok=True)
        baseline.write_bytes(written[0].read_bytes())
    assert baseline.is_file(), f"no baseline for {name}: run with SINKBENCH_REFRESH_FIGURES=1 once"
    assert compare_images(str(baseline), str(written[0]), tol=TOLERANCE) is None


def test_every_plot_function_is_public_and_has_a_fixture_case():
    domain = [module for name, module in vars(plots).items()
              if inspect.ismodule(module) and module.__name__.startswith("workbench.plots.")
              and name not in ("style", "_common")]
    assert {m.__name__.rsplit(".", 1)[1] for m in domain} == {"activations", "attention", "contributions", "heads", "long_context",
                                                              "interventions", "moe", "multimodal", "quant", "streaming", "toy",
                                                              "vision"}
    defined = {name for module in domain for name, fn in vars(module).items()
               if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")}
    assert defined == set(CASES)
    assert defined | {"show", "style"} == set(plots.__all__)
    assert all(getattr(plots, name) is not None for name in plots.__all__)


def test_head_comparison_joins_on_heads_reports_spearman_and_names_missing_metrics():
    fig, frame = plots.head_comparison(sinks_fixture(), "first_token_attention", sweep_fixture(), "delta_loss")
    sweep = sweep_fixture().df
    assert len(frame) == len(sweep[sweep.metric == "delta_loss"].dropna(subset=["head"]))
    from workbench.core.metrics import spearman
    assert frame.attrs["spearman"] == pytest.approx(spearman(frame["first_token_attention"], frame["delta_loss"]))
    assert f"{frame.attrs['spearman']:.2f}" in fig.axes[0].get_title()
    with pytest.raises(InputError, match="x metric 'sink_score' is not in these Results; they hold"):
        plots.head_comparison(sinks_fixture(), "sink_score", sweep_fixture(), "delta_loss")
    with pytest.raises(InputError, match="several rows per head"):
        doubled = Results(sinks_fixture().rows + sinks_fixture().rows, PROV)
        plots.head_comparison(doubled, "first_token_attention", sweep_fixture(), "delta_loss")


def test_a_plot_without_its_rows_names_the_metric_it_needs():
    with pytest.raises(KeyError, match="sink_grid needs rows with metric 'sink_attention'; the Results have"):
        plots.sink_grid(Results([{"metric": "loss", "value": 1.0}], PROV))
    with pytest.raises(KeyError, match="vit_norm_histograms needs rows with metric 'norm_histogram'"):
        plots.vit_norm_histograms(vit_kinds_fixture())
