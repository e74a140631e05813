"""Where does attention go? First-token (sink) attention per head, the sink ratio, secondary sink tokens,
and averaged attention maps.

    >>> res = sinks(model, data)                                # Gu et al. 2025's measurement, per head
    >>> res.value("sink_ratio", eps=0.3, layer=None)            # fraction of heads with score > 0.3

Definitions (A = post-softmax attention of one query head; S = the sink keys; every score is per
*query* head, so under GQA the 9 query heads of SmolLM2 are scored separately):
- `first_token_attention` (sink = position 0; `sink_attention` for any other sink) of head (l, h):
  the mean over sequences and valid queries q of sum_{j in S} A[q, j]. Valid queries can see a sink
  and are not sinks themselves: q >= 1 for BOS on a causal model (query 0 can only attend to itself),
  every non-sink query on an encoder. This differs from Gu et al.'s alpha_1, which also averages in
  the query at position 0 itself (where A = 1): alpha_1 = (1 + (T-1) * ours) / T.
- `sink_ratio` (eps) = fraction of heads whose score exceeds eps (Gu et al. 2025 "Sink_1^eps",
  eps = 0.3 and T = 64 in their Table 1), per layer and for the whole model.
- `sink_ratio_per_sequence` (eps): Gu et al.'s code thresholds each sequence's score, then averages
  over sequences, layers and heads; reported for comparison with their tables.
- `last_token_attention`: attention of the last query to the sink (StreamingLLM Fig. 12's depth profile).
- `uniform_attention`: what a uniform pattern would give the sink under the same averaging
  (mean over valid queries of |S visible| / (number of visible keys)).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from workbench import attention
from workbench.core import sites
from workbench.core.data import Dataset, str_tokens
from workbench.core.errors import InputError, check_list, check_range
from workbench.core.modelinfo import info
from workbench.core.results import Results, provenance
from workbench.core.sites import SinkSpec, check_eps
from workbench.passes import Hook, PassContext, probe_pass
from workbench.probes._engine import per_head_rows

DEFAULT_EPS = (0.3, 0.5, 0.8)


def sink_metric_name(spec: SinkSpec) -> str:
    return "first_token_attention" if spec.kind == "positions" and spec.positions == (0,) else "sink_attention"


def visible_keys(length: int, causal: bool, device: Any = None) -> torch.Tensor:
    """[T] number of keys query q can see: q + 1 on a causal model, T on an encoder."""
    if causal:
        return torch.arange(1, length + 1, device=device, dtype=torch.float32)
    return torch.full((length,), float(length), device=device)


def sinks(model: Any, data: Dataset, sink: Any = "bos", eps: Iterable[float] = DEFAULT_EPS, layers: Any = None,
          batch_size: int = 8, progress: bool = True, skip_missing: bool = False, hooks: Sequence[Hook] = ()) -> Results:
    """Sink attention of every head, sink ratios at several eps, and the last-query depth profile.

        >>> res = sinks(models.load("smollm2-135m"), corpus_windows(model, window=64, n_windows=32))
        >>> res.filter(metric="sink_ratio", layer=None).df

    `skip_missing`: for a token sink, sequences where the token does not occur are left out of the
    averages (their count is in the provenance) instead of being an error.
    """
    started = time.perf_counter()
    model_info = info(model)
    eps = tuple(check_eps(e) for e in check_list("eps", eps, "[0.3] or [0.3, 0.5, 0.8]"))
    if not eps:
        raise InputError("eps: give at least one threshold, e.g. [0.3]")
    spec = SinkSpec.parse(sink)
    layer_ids = sites.parse_layers(layers, model)
    auto_positions = detect_sinks(model, data, spec.eps, batch_size, progress) if spec.kind == "auto" else None
    n_layers, n_heads = len(layer_ids), model_info.n_heads
    slot = {layer: i for i, layer in enumerate(layer_ids)}
    per_sequence = torch.zeros(len(data), n_layers, n_heads, dtype=torch.float64)  # sum over queries, then mean
    per_sequence_queries = torch.zeros(len(data), n_layers, 1, dtype=torch.float64)
    sums = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    counts = torch.zeros(n_layers, dtype=torch.float64)
    last = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    n_last = torch.zeros(n_layers, dtype=torch.float64)
    uniform = {"sum": 0.0, "count": 0.0}

    def on_mass(layer: int, mass: torch.Tensor, batch: PassContext) -> None:
        i = slot[layer]  # mass [b, h, q]: the attention of each query on the sink keys (never the pattern)
        block = batch.query_block  # blockwise: this block's query rows (batch.queries is cut to them)
        queries = batch.queries[:, None, :].float()  # [b, 1, q]
        seen = (mass * queries).sum(-1).double()  # [b, h]
        n_queries = queries.sum(-1).double()  # [b, 1]
        per_sequence[batch.index, i] += seen.cpu()
        per_sequence_queries[batch.index, i] += n_queries.cpu()
        sums[i] += seen.sum(0).cpu()
        counts[i] += n_queries.sum().cpu()
        if block.last:
            last[i] += mass[:, :, -1].double().sum(0).cpu()
            n_last[i] += mass.shape[0]
        if i == 0:
            visible_sinks = torch.cumsum(batch.sink.float(), dim=1) if model_info.causal else \
                batch.sink.float().sum(1, keepdim=True).expand_as(batch.sink)
            share = visible_sinks / visible_keys(batch.sink.shape[1], model_info.causal, batch.sink.device)
            uniform["sum"] += float((share[:, block.rows].nan_to_num() * batch.queries).sum())
            uniform["count"] += float(batch.queries.sum())

    probe_pass(model, data, [(attention.KEY_MASS, on_mass)], layer_ids, spec, batch_size, progress,
               desc="sinks", auto_positions=auto_positions, skip_missing=skip_missing, hooks=hooks)
    if counts[0] == 0:
        raise InputError(f"sink {spec.label} occurs in none of the {len(data)} sequences (or no query sees it)")
    per_sequence /= per_sequence_queries  # 0 / 0 = NaN where no query sees the sink (skip_missing)
    score = sums / counts[:, None]
    seen_sequences = int((~per_sequence[:, 0, 0].isnan()).sum())
    metric = sink_metric_name(spec)
    common = {"experiment": "probe:sinks", "model": model_info.name, "sink": spec.label}
    rows = per_head_rows(score, metric, layer_ids, n=int(counts[0]), **common)
    rows += per_head_rows(last / n_last[:, None], "last_token_attention", layer_ids, **common)
    for e in eps:
        above = (score > e).double()
        rows += [{"metric": "sink_ratio", "eps": e, "layer": layer, "head": None, "value": float(above[i].mean()),
                  **common} for i, layer in enumerate(layer_ids)]
        rows.append({"metric": "sink_ratio", "eps": e, "layer": None, "head": None, "value": float(above.mean()),
                     **common})
        valid = per_sequence[~per_sequence[:, 0, 0].isnan()]
        rows.append({"metric": "sink_ratio_per_sequence", "eps": e, "layer": None, "head": None,
                     "value": float((valid > e).double().mean()), **common})
    rows.append({"metric": "uniform_attention", "layer": None, "head": None,
                 "value": uniform["sum"] / uniform["count"], **common})
    header = provenance("probe:sinks", model, data, sink=spec.label, eps=list(eps), layers=list(layer_ids),
                        sequences_with_sink=seen_sequences,
                        auto_sink_positions=list(auto_positions) if auto_positions is not None else None,
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def detect_sinks(model: Any, data: Dataset, eps: float = 0.3, batch_size: int = 8, progress: bool = True) -> list[int]:
    """Positions whose mean received attention (over layers, heads, sequences and the queries that see
    them, self excluded) exceeds eps; the resolution of an `auto:EPS` sink."""
    received = _received_attention(model, data, batch_size, progress)
    mean = received["sum"].sum(0) / received["count"].clamp_min(1)  # [T]
    positions = [int(p) for p in torch.nonzero(mean > eps).flatten()]
    if not positions:
        raise InputError(f"no position receives more than eps = {eps} of the attention on average "
                         f"(max {float(mean.max()):.3f} at position {int(mean.argmax())}); lower eps")
    return positions


def _received_attention(model: Any, data: Dataset, batch_size: int, progress: bool) -> dict:
    """Per position: attention received, summed over layers and heads, from the queries that can see it."""
    lengths = set(data.lengths)
    if len(lengths) != 1:
        raise InputError(f"auto sink detection needs sequences of one length, got {sorted(lengths)}")
    model_info = info(model)
    length = lengths.pop()
    layer_ids = tuple(range(model_info.n_layers))
    total = {"sum": torch.zeros(model_info.n_layers, length, dtype=torch.float64),
             "count": torch.zeros(length, dtype=torch.float64)}

    def on_pattern(layer: int, pattern: torch.Tensor, batch: PassContext) -> None:
        block = batch.query_block  # blockwise: query q = block.start + row, so the diagonal is offset
        own = torch.diagonal(pattern.float(), offset=block.start, dim1=-2, dim2=-1).sum(1)  # [b, B]: A[q, q]
        received = pattern.float().sum(dim=(1, 2))
        received[:, block.rows] -= own
        total["sum"][layer] += received.double().sum(0).cpu() / model_info.n_heads
        if layer == 0 and block.first:
            seen_by = (length - 1 - torch.arange(length)) if model_info.causal else torch.full((length,), length - 1)
            total["count"] += seen_by.double() * pattern.shape[0]

    probe_pass(model, data, [("attn.hook_pattern", on_pattern)], layer_ids, SinkSpec(), batch_size, progress,
               desc="detect sinks")
    total["count"] *= model_info.n_layers
    return total


def sink_tokens(model: Any, data: Dataset, layers: Any = None, top: int = 20, min_queries: int = 8,
                min_count: int = 3, include_first: bool = False, batch_size: int = 8,
                progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """Which tokens act as sinks beyond position 0: attention received per token vs the uniform baseline.

        >>> sink_tokens(model, data, top=10).df[["token", "ratio_to_uniform"]]

    For each key position j of each sequence: received(j) = mean over layers, heads and the queries
    that can see it (q > j on a causal model, q != j on an encoder) of A[q, j]; uniform(j) = mean over
    the same queries of 1 / (number of keys q sees). Positions seen by fewer than `min_queries` queries
    are skipped (too few to average), and tokens seen fewer than `min_count` times are not ranked
    (one occurrence is too noisy to call a token a sink). Tokens are ranked by mean received / uniform over their
    occurrences; `first_occurrence_ratio` isolates each token's first occurrence (Sun et al. 2024 find
    massive activations at the first delimiter only).
    """
    started = time.perf_counter()
    model_info = info(model)
    check_range("top", top, 1, 1 << 20)
    check_range("min_queries", min_queries, 0, 1 << 30)
    check_range("min_count", min_count, 1, 1 << 30)
    layer_ids = sites.parse_layers(layers, model)
    per_token: dict[int, dict[str, list]] = {}

    def on_pattern(layer: int, pattern: torch.Tensor, batch: PassContext) -> None:
        weights = pattern.float()
        block = batch.query_block  # blockwise: query q = block.start + row, so the diagonal is offset
        received = weights.sum(dim=(1, 2))  # [b, k]
        received[:, block.rows] -= torch.diagonal(weights, offset=block.start, dim1=-2, dim2=-1).sum(1)
        batch.scratch["received"] = batch.scratch.get("received", 0) + received / model_info.n_heads

    def after(batch: PassContext) -> None:
        length = batch.tokens.shape[1]
        positions = torch.arange(length)
        if model_info.causal:
            n_seen = (length - 1 - positions).double()
            inverse = 1.0 / torch.arange(1, length + 1, dtype=torch.float64)  # 1 / (q + 1)
            tail = torch.flip(torch.cumsum(torch.flip(inverse, [0]), 0), [0])  # sum_{q >= j} 1/(q+1)
            uniform = (tail - inverse) / n_seen.clamp_min(1)
        else:
            n_seen = torch.full((length,), float(length - 1), dtype=torch.float64)
            uniform = torch.full((length,), 1.0 / length, dtype=torch.float64)
        received = (batch.scratch["received"].double().cpu() / len(layer_ids)) / n_seen.clamp_min(1)
        tokens = batch.tokens.cpu()
        for row in range(tokens.shape[0]):
            seen_tokens: set[int] = set()
            for j in range(0 if include_first else 1, length):
                if n_seen[j] < min_queries:
                    continue
                token = int(tokens[row, j])
                entry = per_token.setdefault(token, {"received": [], "uniform": [], "position": [], "first": []})
                entry["received"].append(float(received[row, j]))
                entry["uniform"].append(float(uniform[j]))
                entry["position"].append(j)
                entry["first"].append(token not in seen_tokens)
                seen_tokens.add(token)

    probe_pass(model, data, [("attn.hook_pattern", on_pattern)], layer_ids, SinkSpec(), batch_size, progress,
               desc="sink tokens", after_batch=after, hooks=hooks)
    if not per_token:
        raise InputError(f"no key position is seen by at least {min_queries} queries: use longer windows")
    table = []
    for token, entry in per_token.items():
        if len(entry["received"]) < min_count:
            continue
        received, uniform = np.array(entry["received"]), np.array(entry["uniform"])
        first = np.array(entry["first"])
        table.append({"token_id": token, "count": len(received), "attention_received": float(received.mean()),
                      "uniform_baseline": float(uniform.mean()),
                      "ratio_to_uniform": float((received / uniform).mean()),
                      "first_occurrence_ratio": float((received[first] / uniform[first]).mean()),
                      "mean_position": float(np.mean(entry["position"]))})
    if not table:
        raise InputError(f"no token occurs at least {min_count} times at positions seen by {min_queries} queries; "
                         "lower min_count or use more data")
    table.sort(key=lambda r: r["ratio_to_uniform"], reverse=True)
    names = str_tokens(model, [r["token_id"] for r in table[:top]])
    rows = []
    for rank, (entry, name) in enumerate(zip(table[:top], names), start=1):
        for metric in ("attention_received", "uniform_baseline", "ratio_to_uniform", "first_occurrence_ratio"):
            rows.append({"experiment": "probe:sink-tokens", "model": model_info.name, "metric": metric,
                         "value": entry[metric], "rank": rank, "token": name, "token_id": entry["token_id"],
                         "count": entry["count"], "mean_position": entry["mean_position"], "layer": None,
                         "head": None})
    header = provenance("probe:sink-tokens", model, data, layers=list(layer_ids), min_queries=min_queries,
                        min_count=min_count,
                        include_first=include_first, n_distinct_tokens=len(table),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def attention_maps(model: Any, data: Dataset, layers: Any = None, heads: Any = None, batch_size: int = 8,
                   progress: bool = True, hooks: Sequence[Hook] = ()) -> Results:
    """Attention patterns averaged over the sequences (StreamingLLM Fig. 2): rows (layer, head, q, k, value).
    Sequences must share one length; keep T small (16-64): the table has T^2 rows per head.

        >>> maps = attention_maps(model, data, layers=[0, 1, 15, 29])
    """
    started = time.perf_counter()
    model_info = info(model)
    lengths = set(data.lengths)
    if len(lengths) != 1:
        raise InputError(f"attention maps average sequences of one length, got {sorted(lengths)}")
    layer_ids = sites.parse_layers(layers, model)
    head_ids = sites.parse_heads(heads, model)
    length = lengths.pop()
    total = torch.zeros(len(layer_ids), len(head_ids), length, length, dtype=torch.float64)
    slot = {layer: i for i, layer in enumerate(layer_ids)}

    def on_pattern(layer: int, pattern: torch.Tensor, batch: PassContext) -> None:
        rows = batch.query_block.rows  # blockwise: this block's query rows
        total[slot[layer], :, rows] += pattern[:, list(head_ids)].double().sum(0).cpu()

    probe_pass(model, data, [("attn.hook_pattern", on_pattern)], layer_ids, SinkSpec(), batch_size, progress,
               desc="attention maps", hooks=hooks)
    mean = total / len(data)
    rows = []
    for i, layer in enumerate(layer_ids):
        for j, head in enumerate(head_ids):
            grid = mean[i, j]
            for q in range(length):
                for k in range(length if not model_info.causal else q + 1):
                    rows.append({"metric": "attention", "layer": layer, "head": head, "q": q, "k": k,
                                 "value": float(grid[q, k])})
    header = provenance("probe:attention-maps", model, data, layers=list(layer_ids), heads=list(head_ids),
                        wall_seconds=round(time.perf_counter() - started, 3))
    return Results(rows, header)


def summarize(results: Results, eps: Sequence[float] | None = None) -> str:
    """A per-layer terminal summary of a `sinks` Results."""
    frame = results.df
    metric = "first_token_attention" if "first_token_attention" in set(frame["metric"]) else "sink_attention"
    scores = frame[frame.metric == metric]
    ratios = frame[frame.metric == "sink_ratio"]
    eps = eps or sorted(set(ratios["eps"].dropna()))
    lines = [f"{metric} per layer (mean over heads, max head) | sink ratio at eps " + ", ".join(f"{e:g}" for e in eps)]
    for layer, group in scores.groupby("layer"):
        best = group.loc[group.value.idxmax()]
        layer_ratios = [ratios[(ratios.layer == layer) & (ratios.eps == e)].value.iloc[0] for e in eps]
        bar = "#" * int(round(group.value.mean() * 30))
        lines.append(f"  layer {int(layer):>2}: mean {group.value.mean():.3f}  max {best.value:.3f} (head {int(best['head'])})"
                     f"  | " + "  ".join(f"{r:.2f}" for r in layer_ratios) + f"  {bar}")
    whole = [ratios[ratios.layer.isna() & (ratios.eps == e)].value.iloc[0] for e in eps]
    uniform = frame[frame.metric == "uniform_attention"].value.iloc[0]
    lines.append("  whole model: sink ratio " + ", ".join(f"eps={e:g}: {r:.3f}" for e, r in zip(eps, whole))
                 + f"  (uniform attention would give {uniform:.3f})")
    return "\n".join(lines)


def sink_ratio_controls(model: Any, window: int = 64, n: int = 16, seed: int = 0, eps: Iterable[float] = (0.3,),
                        kinds: Sequence[str] = ("natural", "random", "repeated"),
                        bos: Sequence[bool] = (True, False), corpus: str = "austen") -> Results:
    """The sink ratio on the control prompt sets of Gu et al. 2025 (Table 1), with and without BOS.

        >>> sink_ratio_controls(model).filter(metric="sink_ratio", layer=None).df[["prompts", "bos", "value"]]

    Rows are the `sink_ratio` rows of `sinks` with two more columns, `prompts` and `bos`.
    """
    from workbench.core import data as data_module

    eps = check_list("eps", eps, "[0.3]")
    kinds = check_list("kinds", kinds, "['natural', 'random', 'repeated']")
    bos = check_list("bos", bos, "[True, False]")
    rows, header = [], {}
    for kind in kinds:
        for with_bos in bos:
            dataset = data_module.control_prompts(model, kind, window=window, n=n, seed=seed, prepend_bos=with_bos,
                                                  corpus=corpus)
            res = sinks(model, dataset, eps=eps, progress=False)
            rows += [{**r, "prompts": kind, "bos": with_bos} for r in res.filter(metric="sink_ratio")]
            header = res.provenance
    header = {**header, "data_source": "control prompts: " + ", ".join(kinds), "bos_policy": "both",
              "n_sequences": n, "window": window}
    return Results(rows, header)


def special_token_attention(model: Any, data: Dataset, targets: Sequence[str] = ("cls", "sep", "tok:.", "tok:,"),
                            batch_size: int = 8, progress: bool = False) -> Results:
    """Per-head attention to special tokens and punctuation (Clark et al. 2019, Fig. 2): the `sink_attention`
    rows of `sinks` for each target, with a `target` column. Sequences without a target are left out of
    that target's averages (`sequences_with_target` says how many had it).

        >>> special_token_attention(models.load("minilm-l6"), data).df.groupby("target").value.mean()
    """
    rows, header, absent = [], {}, []
    names = {"cls": "[CLS]", "sep": "[SEP]", "bos": "BOS"}
    for target in check_list("targets", targets, "['cls', 'sep', 'tok:.']"):
        try:
            res = sinks(model, data, sink=target, eps=(0.3,), batch_size=batch_size, progress=progress,
                        skip_missing=True)
        except InputError as exc:
            if "occurs in none" not in str(exc):
                raise
            absent.append(target)
            continue
        spec = SinkSpec.parse(target)
        metric = sink_metric_name(spec)
        # `target` is the sink as a spec (what filter(target=...) and the `sinks` probe take); `target_name`
        # the token itself, for legends
        shown = names.get(spec.label, ", ".join(repr(t) for t in spec.tokens) if spec.kind == "tokens" else spec.label)
        rows += [{**r, "metric": "sink_attention", "target": spec.label, "target_name": shown,
                  "sequences_with_target": res.provenance["sequences_with_sink"]} for r in res.filter(metric=metric)]
        header = res.provenance
    if not rows:
        raise InputError(f"none of the targets {list(targets)} occurs in the data")
    return Results(rows, {**header, "targets": list(targets), "absent_targets": absent})
