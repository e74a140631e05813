"""Survey figures of the Utilization axis, quantising around sinks: how much of the damage of KV-cache and
activation quantisation comes from the sink tokens, on the model given (SmolLM2 by default; Gemma 3 or
Qwen with --model)?

Both run `workbench.experiment.quantization.report` (fake quantisation, interventions.quant) over windows
of a bundled novel and plot it with `workbench.plots.quant`; the report-size numbers are
bench/quantization.py. (This module sorts after recipes_survey, so the gallery keeps its order.)
"""

from __future__ import annotations

import math

from workbench import plots
from workbench.core import data
from workbench.core.results import Results
from workbench.experiment import quantization
from workbench.gallery.registry import FigureContext, recipe


def _windows(ctx: FigureContext):
    model = ctx.model()
    return model, data.corpus_windows(model, ctx.params["corpus"], ctx.params["window"], ctx.params["n"])


def _where(results: Results) -> str:
    prov = results.provenance
    source = str(prov.get("data_source", "")).replace("corpus:", "")
    return f"{prov.get('model')} on {source} ({prov.get('n_sequences')} windows of {prov.get('window')} tokens, " \
           f"BOS {'prepended' if prov.get('bos_policy') == 'bos' else 'absent'})"


def _by_config(results: Results, family: str) -> dict[tuple, dict[str, dict]]:
    """(bits, granularity, keep) -> metric -> row, for one family of a quantisation report."""
    out: dict[tuple, dict[str, dict]] = {}
    for row in results:
        if row.get("family") == family:
            out.setdefault((int(row["bits"]), row["granularity"], row["keep"]), {})[row["metric"]] = row
    return out


def _ppl(metrics: dict[str, dict]) -> str:
    value = metrics["perplexity"]["value"]
    text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return text + (" (destroyed)" if metrics["perplexity"].get("destroyed") else "")


# --------------------------------------------------------------------------------------------------
# (a) KV cache: perplexity against bits, one line per keep policy (IntactKV, KVQuant)
# --------------------------------------------------------------------------------------------------


@recipe("quant-kv-bits", title="KV-cache quantisation: perplexity vs bits, with and without the sink tokens kept",
        reproduces="Liu et al. 2024 (IntactKV: the pivot token's KV kept in full precision); Hooper et al. 2024 "
                   "(KVQuant: the first tokens in fp16)",
        params={"window": 128, "n": 8, "bits": [2, 3, 4, 8], "keep": ["none", "bos", "first:4"],
                "granularity": "per-token", "corpus": "austen", "batch_size": 4},
        quick_params={"window": 16, "n": 2, "bits": [2, 4], "keep": ["none", "bos"]})
def quant_kv_bits(ctx: FigureContext) -> Results:
    model, windows = _windows(ctx)
    params = ctx.params
    configs = quantization.kv_grid(bits=params["bits"], keep=params["keep"], granularity=params["granularity"])
    return quantization.report(model, windows, configs, batch_size=params["batch_size"], seed=ctx.seed,
                               progress=False)


@quant_kv_bits.plotter
def _(results: Results, ctx: FigureContext):
    return plots.quant_kv_bits(results)


@quant_kv_bits.captioner
def _(results: Results, ctx: FigureContext) -> str:
    configs = _by_config(results, "kv")
    alive = [bits for (bits, _, keep), m in configs.items() if keep == "none" and not m["perplexity"].get("destroyed")]
    low = min(alive or [bits for bits, _, _ in configs])  # the fewest bits that do not destroy the model

    def d_sink(m: dict[str, dict]) -> str:
        row = m.get("d_sink")
        return "" if row is None else f", D_sink {row['value']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] nats"

    at_low = "; ".join(f"keep {keep}: {_ppl(m)}{d_sink(m)}" for (bits, _, keep), m in configs.items() if bits == low)
    base = results.provenance.get("baseline_perplexity", math.nan)
    return (f"Perplexity of {_where(results)} with the keys (after RoPE) and values of every layer fake-quantised "
            f"{ctx.params['granularity']} (asymmetric min-max, round to nearest), against bits, for each set of tokens "
            f"kept in full precision; full precision {base:.2f}. At {low} bits: {at_low}. Right: D_sink = "
            "delta_loss(nothing kept) - delta_loss(kept) with a paired bootstrap 95 % CI over windows. IntactKV "
            "reports LLaMA-2-7B (AWQ INT3 weights) C4 perplexity 8.31 -> 8.18 with the pivot token's KV kept; this "
            "model is far smaller, so compare the direction, not the sizes.")


# --------------------------------------------------------------------------------------------------
# (b) Activations: per-tensor vs per-token, with and without the sinks (PrefixQuant, Bondarenko et al.)
# --------------------------------------------------------------------------------------------------


@recipe("quant-activations", title="Activation quantisation per tensor vs per token, with and without the sink kept",
        reproduces="Chen et al. 2024 (PrefixQuant: outlier tokens kept out of per-tensor scales); Bondarenko et al. "
                   "2023 (Quantizable Transformers, Table 2: W8A8 per-tensor)",
        params={"window": 128, "n": 8, "bits": [8, 6], "keep": ["none", "bos"], "site": "linear",
                "corpus": "austen", "batch_size": 4},
        quick_params={"window": 16, "n": 2, "bits": [8]})
def quant_activations(ctx: FigureContext) -> Results:
    model, windows = _windows(ctx)
    params = ctx.params
    configs = quantization.activation_grid(bits=params["bits"], keep=params["keep"], site=params["site"])
    return quantization.report(model, windows, configs, batch_size=params["batch_size"], seed=ctx.seed,
                               progress=False)


@quant_activations.plotter
def _(results: Results, ctx: FigureContext):
    return plots.quant_activations(results)


@quant_activations.captioner
def _(results: Results, ctx: FigureContext) -> str:
    configs = _by_config(results, "activations")
    parts = " ".join(f"At {bits} bits: " + "; ".join(f"{granularity}, keep {keep}: {_ppl(m)}"
                                                     for (b, granularity, keep), m in configs.items() if b == bits) + "."
                     for bits in sorted({b for b, _, _ in configs}, reverse=True))
    base = results.provenance.get("baseline_perplexity", math.nan)
    where = "inputs of every linear layer (lm_head excluded)" if ctx.params["site"] == "linear" else \
        "residual stream entering every block"
    return (f"Perplexity of {_where(results)} with the {where} fake-quantised per tensor (one range per sequence) "
            f"or per token, with nothing or the BOS token kept in full precision; full precision {base:.2f}; "
            f"hatched: destroyed (> 10x baseline). {parts} Per-tensor ranges are what the massive "
            "activations at the sink stretch (PrefixQuant; Bondarenko et al. 2023 report OPT-125m W8A8 15.84 -> "
            "21.18 vanilla and 15.55 -> 16.02 with gated attention).")
