"""What does a sink head actually write? Norm-based contributions (Kobayashi et al. 2020) and the
implicit attention bias (Sun et al. 2024 §4.2; the survey's §4.3).

    >>> norms(model, data).filter(metric="contribution_share_sink", layer=15).df
    >>> implicit_bias(model, data).value("sink_term_cv", layer=15, head=3)

Notation per query head h of layer l: A its attention, v_j the value vector at key j (of the KV
head h // group under GQA, bias included), W_O^h the head's slice of the output projection, and
f_j = v_j W_O^h, what key j would write at full attention (Kobayashi's f(x_j)). S = the sink keys;
valid queries are those that see a sink and are not sinks (see `workbench.core.sites.query_mask`).

`norms` rows, per (layer, head):
- `value_norm_sink` / `value_norm_other`: ||v_j|| at sink keys / at every other key;
- `fnorm_sink` / `fnorm_other`: ||f_j||;
- `written_norm_sink`: ||sum_{j in S} A[q, j] f_j|| averaged over valid queries (what the head writes
  from the sink); `written_norm_other`: A[q, j] ||f_j|| averaged over visible (q, j) pairs with j not a sink;
- `attention_share_sink`: sum_{j in S} A[q, j] (= the sink score); `contribution_share_sink`:
  sum_{j in S} A[q, j] ||f_j|| / sum_j A[q, j] ||f_j||, Kobayashi's norm-based share. A head with a
  high attention share and a small contribution share shows the "no-op" signature;
- `key_norm_sink` / `key_norm_other`: ||k_j||; `qk_cosine_sink` / `qk_cosine_other`: cos(q_q, k_j)
  after RoPE (the `hook_rot_q/k` activations where the adapter has them).

`implicit_bias` rows, per (layer, head): the sink term u_q = sum_{j in S} A[q, j] f_j,
- `sink_term_norm`: mean ||u_q||; `sink_term_share`: mean ||u_q|| / ||o_q||, o_q = z_q W_O^h the head's output;
- `sink_term_cv`: how constant u is across queries and inputs: sqrt(E||u - E u||^2) / ||E u|| over all
  valid (sequence, query) pairs (an RMS coefficient of variation);
- `null_term_cv` / `null_term_norm`: the same for the term of the first non-sink key (position 1 for a
  BOS sink), whose value depends on the input: the null to compare against;
and per (layer, KV head) `sink_value_max_deviation`: max over sequences of ||v_s - mean v_s|| (and
`_relative` / ||mean v_s||) at the first sink key. On a causal LM position 0 sees only BOS, so v_0
should be input-independent; this measures how far it is from that rather than assuming it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.core.sites import SinkSpec
from workbench.passes import Hook, PassContext, gather, probe_pass
from workbench.probes._engine import expand_kv, per_head_rows, w_o

_EPS = 1e-12


def _visible(length: int, causal: bool, device: Any, rows: slice = slice(None)) -> torch.Tensor:
    """[q, k] bool: key k visible to query q, for the query rows `rows` (a block's; default all)."""
    queries = torch.arange(length, device=device)[rows]
    if causal:
        return torch.arange(length, device=device)[None, :] <= queries[:, None]
    return torch.ones(len(queries), length, dtype=torch.bool, device=device)


def norms(model: Any, data: Dataset, sink: Any = "bos", layers: Any = None, batch_size: int = 8,
          progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """Value norms, norm-based contributions and key/query geometry of the sink vs the other keys.

        >>> norms(model, data).filter(metric=["attention_share_sink", "contribution_share_sink"]).df
    """
    started = time.perf_counter()
    model_info = info(model)
    spec = SinkSpec.parse(sink)
    layer_ids = sites.parse_layers(layers, model)
    rotated = "blocks.0.attn.hook_rot_q" in model.hook_dict
    q_name, k_name = ("attn.hook_rot_q", "attn.hook_rot_k") if rotated else ("attn.hook_q", "attn.hook_k")
    metrics = ["value_norm_sink", "value_norm_other", "fnorm_sink", "fnorm_other", "written_norm_sink",
               "written_norm_other", "attention_share_sink", "contribution_share_sink", "key_norm_sink",
               "key_norm_other", "qk_cosine_sink", "qk_cosine_other"]
    sums = {m: torch.zeros(len(layer_ids), model_info.n_heads, dtype=torch.float64) for m in metrics}
    counts = {m: torch.zeros(len(layer_ids), 1, dtype=torch.float64) for m in metrics}
    slot = {layer: i for i, layer in enumerate(layer_ids)}

    def add(layer: int, metric: str, values: torch.Tensor, weight: torch.Tensor) -> None:
        """values [b, h, ...] weighted by a 0/1 mask broadcastable to it; accumulate sum and count per head."""
        weight = weight.float()
        sums[metric][slot[layer]] += (values * weight).sum(dim=[d for d in range(values.dim()) if d != 1]).double().cpu()
        per_head = weight.expand_as(values).sum(dim=[d for d in range(values.dim()) if d != 1])  # same for all heads
        counts[metric][slot[layer]] += float(per_head[0])

    def compute(layer: int, t: dict[str, torch.Tensor], batch: PassContext) -> None:
        pattern = t["attn.hook_pattern"].float()  # [b, h, q, k]; blockwise: q = this block's rows
        block = batch.query_block
        value = expand_kv(t["attn.hook_v"].float(), model_info.n_heads)  # [b, k, h, d_head]
        f = torch.einsum("bkhd,hdm->bhkm", value, w_o(model, layer).float())  # [b, h, k, d_model]
        fnorm = f.norm(dim=-1)  # [b, h, k]
        sink = batch.sink[:, None, :]  # [b, 1, k]
        other = ~sink
        queries = batch.queries[:, None, :]  # [b, 1, q]
        length = pattern.shape[-1]
        visible = _visible(length, model_info.causal, pattern.device, block.rows)[None, None]  # [1, 1, q, k]
        if block.first:  # per-key metrics: once per forward, not once per block
            add(layer, "value_norm_sink", value.norm(dim=-1).transpose(1, 2), sink)
            add(layer, "value_norm_other", value.norm(dim=-1).transpose(1, 2), other)
            add(layer, "fnorm_sink", fnorm, sink)
            add(layer, "fnorm_other", fnorm, other)
        sink_pattern = pattern * sink[:, :, None, :]  # [b, h, q, k]
        written = torch.einsum("bhqk,bhkm->bhqm", sink_pattern, f).norm(dim=-1)  # [b, h, q]
        add(layer, "written_norm_sink", written, queries)
        pairs = (visible & other[:, :, None, :] & queries[..., None])  # [b, 1, q, k]
        add(layer, "written_norm_other", pattern * fnorm[:, :, None, :], pairs)
        add(layer, "attention_share_sink", sink_pattern.sum(-1), queries)
        weighted = pattern * fnorm[:, :, None, :]  # [b, h, q, k]
        share = (weighted * sink[:, :, None, :]).sum(-1) / weighted.sum(-1).clamp_min(_EPS)
        add(layer, "contribution_share_sink", share, queries)
        key = expand_kv(t[k_name].float(), model_info.n_heads).transpose(1, 2)  # [b, h, k, d_head]
        query = block.take(t[q_name].float(), dim=1)  # hook_q fires once on every query: this block's rows
        query = (expand_kv(query, model_info.n_heads) if query.shape[2] != model_info.n_heads else query).transpose(1, 2)
        if block.first:
            add(layer, "key_norm_sink", key.norm(dim=-1), sink)
            add(layer, "key_norm_other", key.norm(dim=-1), other)
        cosine = torch.einsum("bhqd,bhkd->bhqk", torch.nn.functional.normalize(query, dim=-1),
                              torch.nn.functional.normalize(key, dim=-1))
        add(layer, "qk_cosine_sink", (cosine * sink[:, :, None, :]).sum(-1) / sink.sum(-1, keepdim=True), queries)
        add(layer, "qk_cosine_other", cosine, pairs)

    readers = gather(["attn.hook_v", "attn.hook_pattern", q_name, k_name], compute)
    probe_pass(model, data, readers, layer_ids, spec, batch_size, progress, desc="norms", hooks=hooks)
    common = {"experiment": "probe:norms", "model": model_info.name, "sink": spec.label}
    rows = []
    for metric in metrics:
        rows += per_head_rows(sums[metric] / counts[metric].clamp_min(1), metric, layer_ids, **common)
    header = provenance("probe:norms", model, data, sink=spec.label, layers=list(layer_ids),
                        rotated_qk=rotated, wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def implicit_bias(model: Any, data: Dataset, sink: Any = "bos", layers: Any = None, batch_size: int = 8,
                  progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """The sink term u_q = A[q, s] v_s W_O of every head: its size, its share, and how constant it is.

        >>> res = implicit_bias(model, data)
        >>> res.filter(metric=["sink_term_cv", "null_term_cv"], layer=20).df
    """
    started = time.perf_counter()
    model_info = info(model)
    spec = SinkSpec.parse(sink)
    layer_ids = sites.parse_layers(layers, model)
    n_l, n_h, d_model = len(layer_ids), model_info.n_heads, model_info.d_model
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    acc = {name: {"sum": torch.zeros(n_l, n_h, d_model, dtype=torch.float64),
                  "sq": torch.zeros(n_l, n_h, dtype=torch.float64),
                  "norm": torch.zeros(n_l, n_h, dtype=torch.float64),
                  "count": torch.zeros(n_l, dtype=torch.float64)} for name in ("sink", "null")}
    share = torch.zeros(n_l, n_h, dtype=torch.float64)
    sink_values: list[list[torch.Tensor]] = [[] for _ in layer_ids]

    def accumulate(name: str, i: int, term: torch.Tensor, mask: torch.Tensor) -> None:
        """term [b, q, h, d_model]; mask [b, q] bool of the queries that count."""
        weight = mask[:, :, None, None].float()
        acc[name]["sum"][i] += (term * weight).sum(dim=(0, 1)).double().cpu()
        acc[name]["sq"][i] += ((term.norm(dim=-1) ** 2) * mask[:, :, None]).sum(dim=(0, 1)).double().cpu()
        acc[name]["norm"][i] += (term.norm(dim=-1) * mask[:, :, None]).sum(dim=(0, 1)).double().cpu()
        acc[name]["count"][i] += float(mask.sum())

    def compute(layer: int, t: dict[str, torch.Tensor], batch: PassContext) -> None:
        i = slot[layer]
        pattern = t["attn.hook_pattern"].float()  # [b, h, q, k]
        raw_value = t["attn.hook_v"].float()  # [b, k, kv, d_head]
        value = expand_kv(raw_value, n_h)  # [b, k, h, d_head]
        out_proj = w_o(model, layer).float()  # [h, d_head, d_model]
        sink_z = torch.einsum("bhqk,bkhd->bqhd", pattern * batch.sink[:, None, None, :], value)
        term = torch.einsum("bqhd,hdm->bqhm", sink_z, out_proj)  # [b, q, h, d_model]
        accumulate("sink", i, term, batch.queries)
        head_out = torch.einsum("bqhd,hdm->bqhm", t["attn.hook_z"].float(), out_proj).norm(dim=-1)  # [b, q, h]
        ratio = term.norm(dim=-1) / head_out.clamp_min(_EPS)
        share[i] += (ratio * batch.queries[:, :, None]).sum(dim=(0, 1)).double().cpu()
        # the null: the first non-sink key, whose value depends on the input
        block = batch.query_block  # blockwise: the pattern, z and queries hold this block's rows
        positions = torch.arange(pattern.shape[-1], device=pattern.device)  # key positions
        query_positions = positions[block.rows]
        first_other = torch.where(~batch.sink, positions, pattern.shape[-1]).min(dim=1).values  # [b]
        rows = torch.arange(pattern.shape[0], device=pattern.device)
        null_weight = pattern[rows, :, :, first_other]  # [b, h, q]
        null_value = value[rows, first_other]  # [b, h, d_head]
        null_term = torch.einsum("bhq,bhd,hdm->bqhm", null_weight, null_value, out_proj)
        null_queries = batch.queries & (query_positions[None, :] > first_other[:, None]) if model_info.causal else \
            batch.queries & (query_positions[None, :] != first_other[:, None])
        accumulate("null", i, null_term, null_queries)
        if block.first:  # hook_v fires once per forward
            first_sink = torch.where(batch.sink, positions, pattern.shape[-1]).min(dim=1).values
            sink_values[i].append(raw_value[rows, first_sink].cpu())  # [b, kv, d_head]

    readers = gather(["attn.hook_v", "attn.hook_pattern", "attn.hook_z"], compute)
    probe_pass(model, data, readers, layer_ids, spec, batch_size, progress, desc="implicit bias", hooks=hooks)
    common = {"experiment": "probe:implicit-bias", "model": model_info.name, "sink": spec.label}
    rows = []
    for name in ("sink", "null"):
        a = acc[name]
        count = a["count"][:, None].clamp_min(1)
        mean = a["sum"] / count[..., None]
        mean_norm = mean.norm(dim=-1)
        rms_dev = (a["sq"] / count - mean_norm ** 2).clamp_min(0).sqrt()
        rows += per_head_rows(rms_dev / mean_norm.clamp_min(_EPS), f"{name}_term_cv", layer_ids, **common)
        rows += per_head_rows(a["norm"] / count, f"{name}_term_norm", layer_ids, **common)
    rows += per_head_rows(share / acc["sink"]["count"][:, None].clamp_min(1), "sink_term_share", layer_ids, **common)
    for i, layer in enumerate(layer_ids):
        values = torch.cat(sink_values[i]).double()  # [n, kv, d_head]
        mean = values.mean(0)
        deviation = (values - mean).norm(dim=-1).max(0).values  # [kv]
        for kv in range(values.shape[1]):
            for suffix, number in (("", deviation[kv]), ("_relative", deviation[kv] / mean[kv].norm().clamp_min(_EPS))):
                rows.append({"metric": f"sink_value_max_deviation{suffix}", "layer": layer, "head": None,
                             "kv_head": kv, "value": float(number), **common})
    header = provenance("probe:implicit-bias", model, data, sink=spec.label, layers=list(layer_ids),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)
