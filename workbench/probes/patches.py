"""Where does a ViT's attention go, and which of its tokens grow large norms? Attention received per patch
and per special token, patch-norm maps and norm distributions (Darcet et al. 2024).

    >>> images = vision.image_set(model, "shapes", n=64)
    >>> att = image_attention(model, images)             # per layer/head: [CLS], registers, background, object
    >>> att.filter(metric="background_to_object_ratio", layer=5).df
    >>> nrm = patch_norms(model, images, rule="ratio:3")  # norm maps, histograms, two populations?

Both take an `ImageSet` (workbench.vision.images), whose position kinds say which key is [CLS] ([DIST]),
a register, a background patch or an object patch (and, once marked, a high-norm patch). Under a
test-time register (its hooks passed as `hooks=`, see `experiment.batch_hooks`) the extra last position is
`[TTR]`.

`image_attention` rows, per (layer, head) and kind (`[CLS]`, `[DIST]`, `registers`, `background`,
`object`, `high-norm`, `[TTR]`):
- `attention_share`: sum over the keys of that kind of the attention they receive, averaged over all
  queries (every row of the pattern sums to 1, so the shares of all kinds sum to 1); mean over images;
- `attention_per_token` = share / number of such keys in the image, and `ratio_to_uniform` = that x T
  (1 = what a uniform pattern gives every key);
- `cls_attention_share`, `cls_attention_per_token`: the same for the [CLS] query alone (the row a
  classifier reads; Darcet et al.'s attention maps);
- `background_to_object_ratio`: attention_per_token(background) / attention_per_token(object);
- per image, the single key that receives the most attention: `top_key_share` (its share, mean over
  images: a sink takes a large share in every image, wherever it sits) and `top_key_kind` (per kind, the
  fraction of images in which that key is of this kind); `cls_top_key_share` / `cls_top_key_kind` for
  the [CLS] query (Darcet et al.'s attention-map spikes on background patches: cls_top_key_kind
  background);
plus `attention_received` and `cls_attention` per (layer, head, position) (position maps; patches carry
row/col) and, for the first `examples` images, head-averaged maps `example_attention` /
`example_cls_attention` per (image, layer, position).

`patch_norms` rows, per layer (the residual stream after the block, `hook_resid_post`):
- `norm_mean` per kind, `norm_median` / `norm_max` / `max_to_median` over all patch tokens, and within
  each image `image_max_to_median` (mean over images; `_max`: the largest), which an artifact token
  in an image raises whatever the image's overall brightness;
- `high_norm_fraction`: patches flagged by the rule (`HighNormRule`: top:K, abs:X, ratio:R), and
  `high_norm_background_share`: the fraction of flagged patches that are background;
- two populations? `ashman_d`: Ashman's D between the two groups of log-norms found by Otsu's split,
  `upper_group_fraction`, `split_norm`. Splitting one normal population this way already gives
  D = 2.65 (half-normal means +-0.80 sd, sds 0.60 sd), so only D clearly above 3 says "two populations"
  (Darcet et al.'s outliers, 2 % of tokens far above the rest, give D >> 3); and the same among the
  background patches alone (`ashman_d_background`, `upper_group_fraction_background`): on generated
  shapes background and object patches differ in norm already, so an artifact population (a few
  background patches far above the others, Darcet et al. Fig. 3) shows in the background-only split;
- `norm_histogram` (layer, bin, bin_low, bin_high): counts of patch norms on log-spaced bins shared by
  all layers; `example_norm` per (image, layer, position) for norm maps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from workbench.core import positions as kinds_of
from workbench.core import sites
from workbench.core.errors import InputError, check_range
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.passes import Hook, PassContext, probe_pass

KINDS = ("[CLS]", "[DIST]", "registers", "background", "object", "high-norm", "[TTR]")


def _require_images(model: Any, images: Any) -> Any:
    model_info = info(model)
    if not model_info.is_image:
        raise InputError(f"{model_info.name} is a text model; this probe measures image models (ViT / DeiT)")
    if not hasattr(images, "patch_kinds"):
        raise InputError("this probe needs an ImageSet (workbench.vision.image_set(model, ...)), not token data")
    return model_info


def kind_masks(kinds: torch.Tensor, length: int) -> dict[str, torch.Tensor]:
    """[b, length] bool per kind; positions past the image set's (a test-time register) are [TTR]."""
    if length > kinds.shape[1]:
        extra = torch.full((kinds.shape[0], length - kinds.shape[1]), kinds_of.TEST_TIME_REGISTER,
                           dtype=kinds.dtype, device=kinds.device)
        kinds = torch.cat([kinds, extra], dim=1)
    return {
        "[CLS]": kinds == kinds_of.CLS,
        "[DIST]": kinds == kinds_of.DIST,
        "registers": kinds >= kinds_of.REGISTER,
        "background": (kinds == kinds_of.BACKGROUND) | (kinds == kinds_of.BACKGROUND_HIGH),
        "object": (kinds == kinds_of.OBJECT) | (kinds == kinds_of.OBJECT_HIGH),
        "high-norm": (kinds == kinds_of.BACKGROUND_HIGH) | (kinds == kinds_of.OBJECT_HIGH),
        "[TTR]": kinds == kinds_of.TEST_TIME_REGISTER,
    }


def _position_columns(model_info: Any, position: int, length: int) -> dict:
    """row/col for a patch, a name for a special position."""
    rows, cols = model_info.grid
    first = model_info.n_prefix
    if first <= position < first + rows * cols:
        row, col = divmod(position - first, cols)
        return {"position": position, "row": row, "col": col, "token": "patch"}
    if position < first:
        return {"position": position, "token": "[CLS]" if position == 0 else "[DIST]"}
    register = position - first - rows * cols
    name = f"[REG{register}]" if register < model_info.n_registers else "[TTR]"
    return {"position": position, "token": name}


def image_attention(model: Any, images: Any, layers: Any = None, heads: Any = None, examples: int = 4,
                    hooks: Sequence[Hook] = (), hooks_spec: dict | None = None, batch_size: int = 16,
                    progress: bool = True) -> Results:
    """Attention received by [CLS], registers, background and object patches, per layer and head.

        >>> res = image_attention(model, images, layers="3-5")
        >>> res.filter(metric="attention_share", kind="registers").df
    """
    started = time.perf_counter()
    model_info = _require_images(model, images)
    check_range("examples", examples, 0, len(images))
    layer_ids = sites.parse_layers(layers, model)
    head_ids = list(sites.parse_heads(heads, model))
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    n_l, n_h = len(layer_ids), len(head_ids)
    acc: dict[str, dict[str, torch.Tensor]] = {}
    maps: dict[str, torch.Tensor] = {}
    example_maps: dict[str, dict[tuple[int, int], torch.Tensor]] = {"example_attention": {},
                                                                     "example_cls_attention": {}}

    def add(name: str, kind: str, values: torch.Tensor, weight: torch.Tensor, i: int) -> None:
        entry = acc.setdefault(f"{name}|{kind}", {"sum": torch.zeros(n_l, n_h, dtype=torch.float64),
                                                  "n": torch.zeros(n_l, dtype=torch.float64)})
        entry["sum"][i] += (values * weight[:, None]).sum(0).double().cpu()
        entry["n"][i] += float(weight.sum())

    def on_pattern(layer: int, pattern: torch.Tensor, batch: PassContext) -> None:
        i = slot[layer]
        weights = pattern[:, head_ids].float()  # [b, h, q, k]
        length = weights.shape[-1]
        block = batch.query_block
        if block.is_whole:
            received = weights.mean(dim=2)  # [b, h, k]: share of all queries' attention landing on k
            from_cls = weights[:, :, 0, :]  # [b, h, k]: the [CLS] query's row
        else:  # blockwise (workbench.attention): sum the blocks' rows, measure once after the last block
            held = batch.scratch.setdefault(("image-attention", layer), {"sum": 0.0, "cls": None})
            held["sum"] = held["sum"] + weights.sum(dim=2)
            if block.first:
                held["cls"] = weights[:, :, 0, :]
            if not block.last:
                return
            del batch.scratch[("image-attention", layer)]
            received, from_cls = held["sum"] / block.n_queries, held["cls"]
        for key, values in (("attention_received", received), ("cls_attention", from_cls)):
            if key not in maps:
                maps[key] = torch.zeros(n_l, n_h, length, dtype=torch.float64)
            maps[key][i] += values.sum(0).double().cpu()
        masks = kind_masks(batch.tokens, length)
        every = torch.ones(received.shape[0], device=received.device)
        for prefix, values in (("", received), ("cls_", from_cls)):
            top_share, top_key = values.max(dim=-1)  # [b, h]: the key that takes most attention in each image
            add(f"{prefix}top_key_share", "*", top_share, every, i)
            for kind, mask in masks.items():
                if mask.any():
                    add(f"{prefix}top_key_kind", kind, mask.gather(1, top_key).float(), every, i)
        for kind, mask in masks.items():
            count = mask.sum(-1).float()  # [b]
            present = (count > 0).float()
            if not present.any():
                continue
            for prefix, values in (("", received), ("cls_", from_cls)):
                share = (values * mask[:, None, :]).sum(-1)  # [b, h]
                add(f"{prefix}attention_share", kind, share, present, i)
                add(f"{prefix}attention_per_token", kind, share / count.clamp_min(1)[:, None], present, i)
        for row, image in enumerate(batch.index):
            if image < examples:
                example_maps["example_attention"][(image, layer)] = received[row].mean(0).cpu()
                example_maps["example_cls_attention"][(image, layer)] = from_cls[row].mean(0).cpu()

    probe_pass(model, images, [("attn.hook_pattern", on_pattern)], layer_ids, batch_size=batch_size,
               progress=progress, desc="image attention", hooks=hooks)
    common = {"experiment": "probe:image-attention", "model": model_info.name}
    length = maps["attention_received"].shape[-1]
    rows = []
    for key, entry in acc.items():
        metric, kind = key.split("|")
        mean = entry["sum"] / entry["n"].clamp_min(1)[:, None]
        for i, layer in enumerate(layer_ids):
            if entry["n"][i] == 0:
                continue
            for j, head in enumerate(head_ids):
                rows.append({"metric": metric, "layer": layer, "head": head, "kind": None if kind == "*" else kind,
                             "value": float(mean[i, j]), "n": int(entry["n"][i]), **common})
                if metric == "attention_per_token":
                    rows.append({"metric": "ratio_to_uniform", "layer": layer, "head": head, "kind": kind,
                                 "value": float(mean[i, j]) * length, "n": int(entry["n"][i]), **common})
    per_token = {(r["layer"], r["head"], r["kind"]): r["value"] for r in rows if r["metric"] == "attention_per_token"}
    for layer in layer_ids:
        for head in head_ids:
            bg, obj = per_token.get((layer, head, "background")), per_token.get((layer, head, "object"))
            if bg is not None and obj:
                rows.append({"metric": "background_to_object_ratio", "layer": layer, "head": head, "kind": None,
                             "value": bg / obj, **common})
    for key, total in maps.items():
        mean = total / len(images)
        for i, layer in enumerate(layer_ids):
            for j, head in enumerate(head_ids):
                for position in range(length):
                    rows.append({"metric": key, "layer": layer, "head": head, "value": float(mean[i, j, position]),
                                 **_position_columns(model_info, position, length), **common})
    for metric, per_image in example_maps.items():
        for (image, layer), values in sorted(per_image.items()):
            for position in range(len(values)):
                rows.append({"metric": metric, "image": image, "layer": layer, "head": None,
                             "value": float(values[position]), **_position_columns(model_info, position, length),
                             **common})
    header = provenance("probe:image-attention", model, images, layers=list(layer_ids), heads=head_ids,
                        examples=examples, intervention=hooks_spec,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def otsu_split(values: np.ndarray) -> tuple[float, float, float]:
    """Split 1-D values into two groups at the threshold that maximises the between-group variance (Otsu);
    returns (threshold, Ashman's D = sqrt(2) |m1 - m2| / sqrt(s1^2 + s2^2), fraction above). One normal
    population gives D = 2.65 under this split; two separated ones give more."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    if n < 4 or ordered[0] == ordered[-1]:
        return float(ordered[-1]), 0.0, 0.0
    prefix = np.cumsum(ordered)
    k = np.arange(1, n)  # the lower group holds ordered[:k]
    mean_low, mean_high = prefix[:-1] / k, (prefix[-1] - prefix[:-1]) / (n - k)
    between = k * (n - k) * (mean_low - mean_high) ** 2
    cut = int(np.argmax(between)) + 1
    low, high = ordered[:cut], ordered[cut:]
    spread = np.sqrt(low.var() + high.var())
    d = float(np.sqrt(2) * abs(high.mean() - low.mean()) / spread) if spread > 0 else float("inf")
    return float((ordered[cut - 1] + ordered[cut]) / 2), d, len(high) / n


def patch_norms(model: Any, images: Any, layers: Any = None, rule: Any = "ratio:2", examples: int = 4,
                bins: int = 40, hooks: Sequence[Hook] = (), hooks_spec: dict | None = None, batch_size: int = 32,
                progress: bool = True) -> Results:
    """Residual norm of every token per layer: maps, histograms, high-norm fractions and two-population tests.

        >>> res = patch_norms(model, images, rule="abs:150")             # Darcet et al.'s DINOv2 threshold
        >>> res.filter(metric="ashman_d").df[["layer", "value"]]
    """
    from workbench.vision.images import HighNormRule

    started = time.perf_counter()
    model_info = _require_images(model, images)
    rule = HighNormRule.parse(rule)
    check_range("examples", examples, 0, len(images))
    check_range("histogram bins", bins, 2, 1000)
    layer_ids = sites.parse_layers(layers, model)
    rows_, cols_ = model_info.grid
    first, n_patches = model_info.n_prefix, rows_ * cols_
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    norms: list[np.ndarray | None] = [None] * len(layer_ids)  # [n, T] per layer

    def on_resid(layer: int, resid: torch.Tensor, batch: PassContext) -> None:
        values = resid.float().norm(dim=-1).cpu().numpy()  # [b, T']
        i = slot[layer]
        if norms[i] is None:
            norms[i] = np.zeros((len(images), values.shape[1]), dtype=np.float32)
        norms[i][batch.index] = values

    probe_pass(model, images, [(sites.RESID_POST, on_resid)], layer_ids, batch_size=batch_size,
               progress=progress, desc="patch norms", hooks=hooks)
    length = norms[0].shape[1]
    masks = {k: m.numpy() for k, m in kind_masks(torch.from_numpy(images.kinds), length).items()}
    background = images.background.reshape(len(images), -1)
    patch_values = np.concatenate([n[:, first:first + n_patches].ravel() for n in norms])
    edges = np.geomspace(max(float(patch_values.min()), 1e-6), float(patch_values.max()) * 1.0001, bins + 1)
    common = {"experiment": "probe:patch-norms", "model": model_info.name, "head": None}
    out = []
    for i, layer in enumerate(layer_ids):
        layer_norms = norms[i]
        patches = layer_norms[:, first:first + n_patches]  # [n, P]
        for kind, mask in masks.items():
            if mask.any():
                out.append({"metric": "norm_mean", "layer": layer, "kind": kind, "value": float(layer_norms[mask].mean()),
                            "n": int(mask.sum()), **common})
        median = float(np.median(patches))
        per_image = patches.max(axis=1) / np.maximum(np.median(patches, axis=1), 1e-12)
        out += [{"metric": "norm_median", "layer": layer, "value": median, **common},
                {"metric": "norm_max", "layer": layer, "value": float(patches.max()), **common},
                {"metric": "max_to_median", "layer": layer, "value": float(patches.max()) / max(median, 1e-12), **common},
                {"metric": "image_max_to_median", "layer": layer, "value": float(per_image.mean()), **common},
                {"metric": "image_max_to_median_max", "layer": layer, "value": float(per_image.max()), **common}]
        flags = rule.flag(torch.from_numpy(patches)).numpy()
        out.append({"metric": "high_norm_fraction", "layer": layer, "value": float(flags.mean()), "rule": rule.label,
                    **common})
        if flags.any():
            out.append({"metric": "high_norm_background_share", "layer": layer, "rule": rule.label,
                        "value": float((flags & background).sum() / flags.sum()), **common})
        split, d, upper = otsu_split(np.log(np.maximum(patches.ravel(), 1e-12)))
        out += [{"metric": "ashman_d", "layer": layer, "value": d, **common},
                {"metric": "upper_group_fraction", "layer": layer, "value": upper, **common},
                {"metric": "split_norm", "layer": layer, "value": float(np.exp(split)), **common}]
        if background.sum() >= 4:  # artifacts live among background patches, which are otherwise alike
            _, d_bg, upper_bg = otsu_split(np.log(np.maximum(patches[background], 1e-12)))
            out += [{"metric": "ashman_d_background", "layer": layer, "value": d_bg, **common},
                    {"metric": "upper_group_fraction_background", "layer": layer, "value": upper_bg, **common}]
        counts, _ = np.histogram(patches.ravel(), bins=edges)
        out += [{"metric": "norm_histogram", "layer": layer, "bin": b, "bin_low": float(edges[b]),
                 "bin_high": float(edges[b + 1]), "value": int(counts[b]), **common} for b in range(bins)]
        for image in range(examples):
            out += [{"metric": "example_norm", "image": image, "layer": layer, "value": float(layer_norms[image, p]),
                     **_position_columns(model_info, p, length), **common} for p in range(length)]
    header = provenance("probe:patch-norms", model, images, layers=list(layer_ids), rule=rule.label, bins=bins,
                        examples=examples, intervention=hooks_spec,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(out, header)


def summarize_attention(results: Results) -> str:
    frame = results.df
    share = frame[frame.metric == "attention_share"].pivot_table(index="layer", columns="kind", values="value",
                                                                  aggfunc="mean")
    ratio = frame[frame.metric == "background_to_object_ratio"].groupby("layer").value.mean()
    share["bg/obj per token"] = ratio
    share["top-key share"] = frame[frame.metric == "top_key_share"].groupby("layer").value.mean()
    return ("attention share per kind (mean over heads and queries), background / object attention per token, and "
            "the share of the single most-attended key of each image\n" + share.round(4).to_string())


def summarize_norms(results: Results) -> str:
    frame = results.df
    keep = ["norm_median", "norm_max", "image_max_to_median", "high_norm_fraction", "ashman_d", "upper_group_fraction",
            "ashman_d_background", "upper_group_fraction_background"]
    table = frame[frame.metric.isin(keep)].pivot_table(index="layer", columns="metric", values="value")
    kinds = frame[frame.metric == "norm_mean"].pivot_table(index="layer", columns="kind", values="value")
    rule = results.provenance.get("rule")
    return (f"patch-token norms per layer (high-norm rule {rule}; Ashman's D: 2.65 for one normal population, "
            "clearly above 3 for two)\n"
            + table[[k for k in keep if k in table]].round(3).to_string()
            + "\nmean norm per kind\n" + kinds.round(3).to_string())
