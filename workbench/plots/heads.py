"""Any two per-head measurements against each other: does the sink score predict the ablation effect?

    >>> sinks = probes.sinks(model, data); sweep = experiment.sweep(model, data, "zero-head", over="head")
    >>> fig, frame = head_comparison(sinks, "first_token_attention", sweep, "delta_loss", colour="layer")

Every point is one (layer, head); the two metrics may come from different Results (a probe and a sweep) and
are joined on (layer, head). The colour is a third metric or `layer`. The title carries Spearman's rank
correlation (workbench.core.metrics.spearman: numpy only, ties averaged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.core.errors import InputError
from workbench.core.metrics import spearman
from workbench.core.results import Results
from workbench.plots import style
from workbench.plots._common import model_of


def _per_head(results: Results, metric: str, role: str) -> pd.Series:
    frame = results.df
    if "head" not in frame or metric not in set(frame["metric"]):
        known = sorted(set(frame["metric"])) if "metric" in frame else []
        raise InputError(f"head_comparison: {role} metric {metric!r} is not in these Results; "
                         f"they hold {', '.join(known) or 'no rows'}")
    rows = frame[(frame["metric"] == metric) & frame["head"].notna() & frame["layer"].notna()]
    if rows.empty:
        raise InputError(f"head_comparison: {role} metric {metric!r} has no per-head rows (layer and head set)")
    keys = rows[["layer", "head"]].astype(int)
    if keys.duplicated().any():
        extra = [c for c in rows.columns if c not in ("metric", "value", "layer", "head", "n", "ci_low", "ci_high")
                 and rows[c].nunique(dropna=False) > 1]
        raise InputError(f"head_comparison: {role} metric {metric!r} has several rows per head (they differ in "
                         f"{', '.join(extra) or 'an unnamed column'}); filter the Results first")
    return pd.Series(rows["value"].to_numpy(float), index=pd.MultiIndex.from_frame(keys), name=metric)


def head_comparison(x_results: Results, x: str, y_results: Results | None = None, y: str = "delta_loss",
                    colour: str = "layer", colour_results: Results | None = None):
    """Scatter of metric `x` against metric `y` over heads, coloured by `colour` (`layer`, `head` or a third
    metric), with Spearman's rho in the title. Input: Results with per-head rows (probes, sweeps)."""
    y_results = y_results if y_results is not None else x_results
    joined = pd.concat([_per_head(x_results, x, "x"), _per_head(y_results, y, "y")], axis=1, join="inner")
    if joined.empty:
        raise InputError(f"head_comparison: no head has both {x!r} and {y!r}")
    frame = joined.reset_index().rename(columns={x: "x", y: "y"})
    if colour in ("layer", "head"):
        frame["colour"] = frame[colour].astype(float)
    else:
        shade = _per_head(colour_results if colour_results is not None else x_results, colour, "colour")
        frame = frame.merge(shade.rename("colour").reset_index(), on=["layer", "head"], how="left")
    rho = spearman(frame["x"].to_numpy(), frame["y"].to_numpy())
    fig, ax = style.new_figure("single", height=3.0)
    points = ax.scatter(frame["x"], frame["y"], c=frame["colour"], cmap=style.ATTENTION_CMAP, s=10,
                        edgecolors="none")
    fig.colorbar(points, ax=ax, label=colour.replace("_", " "))
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(f"{model_of(x_results)}: {len(frame)} heads, Spearman rho = {rho:.2f}"
                 if np.isfinite(rho) else f"{model_of(x_results)}: {len(frame)} heads")
    frame = frame.rename(columns={"x": x, "y": y, "colour": f"colour:{colour}"})
    frame.attrs["spearman"] = rho
    return fig, frame
