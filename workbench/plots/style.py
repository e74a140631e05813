"""One style for every figure: sizes a paper uses, readable fonts, and the data saved beside the image.

    >>> fig, ax = new_figure("single")
    >>> ax.plot(x, y); label(ax, "first-token attention", model="smollm2-135m", text="austen, T=64")
    >>> save(fig, frame, out_dir / "sink-grid")          # sink-grid.png, .pdf and .csv
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is assumed anywhere

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from workbench.core.errors import InputError  # noqa: E402

# A one-column figure in a two-column paper is ~3.4 in wide; two columns ~7 in.
WIDTHS = {"single": 3.5, "wide": 5.2, "double": 7.0}
ATTENTION_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]

RC = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "lines.markersize": 3.5,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "image.cmap": ATTENTION_CMAP,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
    # a fixed hash salt and metadata make the SVG/PDF output reproducible
    "svg.hashsalt": "sink-workbench",
}


def apply() -> None:
    plt.rcParams.update(RC)


def new_figure(width: str = "single", height: float | None = None, nrows: int = 1, ncols: int = 1, **kw):
    """A figure of a paper's column width with the workbench style; returns (fig, axes)."""
    apply()
    if width not in WIDTHS:
        raise InputError(f"figure width {width!r}: use one of {list(WIDTHS)}")
    w = WIDTHS[width]
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, height or w * 0.72), constrained_layout=True, **kw)
    return fig, axes


def label(ax, metric: str, model: str | None = None, text: str | None = None, extra: str | None = None) -> None:
    """A title that names the metric, the model and the text it ran on."""
    parts = [metric] + [p for p in (model, text, extra) if p]
    ax.set_title(" | ".join(parts), loc="left")


def save(fig, data: pd.DataFrame, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write the figure (PNG + PDF by default) and the CSV of exactly what it plots."""
    stem = Path(stem)
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the figure directory {stem.parent}: {exc.strerror}") from exc
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, format=fmt, metadata={"Software": "sink-workbench"} if fmt in ("png",) else
                    ({"Creator": "sink-workbench", "CreationDate": None} if fmt == "pdf" else None))
        written.append(path)
    csv = stem.with_suffix(".csv")
    data.to_csv(csv, index=False)
    written.append(csv)
    plt.close(fig)
    return written
