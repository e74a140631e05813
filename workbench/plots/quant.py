"""Quantising around sinks: how much of the damage of KV-cache and activation quantisation comes from the
sink tokens? Loss against bits for each keep policy (IntactKV's figure), and per-tensor vs per-token
activation quantisation with and without the sink tokens kept.

    >>> fig, frame = quant_kv_bits(quantization.report(model, data, quantization.kv_grid()))
    >>> fig, frame = quant_activations(quantization.report(model, data, quantization.activation_grid()))

Input: `workbench.experiment.quantization.report` Results (rows carry family, bits, granularity, keep,
destroyed; `d_sink` rows the paired difference to the keep=none twin). A configuration flagged
`destroyed` (perplexity > 10x the baseline) is drawn, marked, and named in the frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from workbench.core.errors import InputError
from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of, require, text_of

KEEP_COLOURS = {"none": style.PALETTE[1], "bos": style.PALETTE[0], "first:4": style.PALETTE[2],
                "sinks": style.PALETTE[3]}
METRICS = ("perplexity", "loss", "delta_loss")


def _keep_colour(keep: str, index: int) -> str:
    return KEEP_COLOURS.get(keep, style.PALETTE[(4 + index) % len(style.PALETTE)])


def _configurations(results: Results, family: str, metric: str, what: str) -> pd.DataFrame:
    """One row per configuration of `family`: its columns, `metric` with its CI, delta_loss, d_sink, destroyed."""
    if metric not in METRICS:
        raise InputError(f"{what}: metric {metric!r}: use one of {', '.join(METRICS)}")
    frame = results.df
    if "family" not in frame:
        raise InputError(f"{what} needs quantisation report rows (workbench.experiment.quantization.report); "
                         "these Results have no `family` column")
    rows = require(frame[frame["family"] == family], metric, what)
    columns = ["bits", "granularity", "keep"]
    out = rows[columns + ["value", "ci_low", "ci_high", "destroyed"]].rename(
        columns={"value": metric, "ci_low": f"{metric}_ci_low", "ci_high": f"{metric}_ci_high"})
    out["bits"] = out["bits"].astype(int)
    out["destroyed"] = out["destroyed"].fillna(False).astype(bool)
    for extra in ("delta_loss", "d_sink"):
        if extra == metric:
            continue
        part = frame[(frame["family"] == family) & (frame["metric"] == extra)][columns + ["value", "ci_low", "ci_high"]]
        part = part.rename(columns={"value": extra, "ci_low": f"{extra}_ci_low", "ci_high": f"{extra}_ci_high"})
        part["bits"] = part["bits"].astype(int)
        out = out.merge(part, on=columns, how="left")
    return out.reset_index(drop=True)


def _keep_order(frame: pd.DataFrame) -> list[str]:
    """keep none first (the reference), then the others in the order of the Results."""
    keeps = list(dict.fromkeys(frame["keep"]))
    return sorted(keeps, key=lambda k: (k != "none", keeps.index(k)))


def _value_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _log_axis(ax, values: np.ndarray) -> None:
    """Log y: ticks at 1, 2, 5 x 10^k written out when the values span under three decades, else at the
    decades (a destroyed configuration can sit five decades above the baseline)."""
    ax.set_yscale("log")
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and np.log10(values.max() / values.min()) < 3:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.margins(y=0.08)


def _baseline(results: Results, metric: str) -> float | None:
    frame = results.df
    if metric == "delta_loss":
        return 0.0
    base = frame[(frame["intervention"] == "none") & (frame["metric"] == metric)] if "intervention" in frame else []
    return float(base["value"].iloc[0]) if len(base) else None


def _axis_label(metric: str) -> str:
    return {"perplexity": "perplexity (log scale; bars: 95 % CI)", "loss": "loss (nats/token; bars: 95 % CI)",
            "delta_loss": "delta loss vs full precision (nats/token; 95 % CI)"}[metric]


def quant_kv_bits(results: Results, metric: str = "perplexity"):
    """Perplexity (or loss) against bits, one line per keep policy, with the baseline; right: D_sink =
    delta_loss(nothing kept) - delta_loss(kept) per bits with its paired CI (IntactKV, Liu et al. 2024, Fig. 1).
    Input: `quantization.report` over `quantization.kv_grid(...)`."""
    frame = _configurations(results, "kv", metric, "quant_kv_bits")
    keeps = _keep_order(frame)
    frame = frame.assign(_k=frame["keep"].map(keeps.index)).sort_values(["granularity", "_k", "bits"]).drop(
        columns="_k").reset_index(drop=True)
    bits = sorted(frame["bits"].unique())
    has_d_sink = "d_sink" in frame and frame["d_sink"].notna().any()
    fig, axes = style.new_figure("double" if has_d_sink else "wide", height=2.7, ncols=2 if has_d_sink else 1)
    left = axes[0] if has_d_sink else axes
    several = frame["granularity"].nunique() > 1
    for (granularity, keep), part in frame.groupby(["granularity", "keep"], sort=False):
        colour = _keep_colour(keep, keeps.index(keep))
        x = np.array([bits.index(b) for b in part["bits"]])
        y = part[metric].to_numpy(float)
        errors = [np.clip(y - part[f"{metric}_ci_low"].to_numpy(float), 0, None),
                  np.clip(part[f"{metric}_ci_high"].to_numpy(float) - y, 0, None)]
        label = f"keep {keep}" + (f" ({granularity})" if several else "")
        left.errorbar(x, y, yerr=errors, marker="o", capsize=2, color=colour, label=label,
                      linestyle="--" if several and granularity != frame["granularity"].iloc[0] else "-")
        broken = part["destroyed"].to_numpy()
        if broken.any():
            left.scatter(x[broken], y[broken], marker="x", s=40, color="black", zorder=5)
    base = _baseline(results, metric)
    if base is not None:
        left.axhline(base, color="0.4", linestyle=":", linewidth=0.9, label=f"full precision ({base:.3g})")
    if frame["destroyed"].any():
        left.scatter([], [], marker="x", color="black", label="destroyed (ppl > 10x baseline)")
    left.set_xticks(range(len(bits)), [str(b) for b in bits])
    left.set_xlabel("bits per cached key / value entry")
    left.set_ylabel(_axis_label(metric))
    if metric == "perplexity":
        _log_axis(left, frame[[metric, f"{metric}_ci_low", f"{metric}_ci_high"]].to_numpy(float).ravel())
    left.legend(fontsize=6.5)
    granularities = ", ".join(dict.fromkeys(frame["granularity"]))
    style.label(left, f"{metric} vs KV-cache bits ({granularities})", model=model_of(results))
    if has_d_sink:
        right = axes[1]
        kept = frame[frame["d_sink"].notna()]
        offsets = np.linspace(-0.12, 0.12, max(1, kept["keep"].nunique()))
        for index, ((granularity, keep), part) in enumerate(kept.groupby(["granularity", "keep"], sort=False)):
            x = np.array([bits.index(b) for b in part["bits"]]) + offsets[index % len(offsets)]
            y = part["d_sink"].to_numpy(float)
            errors = [np.clip(y - part["d_sink_ci_low"].to_numpy(float), 0, None),
                      np.clip(part["d_sink_ci_high"].to_numpy(float) - y, 0, None)]
            right.errorbar(x, y, yerr=errors, marker="s", capsize=2, linestyle="none",
                           color=_keep_colour(keep, keeps.index(keep)),
                           label=f"keep {keep}" + (f" ({granularity})" if several else ""))
        right.axhline(0, color="black", linewidth=0.6)
        right.set_xticks(range(len(bits)), [str(b) for b in bits])
        right.set_xlabel("bits per cached key / value entry")
        right.set_ylabel("D_sink (nats/token; paired 95 % CI)")
        right.legend(fontsize=6.5)
        style.label(right, "D_sink = dloss(keep none) - dloss(kept)", text=text_of(results))
    else:
        left.set_title(left.get_title(loc="left") + f" | {text_of(results)}", loc="left")
    return fig, frame


def quant_activations(results: Results, metric: str = "perplexity"):
    """Activation quantisation per-tensor vs per-token, with and without the sink tokens kept in full precision:
    grouped bars per (bits, granularity), one bar per keep policy, the baseline as a line (PrefixQuant, Chen
    et al. 2024; Bondarenko et al. 2023). Input: `quantization.report` over `quantization.activation_grid(...)`."""
    frame = _configurations(results, "activations", metric, "quant_activations")
    order = {"per-tensor": 0, "per-token": 1}
    keeps = _keep_order(frame)
    frame = frame.assign(_b=-frame["bits"], _g=frame["granularity"].map(order).fillna(2),
                         _k=frame["keep"].map(keeps.index)).sort_values(["_b", "_g", "_k"]).drop(
        columns=["_b", "_g", "_k"]).reset_index(drop=True)
    groups = list(dict.fromkeys(zip(frame["bits"], frame["granularity"])))
    width = 0.8 / len(keeps)
    fig, ax = style.new_figure("wide", height=2.8)
    for index, keep in enumerate(keeps):
        part = frame[frame["keep"] == keep]
        x = np.array([groups.index(g) for g in zip(part["bits"], part["granularity"])]) + (index - (len(keeps) - 1) / 2) * width
        y = part[metric].to_numpy(float)
        errors = [np.clip(y - part[f"{metric}_ci_low"].to_numpy(float), 0, None),
                  np.clip(part[f"{metric}_ci_high"].to_numpy(float) - y, 0, None)]
        bars = ax.bar(x, y, width=width * 0.92, yerr=errors, capsize=2, color=_keep_colour(keep, index),
                      error_kw={"lw": 0.8})
        for bar, value, top, broken in zip(bars, y, y + errors[1], part["destroyed"]):
            if broken:
                bar.set_hatch("///")
                bar.set_edgecolor("black")
            ax.annotate(_value_label(value) + ("\ndestroyed" if broken else ""),
                        (bar.get_x() + bar.get_width() / 2, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=5.5)
    handles = [Patch(facecolor=_keep_colour(keep, index), label=f"keep {keep}") for index, keep in enumerate(keeps)]
    if frame["destroyed"].any():
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="destroyed (ppl > 10x baseline)"))
    base = _baseline(results, metric)
    if base is not None:
        handles.append(ax.axhline(base, color="0.4", linestyle=":", linewidth=0.9, label=f"full precision ({base:.3g})"))
    ax.set_xticks(range(len(groups)), [f"{b}-bit\n{g}" for b, g in groups])
    ax.set_ylabel(_axis_label(metric))
    if metric == "perplexity":
        _log_axis(ax, np.append(frame[[metric, f"{metric}_ci_high"]].to_numpy(float).ravel(), base or np.nan))
        top = np.nanmax(frame[f"{metric}_ci_high"].fillna(frame[metric]).to_numpy(float))
        ax.set_ylim(top=top * 4)  # room for the labels above the bars
    every = results.df
    sites = ", ".join(str(s) for s in dict.fromkeys(every.loc[every["family"] == "activations", "site"]))
    fig.legend(handles=handles, fontsize=6.5, loc="outside lower center", ncol=len(handles))
    style.label(ax, f"activation quantisation, site {sites}", model=model_of(results), text=text_of(results))
    return fig, frame
