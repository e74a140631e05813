"""The attention explorer: where does each head of one model run look, token by token, and what does an
intervention change? One offline page per run, opened from a file on disk (no server, no network).

    >>> from workbench.gallery import explorer
    >>> explorer.write_explorer(model, data, "figures/explore/smollm2-135m", intervention="mask-sink:layers=5")

Researchers look at attention before they read numbers; in TransformerLens they reach for CircuitsVis,
which needs a notebook front end. This page needs only a browser (Chromium, Firefox):
- an overview: the layer x head grid of sink attention (`probes.sinks`, the same Results `sinkbench probe
  sinks` prints; with an intervention also the grid after it and the change); click a cell (or move with
  the arrow keys) to open that head;
- the head's attention pattern of one sequence as a heatmap, query tokens down, key tokens across, the
  sink keys marked, the value under the pointer (or the keyboard cursor) read out; a sequence picker;
- with an intervention, the same head after the edit and the difference, side by side;
- on image models, the attention of [CLS] (or of a patch: click it) laid over the image.

Everything is measured read-only in the probes' hooked pass (`workbench.passes`): `probes.sinks` runs
once per condition with a pattern collector in its `hooks=`, and with an intervention inside
`experiment.hooked`, so the grid and the patterns come from the same forward pass.

What is written (`write`): `explorer.html` (the page, its script and style inlined, the overview and
tokens embedded), `explorer-data/<condition>-L<layer>.js` (the patterns of one layer, loaded when a head
of that layer is opened: the page stays small however many layers there are), `explorer.json` (a summary
the gallery links from) and `results/sinks-<condition>.json` (the Results with their provenance).
Patterns are quantised, per layer: 16-bit when the whole folder fits the budget (5 MB by default), else
8-bit (SmolLM2, 30 x 9 heads, 8 x 64 tokens: about 2.3 MB per condition), then deflated and base64'd;
the page states the precision, and, when the budget still forces it, shows fewer sequences and says so.
On a causal model the patterns are lower triangles (a query sees no later key).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.errors import InputError, check_range

PAGE = "explorer.html"
DATA_DIR = "explorer-data"
SUMMARY = "explorer.json"
FORMAT = "sinkbench-explorer/1"
DEFAULT_BUDGET_MB = 5.0
DEFAULT_MAX_SEQUENCES = 8
DEFAULT_MAX_POSITIONS = 128
GALLERY_SUBDIR = "explore"  # where `sinkbench explore` pages sit inside a gallery folder (see explorer_links)
_ASSETS = Path(__file__).with_name("explorer_assets")
_IMAGE_SIDE = 128  # images are embedded at most this many pixels a side (the overlay needs no more)


@dataclasses.dataclass
class Exploration:
    """What one explorer page shows: the patterns of every head per condition, the sink grids, the tokens.

    `patterns[condition]`: float32 [layers, heads, sequences, P, P] (P positions shown);
    `results[condition]`: the `probes.sinks` Results the grid is read from; `meta`: everything else the
    page needs (tokens, sink positions, images, notes, provenance), JSON-ready."""

    patterns: dict[str, np.ndarray]
    results: dict[str, Any]
    meta: dict


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def _pick(n_total: int, n: int) -> list[int]:
    """`n` evenly spaced indices of `n_total` (all of them when n >= n_total)."""
    if n >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n)})


def _shown_data(model_info: Any, data: Any, max_sequences: int, max_positions: int) -> tuple[Any, list[int], int,
                                                                                               list[str]]:
    """The sequences the page shows (one batch of equal length) and notes on what was left out."""
    from workbench.core.data import Dataset

    notes = []
    index = _pick(len(data), max_sequences)
    if len(index) < len(data):
        what = "images" if model_info.is_image else "sequences"
        notes.append(f"showing {len(index)} of {len(data)} {what} (evenly spaced: {', '.join(map(str, index))}); "
                     f"--max-sequences sets how many")
    shown = data.subset(index)
    lengths = sorted(set(shown.lengths))
    if isinstance(shown, Dataset) and model_info.causal:
        # a causal query sees no later key: the first P positions of a longer run are exactly its first P
        cut = min(lengths[0], max_positions)
        if cut < lengths[-1]:
            notes.append(f"showing positions 0..{cut - 1} of sequences of {lengths[0]}..{lengths[-1]} tokens "
                         f"(exact: a causal query sees no later key); --max-positions sets how many")
            shown = dataclasses.replace(shown, sequences=[np.asarray(s[:cut]) for s in shown.sequences])
        return shown, index, cut, notes
    if len(lengths) != 1:
        raise InputError(f"the explorer shows sequences of one length on a bidirectional model; got lengths "
                         f"{lengths}: cut the data into equal windows (--window)")
    positions = lengths[0]
    if positions > max_positions and not model_info.is_image:
        notes.append(f"showing queries and keys 0..{max_positions - 1} of {positions} positions (rows are cut: "
                     f"they need not sum to 1); --max-positions sets how many")
        positions = max_positions
    return shown, index, positions, notes


def _collector(n_layers: int, positions: int, store: dict[int, np.ndarray]) -> list:
    """Read-only hooks that keep every head's pattern (the first `positions` queries and keys) per layer."""
    from workbench.core import sites

    def keep(layer: int):
        def fn(pattern, hook) -> None:
            store[layer] = pattern[:, :, :positions, :positions].detach().float().cpu().numpy()
        return fn

    return [(sites.pattern(layer), keep(layer)) for layer in range(n_layers)]


def _edited_views(model: Any, edit: Any, ctx: Any, notes: list[str]) -> list:
    """On adapters whose hook_pattern is read after the fact (ViT, BERT), an attention edit reaches the model
    through the head outputs (z += (A' - A) v) and the pattern hook still reports A: these hooks apply the
    same `edit` to the pattern that is read, so the page and the grid show A', what the edited heads use.
    They change nothing the model computes (an edit at this hook does not flow on such adapters)."""
    from interventions import AttentionEdit, Compose
    from interventions.mechanisms import pattern_edits_flow
    from workbench.core import sites
    from workbench.core.modelinfo import info

    if pattern_edits_flow(model):
        return []
    by_layer: dict[int, list] = {}
    for member in edit.members if isinstance(edit, Compose) else (edit,):
        if not isinstance(member, AttentionEdit):
            continue
        if member.needs_scores:
            notes.append(f"{member} needs pre-softmax scores, which {info(model).name} does not expose at its "
                         "pattern hook: the heads it edits are shown before the edit (later layers show its effect)")
            continue
        for layer in member.layer_ids(model):
            by_layer.setdefault(layer, []).append(member)
    if by_layer:
        notes.append(f"on {info(model).name} an attention edit acts on the head outputs (z += (A' - A) v); "
                     "the patterns after it are A', the edit applied to the pattern read at hook_pattern")

    def view(layer: int, members: list):
        def fn(pattern, hook):
            out = pattern.clone()
            for member in members:
                heads = list(member.head_ids(model))
                new, _ = member.edit(out[:, heads], ctx, layer)
                if new is not None:
                    out[:, heads] = new.to(out.dtype)
            return out
        return fn

    return [(sites.pattern(layer), view(layer, members)) for layer, members in sorted(by_layer.items())]


def _measure(model: Any, shown: Any, sink: Any, positions: int, before: Sequence = ()) -> tuple[Any, np.ndarray]:
    """probes.sinks over the shown batch, collecting the patterns in the same pass: (Results, [L, H, n, P, P]).
    `before`: hooks that run ahead of the collector (the edited views)."""
    from workbench import probes
    from workbench.core.modelinfo import info

    n_layers = info(model).n_layers
    store: dict[int, np.ndarray] = {}
    with warnings.catch_warnings():
        # the edited views return a tensor the adapter then discards, as it says: expected, so not shown
        warnings.filterwarnings("ignore", message="A hook on .*hook_pattern returned a modified tensor")
        results = probes.sinks(model, shown, sink=sink, batch_size=len(shown), progress=False,
                               hooks=[*before, *_collector(n_layers, positions, store)])
    missing = [layer for layer in range(n_layers) if layer not in store]
    if missing:
        raise InputError(f"{info(model).name}: no attention pattern was read at layer {missing[0]} "
                         "(load the model with eager attention)")
    stacked = np.stack([store[layer] for layer in range(n_layers)])  # [L, n, H, P, P]
    return results, np.ascontiguousarray(stacked.transpose(0, 2, 1, 3, 4), dtype=np.float32)


def _grid(results: Any, n_layers: int, n_heads: int) -> tuple[str, list[list[float]]]:
    """The (layer, head) sink-attention rows of a `probes.sinks` Results as an [L][H] list."""
    frame = results.df
    metric = "first_token_attention" if "first_token_attention" in set(frame["metric"]) else "sink_attention"
    grid = [[math.nan] * n_heads for _ in range(n_layers)]
    for row in results.filter(metric=metric):
        grid[int(row["layer"])][int(row["head"])] = float(row["value"])
    return metric, grid


def _token_labels(model: Any, model_info: Any, tokens: np.ndarray) -> list[str]:
    """Readable names of the positions of one sequence (for images: [CLS], patch r,c (kind), [REGk])."""
    from workbench.core.data import str_tokens

    names = str_tokens(model, [int(t) for t in tokens])
    if not model_info.is_image:
        return names
    rows, cols = model_info.grid
    out = []
    for position, name in enumerate(names):
        patch = position - model_info.n_prefix
        if 0 <= patch < rows * cols:
            out.append(f"r{patch // cols}c{patch % cols} {name}")
        else:
            out.append(name)
    return out


def _sequence_label(model: Any, model_info: Any, data: Any, original: int, tokens: np.ndarray) -> str:
    if model_info.is_image:
        labels = getattr(data, "labels", None)
        names = model_info.label_names
        if labels is not None:
            label = int(labels[original])
            shown = names[label] if names and label < len(names) else str(label)
            return f"image {original} (label {shown})"
        return f"image {original}"
    text = model_info.tokenizer.decode([int(t) for t in tokens], skip_special_tokens=True)
    text = " ".join(text.split())
    return f"#{original}: {text[:48]}{'…' if len(text) > 48 else ''}"


def _image_meta(model_info: Any, shown: Any) -> dict:
    """The images (RGB bytes, base64) and the patch grid, for the overlay."""
    pixels = np.asarray(shown.pixels, dtype=np.float32)  # [n, H, W, C] in [0, 1]
    step = max(1, math.ceil(max(pixels.shape[1:3]) / _IMAGE_SIDE))
    pixels = pixels[:, ::step, ::step]
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    rgb = np.clip(np.round(pixels[..., :3] * 255), 0, 255).astype(np.uint8)
    rows, cols = model_info.grid
    return {"height": int(rgb.shape[1]), "width": int(rgb.shape[2]), "rows": rows, "cols": cols,
            "n_prefix": model_info.n_prefix, "n_registers": model_info.n_registers,
            "pixels": [base64.b64encode(image.tobytes()).decode("ascii") for image in rgb]}


def explore(model: Any, data: Any, intervention: Any = None, sink: Any = None,
            max_sequences: int = DEFAULT_MAX_SEQUENCES, max_positions: int = DEFAULT_MAX_POSITIONS) -> Exploration:
    """Measure what the explorer page shows: every head's pattern on the shown sequences, the sink grid, and
    with `intervention` the same after the edit.

        >>> exp = explore(zoo.load("tiny-llama"), data, intervention="mask-sink:layers=1")
        >>> exp.patterns["intervened"].shape          # (layers, heads, sequences, P, P)

    `sink`: the sink of the grid and of the marked column (default bos; cls on image models). At most
    `max_sequences` sequences (evenly spaced) and, on text, the first `max_positions` positions are shown;
    the page's notes say what was left out.
    """
    from workbench import experiment
    from workbench.core.modelinfo import info
    from workbench.core.results import provenance
    from workbench.core.sites import SinkSpec
    from workbench.passes import PassContext, device_of
    from workbench.probes import detect_sinks

    check_range("max sequences", max_sequences, 1, 4096)
    check_range("max positions", max_positions, 2, 8192)
    model_info = info(model)
    sink = sink if sink is not None else ("cls" if model_info.is_image else "bos")
    spec = SinkSpec.parse(sink)
    shown, index, positions, notes = _shown_data(model_info, data, max_sequences, max_positions)
    edit = experiment.as_intervention(intervention) if intervention is not None else None
    if edit is not None:
        from interventions import Identity

        if isinstance(edit, Identity):
            edit = None
    if edit is not None:
        edit.validate(model)
        if edit.changes_length:
            raise InputError(f"{edit} adds positions to every sequence; the explorer compares patterns position "
                             "by position, so it takes interventions that keep the length (mask-sink, "
                             "scale-sink, zero-sink-value, ...)")
    _, tokens = next(iter(shown.batches(len(shown))))
    auto = detect_sinks(model, shown, spec.eps, len(shown), False) if spec.kind == "auto" else None
    sink_keys = PassContext.of(model, tokens, spec, auto_positions=auto).sink.cpu().numpy()
    if auto is not None:
        sink = f"{','.join(map(str, auto))}"  # the grid measures the positions the page marks

    patterns, results, grids = {}, {}, {}
    results["baseline"], patterns["baseline"] = _measure(model, shown, sink, positions)
    labels = {"baseline": "baseline"}
    if edit is not None:
        state = edit.prepare(model, shown, len(shown), False)
        with experiment.hooked(model, edit, tokens.to(device_of(model)), state=state) as ctx:
            views = _edited_views(model, edit, ctx, notes)
            results["intervened"], patterns["intervened"] = _measure(model, shown, sink, positions, views)
        labels["intervened"] = str(edit)
    metric = "sink_attention"
    for condition, res in results.items():
        metric, grids[condition] = _grid(res, model_info.n_layers, model_info.n_heads)

    token_ids = tokens.cpu().numpy()
    sequences = []
    for row, original in enumerate(index):
        ids = token_ids[row, :positions]
        sequences.append({"index": original, "label": _sequence_label(model, model_info, data, original, ids),
                          "tokens": _token_labels(model, model_info, ids),
                          "sink": [int(p) for p in np.nonzero(sink_keys[row, :positions])[0]]})
    header = provenance("explorer", model, shown, sink=spec.label if auto is None else sink,
                        intervention=edit.spec() if edit is not None else None, sequence_indices=index,
                        positions=positions, source_sequences=len(data),
                        source_data=data.provenance() if hasattr(data, "provenance") else None)
    title = f"{model_info.name} — attention explorer" + (f" — {edit}" if edit is not None else "")
    meta = {
        "format": FORMAT, "title": title,
        "model": {"name": model_info.name, "family": model_info.family, "n_layers": model_info.n_layers,
                  "n_heads": model_info.n_heads, "causal": model_info.causal, "is_image": model_info.is_image},
        "conditions": list(patterns), "labels": labels,
        "grid": {"metric": metric, "sink": spec.label if auto is None else f"auto → {sink}", **grids},
        "positions": positions, "sequences": sequences, "notes": notes,
        "image": _image_meta(model_info, shown) if model_info.is_image else None,
        "provenance": {"explorer": header, **{f"sinks_{c}": r.provenance for c, r in results.items()}},
    }
    return Exploration(patterns, results, meta)


# --------------------------------------------------------------------------------------------------
# Packing and writing
# --------------------------------------------------------------------------------------------------


def _cells(patterns: np.ndarray, causal: bool) -> np.ndarray:
    """[L, H, n, P, P] -> [L, H, n, cells]: the lower triangle row by row on a causal model, else all."""
    positions = patterns.shape[-1]
    if causal:
        q, k = np.tril_indices(positions)
        return patterns[..., q, k]
    return patterns.reshape(*patterns.shape[:-2], positions * positions)


def quantise(values: np.ndarray, bits: int) -> np.ndarray:
    """Values in [0, 1] -> codes round(value * (2^bits - 1)), uint8 or little-endian uint16."""
    scale = (1 << bits) - 1
    return np.round(np.clip(values, 0.0, 1.0) * scale).astype("<u2" if bits == 16 else np.uint8)


def pack_codes(codes: np.ndarray) -> str:
    """Codes -> base64 of their deflated bytes (what a data file carries)."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(codes).tobytes(), 6)).decode("ascii")


def unpack_codes(text: str, bits: int) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype="<u2" if bits == 16 else np.uint8)


def pack_layer(cells: np.ndarray, bits: int) -> str:
    """One layer's cells [H, n, cells] in [0, 1] -> base64 of the deflated little-endian uint8/uint16 codes."""
    return pack_codes(quantise(cells, bits))


def unpack_layer(text: str, bits: int, shape: Sequence[int]) -> np.ndarray:
    """The inverse of `pack_layer`: float32 values (code / (2^bits - 1)) of the given shape."""
    return (unpack_codes(text, bits).astype(np.float32) / ((1 << bits) - 1)).reshape(shape)


def _wrapped(codes: np.ndarray, base: np.ndarray, bits: int, sign: int) -> np.ndarray:
    """(codes - base) or (codes + base) modulo 2^bits: the intervened codes are stored as their wrapped
    difference from the baseline's, exact, and all zeros (a few bytes deflated) wherever the edit changes
    nothing; the page adds them back."""
    return ((codes.astype(np.int64) + sign * base.astype(np.int64)) % (1 << bits)).astype(codes.dtype)


def _data_script(condition: str, layer: int, payload: str) -> str:
    return f"SinkExplorer.receive({json.dumps(condition)}, {layer}, \"{payload}\");\n"


def _json_for_script(value: Any) -> str:
    """JSON that is safe inside a <script> element (no `</script>` can end it early)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    """NaN/inf (not JSON) as None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _page(meta: dict) -> str:
    script = (_ASSETS / "explorer.js").read_text()
    style = (_ASSETS / "explorer.css").read_text()
    title = html.escape(meta["title"])
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<link rel='icon' href='data:,'>"
            f"<title>{title}</title><style>\n{style}</style></head>\n<body data-state='loading'>\n"
            f"<noscript>This page needs JavaScript (it runs offline, from this file).</noscript>\n"
            f"<script id='explorer-meta' type='application/json'>{_json_for_script(_finite(meta))}</script>\n"
            f"<script>\n{script}</script>\n</body></html>\n")


def write(exploration: Exploration, out: str | Path, budget_mb: float = DEFAULT_BUDGET_MB) -> Path:
    """Write the page, its per-layer data files, the summary and the Results into `out`; returns the page.

        >>> write(explore(model, data), "figures/explore/tiny-llama")     # -> .../explorer.html

    16-bit values when the folder fits `budget_mb`, else 8-bit; if 8-bit still does not fit, fewer
    sequences are shown (the grid still averages all of them) and the page says so.
    """
    if not budget_mb > 0:
        raise InputError(f"page budget {budget_mb!r} MB must be > 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the page and its data")
    meta = json.loads(json.dumps(_finite(exploration.meta), default=str))
    causal = meta["model"]["causal"]
    budget = budget_mb * 1e6
    n_sequences = len(meta["sequences"])
    fixed = len(_page({**meta, "storage": {}}).encode())

    def encode(bits: int, n: int) -> dict[str, list[str]]:
        codes = {c: [quantise(layer, bits) for layer in _cells(p[:, :, :n], causal)]
                 for c, p in exploration.patterns.items()}
        out = {"baseline": [pack_codes(layer) for layer in codes["baseline"]]}
        if "intervened" in codes:
            out["intervened"] = [pack_codes(_wrapped(edited, base, bits, -1))
                                 for edited, base in zip(codes["intervened"], codes["baseline"])]
        return out

    def size(payloads: dict[str, list[str]]) -> int:
        return fixed + sum(len(_data_script(c, 0, text)) for c, layers in payloads.items() for text in layers)

    bits, shown = 16, n_sequences
    payloads = encode(bits, shown)
    if size(payloads) > budget:
        bits = 8
        payloads = encode(bits, shown)
    while size(payloads) > budget and shown > 1:
        shown = max(1, min(shown - 1, int(shown * budget / size(payloads))))
        payloads = encode(bits, shown)
    notes = list(meta["notes"])
    step = 0.5 / ((1 << bits) - 1)
    notes.append(f"attention values stored at {bits}-bit precision (±{step:.1e}); data loads one layer at a time, "
                 "when a head of that layer is opened")
    if shown < n_sequences:
        notes.append(f"heatmaps show {shown} of the {n_sequences} measured sequences to keep the page under "
                     f"{budget_mb:g} MB; the grid averages all {n_sequences}")
        meta["sequences"] = meta["sequences"][:shown]
    files = {c: [f"{DATA_DIR}/{c}-L{layer:02d}.js" for layer in range(len(layers))] for c, layers in payloads.items()}
    meta["notes"] = notes
    meta["storage"] = {"bits": bits, "scale": (1 << bits) - 1, "layout": "lower-triangle" if causal else "full",
                       "order": "head, sequence, query, key", "compression": "deflate", "files": files,
                       "intervened": "codes minus the baseline's, modulo 2^bits"}
    meta["provenance"]["explorer"]["storage"] = {"bits": bits, "sequences_shown": shown, "budget_mb": budget_mb}

    (out / DATA_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (out / DATA_DIR).glob("*.js"):  # a rerun with fewer layers or no intervention leaves none behind
        stale.unlink()
    for condition, layers in payloads.items():
        for layer, text in enumerate(layers):
            (out / files[condition][layer]).write_text(_data_script(condition, layer, text))
    page = out / PAGE
    page.write_text(_page(meta))
    (out / "results").mkdir(exist_ok=True)
    for condition, results in exploration.results.items():
        results.save(out / "results" / f"sinks-{condition}.json")
    total = page.stat().st_size + sum((out / f).stat().st_size for layer_files in files.values() for f in layer_files)
    summary = {"format": FORMAT, "title": meta["title"], "page": PAGE, "model": meta["model"]["name"],
               "intervention": meta["labels"].get("intervened"), "sequences": len(meta["sequences"]),
               "positions": meta["positions"], "bits": bits, "bytes": total,
               "created": meta["provenance"]["explorer"].get("created"),
               "data": meta["provenance"]["explorer"].get("data_source")}
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return page


def write_explorer(model: Any, data: Any, out: str | Path, intervention: Any = None, sink: Any = None,
                   max_sequences: int = DEFAULT_MAX_SEQUENCES, max_positions: int = DEFAULT_MAX_POSITIONS,
                   budget_mb: float = DEFAULT_BUDGET_MB) -> Path:
    """Measure and write one explorer page (what `sinkbench explore` runs); returns the page's path.

        >>> write_explorer(zoo.load("tiny-llama"), data, "out/explore", intervention="mask-sink:layers=1")
    """
    return write(explore(model, data, intervention, sink, max_sequences, max_positions), out, budget_mb)


def read_page_data(out: str | Path) -> dict:
    """Decode what a written page holds, as the page's script does: {"meta", "patterns": {condition:
    [L, H, n, P, P] float32}} (the masked upper triangle of a causal model is 0).

        >>> read_page_data("out/explore")["patterns"]["baseline"][3, 2, 0]      # layer 3, head 2, sequence 0
    """
    out = Path(out)
    text = (out / PAGE).read_text()
    start = text.index("<script id='explorer-meta' type='application/json'>")
    body = text[text.index(">", start) + 1:text.index("</script>", start)]
    meta = json.loads(body)
    storage, model = meta["storage"], meta["model"]
    positions, n = meta["positions"], len(meta["sequences"])
    cells = positions * (positions + 1) // 2 if storage["layout"] == "lower-triangle" else positions * positions
    patterns, codes = {}, {}
    for condition in ("baseline", "intervened"):
        if condition not in storage["files"]:
            continue
        layers = []
        for layer, name in enumerate(storage["files"][condition]):
            script = (out / name).read_text()
            payload = script[script.rindex(", \"") + 3:script.rindex("\")")]
            layer_codes = unpack_codes(payload, storage["bits"])
            if condition == "intervened":
                layer_codes = _wrapped(layer_codes, codes["baseline"][layer], storage["bits"], +1)
            codes.setdefault(condition, []).append(layer_codes)
            values = (layer_codes.astype(np.float32) / storage["scale"]).reshape(model["n_heads"], n, cells)
            full = np.zeros((model["n_heads"], n, positions, positions), dtype=np.float32)
            if storage["layout"] == "lower-triangle":
                q, k = np.tril_indices(positions)
                full[..., q, k] = values
            else:
                full[...] = values.reshape(full.shape)
            layers.append(full)
        patterns[condition] = np.stack(layers)
    return {"meta": meta, "patterns": patterns}


def summary(out: str | Path) -> dict:
    """The summary a written page keeps next to it (explorer.json): title, model, size, precision.

        >>> summary("out/explore")["bytes"]
    """
    path = Path(out) / SUMMARY
    if not path.is_file():
        raise InputError(f"{out} holds no explorer page ({SUMMARY} is missing); write one with `sinkbench explore`")
    return json.loads(path.read_text())


def explorer_links(gallery: str | Path) -> list[dict]:
    """The explorer pages inside a gallery folder (any depth), for its index: [{"href", "title", ...}].

        >>> for link in explorer_links("figures"): print(link["href"], link["title"])
    """
    gallery = Path(gallery)
    links = []
    for summary in sorted(gallery.rglob(SUMMARY)):
        try:
            entry = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        if entry.get("format") != FORMAT or not (summary.parent / entry.get("page", PAGE)).is_file():
            continue
        href = (summary.parent / entry.get("page", PAGE)).relative_to(gallery).as_posix()
        links.append({**entry, "href": href})
    return links


__all__ = ["Exploration", "explore", "explorer_links", "pack_codes", "pack_layer", "quantise", "read_page_data",
           "summary", "unpack_codes", "unpack_layer", "write", "write_explorer"]
