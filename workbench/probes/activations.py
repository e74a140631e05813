"""Massive activations (Sun et al. 2024): a few residual-stream entries, at fixed dimensions of the sink
tokens, thousands of times larger than the median.

    >>> res = massive_activations(model, data)                  # per layer: top-k |a|, median, ratio
    >>> res.value("first_massive_layer")

Per layer l (the residual stream after block l, `blocks.{l}.hook_resid_post`):
- `top1`..`topK`: the K largest |a| over the whole dataset, each with its sequence, position, token
  and dimension (and signed value);
- `median`: the median |a| of the layer's hidden states (the mean of the per-batch medians: one
  exact median per batch of `batch_size` sequences);
- `top1_to_median`: top1 / median;
- `massive_count`: how many activations satisfy the rule, and `massive_dims` rows (dimension, the
  position and token where it fired most, count);
- `first_token_norm_ratio`: ||h_0|| / mean_{t != 0} ||h_t|| (Gu et al. 2025's massive-activation proxy).
The rule that flags an activation as massive is configurable: `sun` = |a| > abs_threshold (100) and
|a| >= ratio_threshold (1000) x median (Sun et al. §2.2; "about 1000x"), `ratio` = the ratio alone
(a 135M model may never pass 100; Gallego-Feliciano et al. use the ratio for small models).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import torch

from workbench.core import sites
from workbench.core.data import Dataset, str_tokens
from workbench.core.errors import InputError, check_number, check_range
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.core.sites import SinkSpec
from workbench.passes import PassContext, probe_pass

RULES = ("sun", "ratio")


def massive_activations(model: Any, data: Dataset, layers: Any = None, top_k: int = 3, rule: str = "sun",
                        abs_threshold: float = 100.0, ratio_threshold: float = 1000.0, site: str = sites.RESID_POST,
                        batch_size: int = 8, progress: bool = True) -> Results:
    """Top-k |activation| per layer with where it sits, the median, and which activations are massive.

        >>> massive_activations(model, data, rule="ratio", ratio_threshold=100).filter(metric="top1").df
    """
    started = time.perf_counter()
    model_info = info(model)
    if rule not in RULES:
        raise InputError(f"unknown massive-activation rule {rule!r}: use one of {', '.join(RULES)}")
    check_range("top_k", top_k, 1, 100)
    check_number("abs_threshold", abs_threshold, low=0.0)
    check_number("ratio_threshold", ratio_threshold, low=0.0, low_open=True)
    if site not in (sites.RESID_PRE, sites.RESID_MID, sites.RESID_POST):
        raise InputError(f"site {site!r}: use {sites.RESID_PRE}, {sites.RESID_MID} or {sites.RESID_POST}")
    layer_ids = sites.parse_layers(layers, model)
    state = {layer: {"top": [], "medians": [], "count": 0, "dims": Counter(), "where": {}, "norm_ratio": []}
             for layer in layer_ids}
    floor = abs_threshold if rule == "sun" else 0.0

    def on_resid(layer: int, resid: torch.Tensor, batch: PassContext) -> None:
        magnitude = resid.float().abs()  # [b, T, d]
        median = float(magnitude.median())
        entry = state[layer]
        entry["medians"].append(median)
        flat = magnitude.flatten()
        values, where = torch.topk(flat, min(top_k, flat.numel()))
        _, length, width = magnitude.shape
        for value, index in zip(values.tolist(), where.tolist()):
            row, rest = divmod(index, length * width)
            position, dim = divmod(rest, width)
            signed = float(resid[row, position, dim])
            entry["top"].append((value, batch.index[row], position, int(batch.tokens[row, position]), dim, signed))
        entry["top"] = sorted(entry["top"], reverse=True)[:top_k]
        flagged = (magnitude > floor) & (magnitude >= ratio_threshold * median)
        entry["count"] += int(flagged.sum())
        hits = flagged.nonzero()
        dims, counts = torch.unique(hits[:, 2], return_counts=True)
        entry["dims"].update(dict(zip(dims.tolist(), counts.tolist())))
        for row, position, dim in hits[:10_000].tolist():  # where each dim fires (a loose rule can flag many)
            entry["where"].setdefault(dim, Counter())[(position, int(batch.tokens[row, position]))] += 1
        norms = resid.float().norm(dim=-1)  # [b, T]
        entry["norm_ratio"].extend((norms[:, 0] / norms[:, 1:].mean(dim=1)).tolist())

    probe_pass(model, data, [(site, on_resid)], layer_ids, SinkSpec(), batch_size, progress, desc="activations")
    common = {"experiment": "probe:massive-activations", "model": model_info.name, "head": None, "site": site}
    rows, first_massive = [], None
    for layer in layer_ids:
        entry = state[layer]
        median = sum(entry["medians"]) / len(entry["medians"])
        top_tokens = str_tokens(model, [t[3] for t in entry["top"]])
        for rank, ((value, seq, position, token, dim, signed), name) in enumerate(zip(entry["top"], top_tokens), 1):
            rows.append({"metric": f"top{rank}", "layer": layer, "value": value, "signed_value": signed,
                         "sequence": seq, "position": position, "token": name, "token_id": token, "dim": dim,
                         **common})
        rows.append({"metric": "median", "layer": layer, "value": median, **common})
        rows.append({"metric": "top1_to_median", "layer": layer, "value": entry["top"][0][0] / max(median, 1e-12),
                     **common})
        rows.append({"metric": "massive_count", "layer": layer, "value": entry["count"], **common})
        rows.append({"metric": "first_token_norm_ratio", "layer": layer,
                     "value": sum(entry["norm_ratio"]) / len(entry["norm_ratio"]), **common})
        for dim, count in entry["dims"].most_common(5):
            (position, token), hits = entry["where"][dim].most_common(1)[0]
            rows.append({"metric": "massive_dims", "layer": layer, "dim": dim, "value": count, "position": position,
                         "token": str_tokens(model, [token])[0], "token_id": token, "hits_at_position": hits,
                         **common})
        if entry["count"] and first_massive is None:
            first_massive = layer
    rows.append({"metric": "first_massive_layer", "layer": None, "value": first_massive, **common})
    header = provenance("probe:massive-activations", model, data, rule=rule, abs_threshold=abs_threshold,
                        ratio_threshold=ratio_threshold, top_k=top_k, layers=list(layer_ids),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def summarize(results: Results) -> str:
    frame = results.df
    lines = ["layer  top1 |a| (pos, token, dim)            median   top1/median  massive"]
    for layer in sorted(frame.layer.dropna().unique()):
        at = frame[frame.layer == layer]
        top = at[at.metric == "top1"].iloc[0]
        median = at[at.metric == "median"].value.iloc[0]
        ratio = at[at.metric == "top1_to_median"].value.iloc[0]
        count = at[at.metric == "massive_count"].value.iloc[0]
        where = f"({int(top.position)}, {top.token!r}, {int(top.dim)})"
        lines.append(f"  {int(layer):>3}  {top.value:9.2f} {where:<26} {median:8.4f}  {ratio:11.1f}  {int(count):>7}")
    first = frame[frame.metric == "first_massive_layer"].value.iloc[0]
    prov = results.provenance
    lines.append(f"  first layer with massive activations (rule {prov.get('rule')}: "
                 f"|a| > {prov.get('abs_threshold') if prov.get('rule') == 'sun' else 0}, "
                 f">= {prov.get('ratio_threshold')} x median): {first}")
    return "\n".join(lines)


def layer_snapshot(model: Any, text: str = "Summer is warm. Winter is cold.", layer: int | None = None,
                   n_top: int = 3, n_other: int = 9, prepend_bos: bool | None = None, seed: int = 0) -> Results:
    """|activation| of one layer's residual stream for one input, over its top dimensions and a few random
    others: the data of Sun et al. 2024's Fig. 1 (their sentence is the default).

        >>> layer_snapshot(model).df            # rows (position, token, dim, value)

    Without `layer`, the first layer whose top |activation| is >= 1000x its median (else the layer with
    the largest ratio) is shown.
    """
    from workbench.core.data import from_text

    model_info = info(model)
    data = from_text(model, text, window=min(model_info.n_ctx, 512), prepend_bos=prepend_bos)
    tokens = data.tensor()
    store: dict[int, torch.Tensor] = {}

    def grab(index: int):
        def fn(tensor: torch.Tensor, hook: Any) -> None:
            store[index] = tensor[0].detach().float().abs().cpu()
        return fn

    hooks = [(sites.resid(i), grab(i)) for i in range(model_info.n_layers)]
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        model(tokens.to(next(model.parameters()).device))
    ratios = {i: float(a.max() / a.median().clamp_min(1e-12)) for i, a in store.items()}
    if layer is None:
        layer = next((i for i in sorted(ratios) if ratios[i] >= 1000), max(ratios, key=ratios.get))
    sites.parse_layers(layer, model)
    values = store[layer]  # [T, d]
    top = torch.topk(values.max(dim=0).values, n_top).indices.tolist()
    rest = [d for d in range(values.shape[1]) if d not in top]
    others = sorted(np.random.default_rng(seed).choice(rest, size=min(n_other, len(rest)), replace=False).tolist())
    dims = sorted(top + others)
    names = str_tokens(model, tokens[0].tolist())
    rows = [{"experiment": "probe:layer-snapshot", "model": model_info.name, "metric": "abs_activation",
             "layer": layer, "head": None, "position": p, "token": names[p], "dim": d, "value": float(values[p, d]),
             "massive_dim": d in top} for p in range(values.shape[0]) for d in dims]
    header = provenance("probe:layer-snapshot", model, data, text=text, layer=layer, top_dims=top,
                        top1_to_median=ratios[layer])
    return Results(rows, header)
