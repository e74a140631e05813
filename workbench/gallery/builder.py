"""Building figures: compute what is missing (cached), draw, caption, and write the gallery.

    >>> build(["sink-grid"], out="figures/")      # PNG + PDF + CSV + caption, gallery index.html / index.md
    >>> build(all_=True, quick=True)              # every registered figure, reduced parameters
    >>> build(all_=True, executor="ray")          # the recipes' computations in parallel on Ray workers

`compute` runs once and its Results are cached under `out/data/<recipe>.json`, keyed by their identity
(workbench.gallery.identity). A rerun with nothing changed only re-plots, or skips a figure whose files
were drawn from the same Results by the same plotting code. With an executor other than `local`, the
recipes whose Results are missing are computed as independent jobs (recipe, model name, params, seed) ->
Results on its workers, in parallel; this process saves every Results file and draws every figure, in
gallery order, as their Results come back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from workbench.core.cache import atomic_write_text
from workbench.core.errors import InputError, ModelNotAvailable, WorkbenchError
from workbench.core.results import Results, cached, identity_hash
from workbench.gallery.identity import identity
from workbench.gallery.page import write_gallery
from workbench.gallery.registry import RECIPE_PREFIX, FigureContext, FigureError, Recipe, recipes


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


def _compute(entry: Recipe, ctx: FigureContext) -> tuple[Results, float]:
    """Run a recipe's compute: (Results, seconds)."""
    started = time.perf_counter()
    try:
        results = entry.compute(ctx)
    except ModelNotAvailable as exc:
        raise FigureError(f"figure {entry.name!r}: {exc}") from exc
    return results, time.perf_counter() - started


def _save(entry: Recipe, ctx: FigureContext, results: Results, seconds: float) -> Results:
    # read the weights again: compute may have trained them (the trained ViTs, the toys) on first use
    results.provenance.update(identity_hash=identity_hash(identity(entry, ctx)), recipe=entry.name,
                              recipe_params=ctx.params, compute_seconds=round(seconds, 2))
    results.save(ctx.out_dir / "data" / f"{entry.name}.json")
    return results


def compute_results(entry: Recipe, ctx: FigureContext, force: bool = False) -> Results:
    """The recipe's Results, from out/data if a run with the same identity saved them, else computed."""
    path = ctx.out_dir / "data" / f"{entry.name}.json"
    if not force and (hit := cached(path, identity(entry, ctx))) is not None:
        return hit
    return _save(entry, ctx, *_compute(entry, ctx))


@dataclasses.dataclass
class _RecipeJob:
    """A pure job: one recipe's compute under one context (recipe name, model name, params, seed) -> (Results,
    seconds). A worker finds the recipe by name in its own registry; one defined outside the gallery's recipe
    modules (in a notebook, a test) travels by value, its compute function only (the driver draws)."""

    name: str
    ctx: FigureContext
    entry: Recipe | None = None

    def describe(self) -> str:
        return f"figure {self.name!r} on {self.ctx.model_name}"

    def run(self, state: Any) -> tuple[Results, float]:
        return _compute(self.entry or recipes()[self.name], self.ctx)


def _job(entry: Recipe, ctx: FigureContext) -> _RecipeJob:
    known = getattr(entry.compute, "__module__", "").startswith(f"{__package__}.{RECIPE_PREFIX}")
    return _RecipeJob(entry.name, dataclasses.replace(ctx, _loaded={}),
                      None if known else dataclasses.replace(entry, plot=None, caption=None, weights=None))


def _computed_in_parallel(plan: list[tuple[Recipe, FigureContext]], pool: Any,
                          force: bool) -> Callable[[Recipe, FigureContext], Results]:
    """Hand every recipe whose Results are not cached to `pool` at once; returns the lookup that gives each
    recipe's Results in gallery order (cached, or saved here as its job comes back)."""
    hits = {} if force else {entry.name: cached(ctx.out_dir / "data" / f"{entry.name}.json", identity(entry, ctx))
                             for entry, ctx in plan}
    jobs = [_job(entry, ctx) for entry, ctx in plan if hits.get(entry.name) is None]
    computed: Iterator[tuple[Results, float]] = pool.map(jobs) if jobs else iter(())

    def results_of(entry: Recipe, ctx: FigureContext) -> Results:
        hit = hits.get(entry.name)
        return hit if hit is not None else _save(entry, ctx, *next(computed))
    return results_of


def draw(entry: Recipe, results: Results, ctx: FigureContext) -> tuple[list[Path], str]:
    """Plot a recipe's Results and write PNG, PDF and CSV; returns (paths, caption)."""
    from workbench.plots import style

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


def _figure_code() -> list[Path]:
    """The sources a drawing depends on besides its Results: the plots and the gallery (recipes, captions)."""
    import workbench.plots

    rooms = (Path(workbench.plots.__file__).parent, Path(__file__).parent)
    return [source for room in rooms for source in sorted(room.glob("*.py"))]


def _draw_stamp(entry: Recipe, ctx: FigureContext) -> str:
    """What a drawing depends on: the saved Results (bytes) and the figure code."""
    digest = hashlib.sha256((ctx.out_dir / "data" / f"{entry.name}.json").read_bytes())
    for source in _figure_code():
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
          log: Callable[[str], None] = print, executor: Any = None) -> list[dict]:
    """Run what is missing, draw every requested figure, and write the gallery (index.html, index.md).

        >>> done = build(["sink-grid", "norms"], out="figures/", model="gemma3-270m")
        >>> done[0]["png"], done[0]["caption"]

    Recipes tied to one model (`Recipe.model`) draw on it; the others on `model`, if its family is one the
    recipe takes (with `all_`, the others are skipped with a note). `executor` ("local" by default, "ray",
    Ray options or an Executor; workbench.experiment.executors): where the missing Results are computed;
    independent recipes run in parallel there, and drawing stays here."""
    from workbench.experiment import executors

    if not isinstance(executor, executors.Executor):
        executors.check_options(executor)  # a bad option fails before anything is written or run
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
    plan = []
    for entry in entries:
        if entry.model is None and family not in entry.families:
            if names and not all_:
                raise FigureError(f"figure {entry.name!r} needs a {' or '.join(entry.families)} model; "
                                  f"{model} is a {family}")
            log(f"  {entry.name:<28} skipped: needs a {' or '.join(entry.families)} model, {model} is a {family}")
            continue
        params = {**entry.params, **(entry.quick_params if quick else {})}
        plan.append((entry, FigureContext(entry.model or model, out, params, seed, quick)))
    done = []
    with executors.using(executor) as pool:
        if isinstance(pool, executors.LocalExecutor):  # one recipe after another, each computed when drawn
            results_of = lambda entry, ctx: compute_results(entry, ctx, force=force)  # noqa: E731
        else:
            results_of = _computed_in_parallel(plan, pool, force)
        for entry, ctx in plan:
            started = time.perf_counter()
            results = results_of(entry, ctx)
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
