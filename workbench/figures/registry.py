"""The survey-figure registry: each recipe = an experiment + a plot function + a caption.

    >>> @recipe("sink-grid", title="First-token attention per head", reproduces="Gu et al. 2025, Figs. 19-24",
    ...         params={"window": 64, "n": 32})
    ... def sink_grid(ctx):                       # compute: run experiments, return Results
    ...     return probes.sinks(ctx.model(), ctx.data(window=ctx.params["window"], n=ctx.params["n"]))
    >>> @sink_grid.plotter
    ... def _(results, ctx):                      # plot: Results -> (figure, DataFrame of what is plotted)
    ...     ...
    >>> build(["sink-grid"], out="figures/")      # PNG + PDF + CSV + caption, gallery index.html / index.md

Figures never run a model: `compute` does, once, and its Results are cached under
`out/data/<recipe>.json` keyed by an identity (recipe, model + weights checksum, params, seed,
code version). A rerun with nothing changed only re-plots (or skips, if the images are newer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import importlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.core.cache import atomic_write_text
from workbench.core.errors import InputError, ModelNotAvailable, WorkbenchError
from workbench.core.results import Results, cached, identity_hash

# Recipes live in `workbench/figures/recipes_*.py`; importing them fills REGISTRY.
RECIPE_PREFIX = "recipes_"

REGISTRY: dict[str, Recipe] = {}

# Bump when a recipe's computation changes meaning, so cached Results are recomputed.
RECIPE_VERSION = 1


class FigureError(WorkbenchError):
    """A recipe could not be drawn (missing data, unavailable model)."""


@dataclasses.dataclass
class FigureContext:
    """What a recipe's compute and plot functions get: the model to use, parameters, caches."""

    model_name: str
    out_dir: Path
    params: dict[str, Any]
    seed: int = 0
    quick: bool = False
    _loaded: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def model(self, name: str | None = None):
        from workbench import zoo

        name = name or self.model_name
        if name not in self._loaded:
            self._loaded[name] = zoo.load(name)
        return self._loaded[name]

    def text_label(self, data_provenance: dict | None) -> str:
        if not data_provenance:
            return ""
        source = str(data_provenance.get("data_source", "")).replace("corpus:", "")
        return f"{source}, T={data_provenance.get('window')}"


@dataclasses.dataclass
class Recipe:
    name: str
    title: str
    reproduces: str
    compute: Callable[[FigureContext], Results]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    quick_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str | None = None  # a recipe tied to one model (e.g. the encoder recipes); else the --model
    families: tuple[str, ...] = ("causal-lm",)
    plot: Callable[[Results, FigureContext], tuple[Any, pd.DataFrame]] | None = None
    caption: Callable[[Results, FigureContext], str] | None = None

    def plotter(self, fn):
        self.plot = fn
        return fn

    def captioner(self, fn):
        self.caption = fn
        return fn


def recipe(name: str, *, title: str, reproduces: str, params: dict | None = None,
           quick_params: dict | None = None, model: str | None = None,
           families: tuple[str, ...] = ("causal-lm",)) -> Callable[[Callable], Recipe]:
    """Register a figure recipe; decorate its compute function (see the module docstring)."""
    def wrap(compute: Callable[[FigureContext], Results]) -> Recipe:
        if name in REGISTRY:
            raise ValueError(f"figure recipe {name!r} is registered twice")
        entry = Recipe(name, title, reproduces, compute, dict(params or {}), dict(quick_params or {}), model, families)
        REGISTRY[name] = entry
        return entry
    return wrap


def recipes() -> dict[str, Recipe]:
    """Every registered recipe (importing each `workbench/figures/recipes_*.py` registers its own)."""
    import pkgutil

    import workbench.figures as package

    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name.startswith(RECIPE_PREFIX):
            importlib.import_module(f"workbench.figures.{module.name}")
    return dict(REGISTRY)


def _resolve(names: Iterable[str] | None, all_: bool) -> list[Recipe]:
    known = recipes()
    if all_ or not names:
        return list(known.values())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown figure {unknown[0]!r}: available {', '.join(known)}")
    return [known[n] for n in names]


def _family(model_name: str) -> str:
    """The family of a zoo model without loading it (loaded models answer for local dirs and HF ids)."""
    from workbench import zoo

    try:
        return zoo.card(model_name).family
    except WorkbenchError:
        return zoo.info(zoo.load(model_name)).family


def _identity(entry: Recipe, ctx: FigureContext) -> dict:
    from workbench import zoo

    name = ctx.model_name
    sha = None
    if name in zoo.BUNDLED:
        if not zoo.is_cached(name):
            raise FigureError(f"figure {entry.name!r} needs model {name!r}, which is not available offline: "
                              f"run `sinkbench models fetch {name}`")
        sha = json.loads((zoo.model_dir(name) / zoo.MANIFEST).read_text())["weights_sha256"]
    return {"recipe": entry.name, "version": RECIPE_VERSION, "model": name, "weights": sha,
            "params": ctx.params, "seed": ctx.seed}


def compute_results(entry: Recipe, ctx: FigureContext, force: bool = False) -> Results:
    """The recipe's Results, from out/data if a run with the same identity saved them, else computed."""
    identity = _identity(entry, ctx)
    path = ctx.out_dir / "data" / f"{entry.name}.json"
    if not force and (hit := cached(path, identity)) is not None:
        return hit
    started = time.perf_counter()
    try:
        results = entry.compute(ctx)
    except ModelNotAvailable as exc:
        raise FigureError(f"figure {entry.name!r}: {exc}") from exc
    results.provenance.update(identity_hash=identity_hash(identity), recipe=entry.name,
                              recipe_params=ctx.params, compute_seconds=round(time.perf_counter() - started, 2))
    results.save(path)
    return results


def draw(entry: Recipe, results: Results, ctx: FigureContext) -> tuple[list[Path], str]:
    """Plot a recipe's Results and write PNG, PDF and CSV; returns (paths, caption)."""
    from workbench.figures import style

    if entry.plot is None:
        raise FigureError(f"figure {entry.name!r} has no plot function")
    if len(results) == 0:
        raise FigureError(f"figure {entry.name!r}: its Results are empty; nothing to plot")
    try:
        fig, frame = entry.plot(results, ctx)
    except (KeyError, IndexError, ValueError) as exc:
        raise FigureError(f"figure {entry.name!r}: missing data for the plot ({type(exc).__name__}: {exc})") from exc
    paths = style.save(fig, frame, ctx.out_dir / entry.name)
    text = entry.caption(results, ctx) if entry.caption else entry.title
    caption = f"{text} Reproduces: {entry.reproduces}."
    (ctx.out_dir / f"{entry.name}.caption.txt").write_text(caption + "\n")
    return paths, caption


def _draw_stamp(entry: Recipe, ctx: FigureContext) -> str:
    """What a drawing depends on: the saved Results (bytes) and the figure layer's code."""
    digest = hashlib.sha256((ctx.out_dir / "data" / f"{entry.name}.json").read_bytes())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _drawn(entry: Recipe, ctx: FigureContext, stamp: str) -> tuple[list[Path] | None, str]:
    """The files of an earlier drawing with this stamp, if they are all still there."""
    stamp_path = ctx.out_dir / "data" / f"{entry.name}.drawn.json"
    if not stamp_path.is_file():
        return None, ""
    try:
        recorded = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return None, ""
    paths = [ctx.out_dir / name for name in recorded.get("files", [])]
    caption_file = ctx.out_dir / f"{entry.name}.caption.txt"
    if (recorded.get("stamp") != stamp or not paths or not caption_file.is_file()
            or not all(p.is_file() for p in paths)):
        return None, ""
    return paths, recorded["caption"]


def _stamp(entry: Recipe, ctx: FigureContext, stamp: str, paths: list[Path], caption: str) -> None:
    blob = {"stamp": stamp, "files": [p.name for p in paths], "caption": caption}
    atomic_write_text(ctx.out_dir / "data" / f"{entry.name}.drawn.json", json.dumps(blob, indent=1))


def build(names: Iterable[str] | None = None, out: str | Path = "figures", model: str = "smollm2-135m",
          all_: bool = False, seed: int = 0, quick: bool = False, force: bool = False,
          log: Callable[[str], None] = print, model_overrides: dict[str, str] | None = None) -> list[dict]:
    """Run what is missing, draw every requested figure, and write the gallery (index.html, index.md).

    `model_overrides` maps a recipe's fixed model to another (tests draw the encoder recipe on tiny-bert)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "data").mkdir(exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"output directory {out} is not writable: {exc.strerror}") from exc
    entries = _resolve(names, all_)
    family = _family(model)
    done = []
    for entry in entries:
        if entry.model is None and family not in entry.families:
            if names and not all_:
                raise FigureError(f"figure {entry.name!r} needs a {' or '.join(entry.families)} model; "
                                  f"{model} is a {family}")
            log(f"  {entry.name:<28} skipped: needs a {' or '.join(entry.families)} model, {model} is a {family}")
            continue
        params = {**entry.params, **(entry.quick_params if quick else {})}
        target = (model_overrides or {}).get(entry.model, entry.model) or model
        ctx = FigureContext(target, out, params, seed, quick)
        started = time.perf_counter()
        results = compute_results(entry, ctx, force=force)
        stamp = _draw_stamp(entry, ctx)
        paths, caption = (None, "") if force else _drawn(entry, ctx, stamp)
        if paths is None:
            paths, caption = draw(entry, results, ctx)
            _stamp(entry, ctx, stamp, paths, caption)
        seconds = time.perf_counter() - started
        log(f"  {entry.name:<28} {seconds:6.1f} s  {paths[0]}")
        done.append({"name": entry.name, "title": entry.title, "caption": caption, "model": ctx.model_name,
                     "png": paths[0].name, "pdf": paths[1].name, "csv": paths[-1].name,
                     "data": f"data/{entry.name}.json", "seconds": round(seconds, 1)})
    write_gallery(out, done)
    return done


def write_gallery(out: Path, figures: list[dict]) -> None:
    """index.md and index.html listing every figure with its caption and links to its data."""
    known = {f["name"]: f for f in figures}
    order = list(recipes())
    index_path = out / "index.json"
    if index_path.is_file():  # keep figures drawn by earlier calls that this call did not redo
        for old in json.loads(index_path.read_text()):
            if old["name"] not in known and old["name"] in order and (out / old["png"]).is_file():
                known[old["name"]] = old
    items = sorted(known.values(), key=lambda f: order.index(f["name"]) if f["name"] in order else len(order))
    index_path.write_text(json.dumps(items, indent=2))
    md = ["# Sink Workbench — figure gallery", "",
          "Each figure has its PNG, PDF, the CSV of exactly what it plots, and the Results (with provenance) "
          "it was drawn from.", ""]
    for f in items:
        md += [f"## {f['title']} (`{f['name']}`)", "", f"![{f['name']}]({f['png']})", "", f["caption"], "",
               f"[PDF]({f['pdf']}) · [plotted data (CSV)]({f['csv']}) · [Results + provenance]({f['data']})", ""]
    (out / "index.md").write_text("\n".join(md))
    cards = "\n".join(
        f"<section><h2>{html.escape(f['title'])} <code>{html.escape(f['name'])}</code></h2>"
        f"<a href='{f['png']}'><img src='{f['png']}' alt='{html.escape(f['name'])}'></a>"
        f"<p>{html.escape(f['caption'])}</p><p><a href='{f['pdf']}'>PDF</a> · <a href='{f['csv']}'>plotted data"
        f"</a> · <a href='{f['data']}'>Results + provenance</a></p></section>" for f in items)
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Sink Workbench figures</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}img{max-width:100%;"
        "border:1px solid #ddd}section{margin-bottom:2.5em}</style></head><body>"
        f"<h1>Sink Workbench — figure gallery</h1>{cards}</body></html>\n")
