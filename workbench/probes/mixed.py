"""Where do a multimodal LM's text queries attend in S = [BOS] [V'] question answer, and are its visual sinks
the LM's own sink? (Kang et al. 2025, "See What You Are Told", ICLR.)

    >>> data = multimodal.mixed_set(model, n=64)
    >>> att = mixed_attention(model, data)                    # per layer/head: bos, visual-bg, visual-obj, question
    >>> sinks = visual_sinks(model, data, threshold=0.05)     # [n, T] bool: a sink= mask for probes and the catalogue
    >>> act = visual_sink_activations(model, data)            # do the visual sinks carry the BOS sink's dimensions?

Text queries are the positions after the image (the question and the first answer token). A visual sink is a
visual token that receives more than `threshold` of the text queries' attention (mean over the text queries and
the heads; per layer in `mixed_attention`, and over the chosen layers in `visual_sinks`). Kang et al. find them
by their massive activation in the base LLM's sink dimensions instead; `visual_sink_activations` checks whether
the two definitions meet: the sink dimensions of layer l are the `top_dims` residual dimensions with the largest
mean |x| at the text BOS (the LM's own first-token sink, Sun et al. 2024), and a token's sink-dimension ratio is
phi(x) = max_{d in D} |x_d| / RMS(x) (Kang et al.'s phi with the RMS as the scale, so it is at most sqrt(d_model)).

`mixed_attention` rows, per (layer, head) and kind (`bos`, `visual-bg`, `visual-obj`, `question`, `answer`):
- `attention_share`: the text queries' attention landing on keys of that kind (a row sums to 1, so the
  shares of the kinds sum to 1), mean over queries and sequences; `attention_per_token` = share / keys of the kind;
per layer (head None, mean over heads):
- `visual_sink_fraction`: visual tokens that are sinks at this layer; `visual_sink_share`: the text queries'
  attention on them; `visual_sink_background_fraction`: the sinks that are background (NaN without sinks);
- `top_visual_share`: the share of the most-attended visual token; `top_visual_background`: how often it is
  background; `visual_share`: the share of all visual tokens;
plus `visual_attention_received` per (layer, visual position, row, col): the head-mean share on each visual
token, mean over sequences (a sink at a fixed place shows as one bright cell).

`visual_sink_activations` rows, per layer and group (`bos`, `visual-sink`, `visual-other`, `visual-bg`,
`visual-obj`, `question`): `sink_dim_ratio` (mean phi) and `massive_fraction` (phi > tau); per layer `sink_dim`
(rank r: the dimension) and `visual_sink_count` (sinks per sequence).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from workbench.core import positions as kinds_of
from workbench.core import sites
from workbench.core.errors import InputError, check_number, check_range
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.passes import Hook, PassContext, probe_pass

KINDS = ("bos", "visual-bg", "visual-obj", "question", "answer")
GROUPS = ("bos", "visual-sink", "visual-other", "visual-bg", "visual-obj", "question")
DEFAULT_THRESHOLD = 0.05


def _require_mixed(model: Any, data: Any) -> Any:
    model_info = info(model)
    if not model_info.is_multimodal:
        raise InputError(f"{model_info.name} is not a multimodal LM; this probe measures image+text sequences "
                         "(tiny-llava, shapes-llava or a local LLaVA directory)")
    if not hasattr(data, "kinds") or not hasattr(data, "scenes"):
        raise InputError("this probe needs a mixed image+text set (workbench.multimodal.mixed_set(model, ...)), "
                         f"not {type(data).__name__}")
    return model_info


def check_threshold(threshold: Any) -> float:
    return check_number("visual-sink threshold", threshold, low=0.0, high=1.0, low_open=True)


def kind_masks(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """[b, T] bool per kind of a mixed batch (tokens with kind bits, workbench.core.positions)."""
    kinds = kinds_of.mixed_kinds(tokens)
    bos = torch.zeros_like(kinds, dtype=torch.bool)
    bos[:, 0] = True
    return {"bos": bos, "visual-bg": kinds == kinds_of.MIXED_VISUAL_BG, "visual-obj": kinds == kinds_of.MIXED_VISUAL_OBJ,
            "question": (kinds == kinds_of.MIXED_TEXT) & ~bos, "answer": kinds == kinds_of.MIXED_ANSWER}


def text_queries(tokens: torch.Tensor) -> torch.Tensor:
    """[b, T] bool: the text positions after the image (question and answer)."""
    masks = kind_masks(tokens)
    return masks["question"] | masks["answer"]


def _received(pattern: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """[b, h, k]: the mean over the text queries of each key's attention (pattern [b, h, q, k])."""
    weights = queries[:, None, :, None].to(pattern.dtype)
    return (pattern * weights).sum(2) / queries.sum(1).clamp_min(1)[:, None, None].to(pattern.dtype)


def mixed_attention(model: Any, data: Any, layers: Any = None, heads: Any = None,
                    threshold: float = DEFAULT_THRESHOLD, hooks: Sequence[Hook] = (), hooks_spec: dict | None = None,
                    batch_size: int = 16, progress: bool = True) -> Results:
    """The text queries' attention to each kind of position, per layer and head, and the visual sinks per layer.

        >>> res = mixed_attention(model, data, layers="1-2", threshold=0.05)
        >>> res.filter(metric="attention_share", kind="visual-bg").df
    """
    started = time.perf_counter()
    model_info = _require_mixed(model, data)
    threshold = check_threshold(threshold)
    layer_ids = sites.parse_layers(layers, model)
    head_ids = list(sites.parse_heads(heads, model))
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    n_l, n_h = len(layer_ids), len(head_ids)
    share = {k: torch.zeros(n_l, n_h, dtype=torch.float64) for k in KINDS}
    per_token = {k: torch.zeros(n_l, n_h, dtype=torch.float64) for k in KINDS}
    stats = {m: torch.zeros(n_l, dtype=torch.float64) for m in
             ("visual_sink_fraction", "visual_sink_share", "top_visual_share", "top_visual_background",
              "visual_share")}
    bg_sinks, all_sinks = torch.zeros(n_l, dtype=torch.float64), torch.zeros(n_l, dtype=torch.float64)
    n_visual = model_info.n_image_tokens
    grid_map = torch.zeros(n_l, n_visual, dtype=torch.float64)

    def on_pattern(layer: int, pattern: torch.Tensor, ctx: PassContext) -> None:
        i = slot[layer]
        masks = kind_masks(ctx.tokens)
        received = _received(pattern[:, head_ids].float(), text_queries(ctx.tokens))  # [b, h, k]
        for kind in KINDS:
            keys = masks[kind][:, None, :].float()
            got = (received * keys).sum(-1)  # [b, h]
            share[kind][i] += got.sum(0).double().cpu()
            per_token[kind][i] += (got / masks[kind].sum(1, keepdim=True).clamp_min(1)).sum(0).double().cpu()
        visual = masks["visual-bg"] | masks["visual-obj"]
        mean_heads = received.mean(1)  # [b, k]
        on_visual = mean_heads.masked_fill(~visual, 0.0)
        sinks = visual & (on_visual > threshold)
        stats["visual_sink_fraction"][i] += (sinks.sum(1) / visual.sum(1).clamp_min(1)).sum().double().cpu()
        stats["visual_sink_share"][i] += (on_visual * sinks).sum(1).sum().double().cpu()
        stats["visual_share"][i] += on_visual.sum(1).sum().double().cpu()
        top = on_visual.argmax(1)
        stats["top_visual_share"][i] += on_visual.gather(1, top[:, None]).sum().double().cpu()
        stats["top_visual_background"][i] += masks["visual-bg"].gather(1, top[:, None]).sum().double().cpu()
        bg_sinks[i] += float((sinks & masks["visual-bg"]).sum())
        all_sinks[i] += float(sinks.sum())
        grid_map[i] += torch.stack([row[v] for row, v in zip(mean_heads, visual)]).sum(0).double().cpu()

    probe_pass(model, data, [("attn.hook_pattern", on_pattern)], layer_ids, batch_size=batch_size, progress=progress,
               desc="mixed-attention", hooks=hooks)
    n = len(data)
    common = {"experiment": "probe:mixed-attention", "model": model_info.name}
    rows = []
    for i, layer in enumerate(layer_ids):
        for j, head in enumerate(head_ids):
            for kind in KINDS:
                rows.append({"metric": "attention_share", "layer": layer, "head": head, "kind": kind,
                             "value": float(share[kind][i, j] / n), **common})
                rows.append({"metric": "attention_per_token", "layer": layer, "head": head, "kind": kind,
                             "value": float(per_token[kind][i, j] / n), **common})
        for metric, total in stats.items():
            rows.append({"metric": metric, "layer": layer, "head": None, "kind": None, "value": float(total[i] / n),
                         **common})
        rows.append({"metric": "visual_sink_background_fraction", "layer": layer, "head": None, "kind": None,
                     "value": float(bg_sinks[i] / all_sinks[i]) if all_sinks[i] else float("nan"), **common})
        cols = int(round(n_visual ** 0.5))
        for v in range(n_visual):
            rows.append({"metric": "visual_attention_received", "layer": layer, "head": None, "kind": None,
                         "position": 1 + v, "row": v // cols, "col": v % cols, "value": float(grid_map[i, v] / n),
                         **common})
    header = provenance("probe:mixed-attention", model, data, layers=list(layer_ids), heads=head_ids,
                        threshold=threshold, intervention=hooks_spec,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def visual_sinks(model: Any, data: Any, threshold: float = DEFAULT_THRESHOLD, layers: Any = None,
                 hooks: Sequence[Hook] = (), batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """[n, T] bool: the visual tokens of each sequence that receive more than `threshold` of the text queries'
    attention (mean over the text queries, the heads and `layers`). A sink= mask for every probe and intervention.

        >>> probes.sinks(model, data, sink=visual_sinks(model, data))
    """
    _require_mixed(model, data)
    threshold = check_threshold(threshold)
    layer_ids = sites.parse_layers(layers, model)
    found = torch.zeros(data.tokens.shape, dtype=torch.float64)

    def on_pattern(layer: int, pattern: torch.Tensor, ctx: PassContext) -> None:
        received = _received(pattern.float(), text_queries(ctx.tokens)).mean(1)  # [b, k]
        found[ctx.index] += received.double().cpu() / len(layer_ids)

    probe_pass(model, data, [("attn.hook_pattern", on_pattern)], layer_ids, batch_size=batch_size, progress=progress,
               desc="visual-sinks", hooks=hooks)
    visual = kinds_of.mixed_kinds(data.tokens) >= kinds_of.MIXED_VISUAL_BG
    return visual & (found > threshold)


def visual_sink_activations(model: Any, data: Any, threshold: float = DEFAULT_THRESHOLD, layers: Any = None,
                            top_dims: int = 2, tau: float | None = None, sink_layers: Any = None,
                            hooks: Sequence[Hook] = (), hooks_spec: dict | None = None, batch_size: int = 16,
                            progress: bool = True) -> Results:
    """Do the visual sinks carry the LM's own sink dimensions? phi(x) per layer for BOS, visual sinks, the other
    visual tokens and the question (visual sinks from `visual_sinks(threshold, sink_layers)`).

        >>> res = visual_sink_activations(model, data, threshold=0.05, top_dims=2)
        >>> res.filter(metric="sink_dim_ratio", group="visual-sink").df
    """
    started = time.perf_counter()
    model_info = _require_mixed(model, data)
    check_range("top_dims", top_dims, 1, model_info.d_model)
    tau = float(model_info.d_model ** 0.5 / 2) if tau is None else \
        check_number("tau (the phi threshold of a massive activation)", tau, low=0.0, low_open=True)
    layer_ids = sites.parse_layers(layers, model)
    sinks = visual_sinks(model, data, threshold, sink_layers, hooks=hooks, batch_size=batch_size)
    d = model_info.d_model
    bos_abs = torch.zeros(len(layer_ids), d, dtype=torch.float64)
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    cached: dict[int, list[tuple[list[int], torch.Tensor]]] = {layer: [] for layer in layer_ids}

    def on_resid(layer: int, resid: torch.Tensor, ctx: PassContext) -> None:
        bos_abs[slot[layer]] += resid[:, 0].abs().sum(0).double().cpu()
        cached[layer].append((list(ctx.index), resid.float().cpu()))

    probe_pass(model, data, [(sites.RESID_POST, on_resid)], layer_ids, batch_size=batch_size, progress=progress,
               desc="visual-sink-activations", hooks=hooks)
    common = {"experiment": "probe:visual-sink-activations", "model": model_info.name, "head": None}
    rows = []
    for i, layer in enumerate(layer_ids):
        dims = torch.topk(bos_abs[i], top_dims).indices
        for rank, dim in enumerate(dims.tolist()):
            rows.append({"metric": "sink_dim", "layer": layer, "rank": rank, "value": float(dim), **common})
        sums = {g: [0.0, 0.0, 0] for g in GROUPS}  # phi sum, massive count, tokens
        for index, resid in cached[layer]:
            phi = resid[..., dims].abs().amax(-1) / resid.pow(2).mean(-1).sqrt().clamp_min(1e-12)  # [b, T]
            masks = kind_masks(data.tokens[index])
            sink = sinks[index]
            visual = masks["visual-bg"] | masks["visual-obj"]
            groups = {"bos": masks["bos"], "visual-sink": sink, "visual-other": visual & ~sink,
                      "visual-bg": masks["visual-bg"], "visual-obj": masks["visual-obj"], "question": masks["question"]}
            for g, mask in groups.items():
                sums[g][0] += float(phi[mask].sum())
                sums[g][1] += float((phi[mask] > tau).sum())
                sums[g][2] += int(mask.sum())
        for g, (total, massive, count) in sums.items():
            rows.append({"metric": "sink_dim_ratio", "layer": layer, "group": g, "n": count,
                         "value": total / count if count else float("nan"), **common})
            rows.append({"metric": "massive_fraction", "layer": layer, "group": g, "n": count,
                         "value": massive / count if count else float("nan"), **common})
        rows.append({"metric": "visual_sink_count", "layer": layer, "value": float(sinks.sum()) / len(data),
                     **common})
    header = provenance("probe:visual-sink-activations", model, data, layers=list(layer_ids), threshold=threshold,
                        top_dims=top_dims, tau=tau, intervention=hooks_spec,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def summarize_attention(results: Results) -> str:
    frame = results.df
    shares = frame[frame.metric == "attention_share"].pivot_table(index="layer", columns="kind", values="value",
                                                                    aggfunc="mean")
    per_layer = frame[frame["head"].isna() & frame.metric.isin(["visual_sink_fraction", "visual_sink_share",
                                                               "visual_sink_background_fraction",
                                                               "top_visual_share"])]
    table = per_layer.pivot_table(index="layer", columns="metric", values="value", aggfunc="mean")
    return ("text queries' attention share per kind (mean over heads)\n" + shares[list(KINDS)].round(4).to_string()
            + "\n\nvisual sinks (threshold " + f"{results.provenance.get('threshold')})\n" + table.round(4).to_string())


def summarize_activations(results: Results) -> str:
    frame = results.df[results.df.metric == "sink_dim_ratio"]
    table = frame.pivot_table(index="layer", columns="group", values="value", aggfunc="mean")
    dims = results.df[results.df.metric == "sink_dim"].pivot_table(index="layer", columns="rank", values="value")
    return ("sink-dimension ratio phi = max_{d in BOS sink dims} |x_d| / RMS(x), mean per group\n"
            + table[[g for g in GROUPS if g in table]].round(3).to_string()
            + "\n\nthe BOS sink dimensions per layer\n" + dims.astype(int).to_string())
