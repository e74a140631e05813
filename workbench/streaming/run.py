"""How well does a model keep predicting under each KV-cache policy? Policies x one text -> Results.

    >>> stream = stream_nll(model, ids, Sinks(4, 256))                   # one policy: per-token NLL, a Stream
    >>> res = stream_policies(model, text, [Sinks(4, 256), Window(256), Dense()])   # Results with provenance

`stream_nll` reads ids under one policy and picks the path: `Recompute` re-encodes its window
(workbench.streaming.recompute); Dense, Window and Sinks take the fast banded path
(workbench.streaming.banded) unless `fast=False`; every other policy, and `fast=False`, the exact
token-by-token cache (workbench.streaming.exact). `stream_policies` checks every policy against the
model and the text before any pass, runs them (the fast-path policies share their first W tokens) and
returns tidy rows; with `out` it journals each policy, so a killed sweep resumes. `nll[t]` is
-log p(x[t+1] | cache after reading x[t]) in nats; perplexity = exp(mean nll), with a 95 % block-bootstrap
CI over `CI_BLOCK`-token stretches. `kv_quant` reads the cache through a quantiser at every step
(workbench.streaming.quant); several quantisers cross with the policies. `intervention` (a catalogue spec
such as "scale-sink:gamma=0.5") edits the attention at every step (workbench.streaming.hooks: the exact
path for dense / window / sinks, the model's forward for recompute); `attention_block` is the attention
policy of the passes that run through the model's forward (recompute with hooks, an intervention's prepare).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from workbench import attention, zoo
from workbench.core import data as _data
from workbench.core.errors import InputError, check_range
from workbench.core.metrics import SequenceStats
from workbench.core.results import Results, ResultStore, provenance
from workbench.streaming.banded import DEFAULT_CHUNK, SharedPrefix, stream_fast
from workbench.streaming.engine import LlamaDecoder, Stream, cache_engine_refusal, hf_model
from workbench.streaming.exact import stream_exact
from workbench.streaming.hooks import StreamIntervention, as_intervention
from workbench.streaming.policies import CachePolicy
from workbench.streaming.quant import KVCacheQuant, as_quant_list
from workbench.streaming.recompute import stream_recompute

EXPERIMENT = "stream"
CI_BLOCK = 256  # tokens per bootstrap block: the CI resamples contiguous stretches, not single tokens


def newline_id(model: Any) -> int:
    """The id of "\\n" (Xiao Table 1 replaces the first four tokens by it); an error if it is not one token."""
    ids = zoo.info(model).tokenizer("\n", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InputError(f'"\\n" is {len(ids)} tokens for {zoo.info(model).name}; replacement sinks need one token')
    return ids[0]


def stream_nll(model: Any, ids: Sequence[int] | np.ndarray | Tensor, policy: CachePolicy, *, fast: bool = True,
               chunk: int = DEFAULT_CHUNK, recompute_stride: int | None = None, batch_size: int = 8,
               progress: bool = True, shared_prefix: SharedPrefix | None = None, kv_quant: Any = None,
               intervention: Any = None) -> Stream:
    """Per-token NLL of reading `ids` under a cache policy: the engine under `stream_policies` (no length
    checks beyond the model's own limits).

        >>> s = stream_nll(model, ids, Sinks(4, 256))                   # fast path
        >>> s.nll.shape, s.max_keys                                      # (N - 1,), 256

    `fast=False` forces the exact token-by-token path; policies without a `band()` always take it.
    `recompute_stride` (Recompute only) defaults to 1 on the exact path and W // 8 on the fast one.
    `shared_prefix` (fast path, same ids, no replaced sinks) skips the tokens a dense pass already read.
    `kv_quant` (a KVCacheQuant, or a quantize-kv intervention / spec) quantises what the cache holds at each
    step; the fast path runs it only when that is exact (per-token keys before RoPE), else an error.
    `intervention` (a catalogue spec, an Intervention or a bound StreamIntervention) runs its hooks at every
    step: dense, window and sinks then take the exact path (workbench.streaming.hooks says why), recompute
    runs its windows through the model's forward pass.
    """
    model_info = zoo.info(model)
    if not model_info.causal:
        raise InputError(f"{model_info.name} is an encoder: streaming perplexity needs a causal LM")
    if not isinstance(policy, CachePolicy):
        raise InputError(f"expected a CachePolicy (Dense, Window, Sinks, Recompute or a subclass), got {policy!r}")
    device = next(hf_model(model).parameters()).device
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long).to(device).flatten()
    n_tokens = len(ids)
    if n_tokens < 2:
        raise InputError(f"the text has {n_tokens} token(s); streaming needs at least 2")
    if policy.window is None and n_tokens > model_info.n_ctx:
        raise InputError(f"policy dense keeps all {n_tokens} tokens, beyond the context of {model_info.name} "
                         f"(allowed up to {model_info.n_ctx}): use --max-tokens {model_info.n_ctx} or a cache policy")
    if policy.window is not None:
        check_range(f"window W (the cache budget) for {model_info.name}", policy.window, 1, model_info.n_ctx)
    check_range("chunk", chunk, 1, 1 << 20)
    if policy.replace_sinks:
        ids = ids.clone()
        ids[:policy.sinks] = newline_id(model)
    quant = KVCacheQuant.of(kv_quant)
    if quant is not None:
        check_quantisable(policy, quant, fast)
    bound = intervention if isinstance(intervention, StreamIntervention) else None
    if bound is None and (found := as_intervention(intervention)) is not None:
        bound = StreamIntervention(model, found, ids, progress)
    with torch.no_grad():
        quantizer = None if quant is None else quant.bind(model, ids)
        if policy.recompute:
            default = 1 if not fast else max(1, policy.window // 8)
            stride = check_range("recompute stride", recompute_stride or default, 1, policy.window)
            result = stream_recompute(model, ids, policy, stride, batch_size, progress, bound)
        else:
            decoder = LlamaDecoder(model)
            band = policy.band()
            if fast and band is not None and bound is None:
                prefix = None if policy.replace_sinks else shared_prefix
                result = stream_fast(decoder, ids, band[0], band[1], chunk, progress, prefix, quantizer)
            else:  # an intervention's step contexts are cache slots: token by token
                result = stream_exact(decoder, ids, policy, progress, quantizer, bound)
    if policy.replace_sinks:
        result.nll[:max(0, policy.sinks - 1)] = np.nan  # targets 1..S-1 are the inserted newlines, not the text
    return result


def check_quantisable(policy: CachePolicy, quant: KVCacheQuant, fast: bool) -> None:
    """A quantised cache needs a cache (not recompute) and, on the fast path, a quantiser it runs exactly."""
    if policy.recompute:
        raise InputError(f"policy {policy.label()} re-encodes its window through the model's forward pass and "
                         f"holds no KV cache for {quant.label()} to quantise: use dense, window or sinks (or "
                         "quantize-kv in a one-pass run, sinkbench run)")
    if fast and policy.band() is not None and (why := quant.fast_path_refusal()):
        raise InputError(why)


def _summary_rows(stream: Stream, seed: int) -> list[dict]:
    scored = stream.nll[np.isfinite(stream.nll)]
    blocks = [scored[i:i + CI_BLOCK] for i in range(0, len(scored), CI_BLOCK)]
    stats = SequenceStats(np.array([b.sum() for b in blocks]), np.array([len(b) for b in blocks], dtype=float))
    rows = [stats.row("loss", seed=seed), stats.row("perplexity", seed=seed, transform=math.exp)]
    for row in rows:
        row.pop("n_sequences")
    return rows


def _curve_rows(stream: Stream, curve_bin: int) -> list[dict]:
    rows = []
    for start in range(0, len(stream.nll), curve_bin):
        part = stream.nll[start:start + curve_bin]
        part = part[np.isfinite(part)]
        if len(part):
            # position: text index of the last predicted token in the bin (nll[t] predicts token t + 1)
            rows.append({"metric": "nll", "position": min(start + curve_bin, len(stream.nll)),
                         "position_start": start + 1, "value": float(part.mean()), "n": len(part)})
    return rows


def policy_rows(model: Any, stream: Stream, policy: CachePolicy, n_tokens: int, curve_bin: int = 1,
                seed: int = 0, quant: KVCacheQuant | None = None, quant_columns: bool = False,
                intervention: Any = None) -> list[dict]:
    """Tidy rows of one run: loss and perplexity (95 % block-bootstrap CI) and the binned NLL curve. A
    quantised run is named in `intervention` and carries the quantiser's columns (`kv_bits`, `kv_keep`, ...;
    with `quant_columns`, None in an unquantised run of a sweep)."""
    columns = quant.columns() if quant is not None else (
        {k: None for k in KVCacheQuant().columns()} if quant_columns else {})
    named = [str(intervention)] if intervention is not None else []
    named += [f"kv-cache {quant.label()}"] if quant is not None else []
    common = {"experiment": EXPERIMENT, "model": zoo.info(model).name, "intervention": " | ".join(named) or "none",
              **policy.columns(), **columns, "cache_size": policy.window or n_tokens, "path": stream.path}
    summary = {"n_tokens": n_tokens, "cache_entries_max": stream.max_cache_entries, "keys_per_query_max": stream.max_keys,
               "chunk": stream.chunk, "stride": stream.stride, "seconds": round(stream.seconds, 3),
               "tokens_per_second": round(stream.tokens_per_second, 1)}
    rows = [{**common, **row, **summary} for row in _summary_rows(stream, seed)]
    rows += [{**common, **row, "curve_bin": curve_bin} for row in _curve_rows(stream, curve_bin)]
    return rows


def unit_name(policy: CachePolicy, quant: KVCacheQuant | None = None, intervention: Any = None) -> str:
    name = repr(policy) if quant is None else f"{policy!r} | {quant!r}"
    return name if intervention is None else f"{name} | {intervention}"


def stream_policies(model: Any, text: _data.Dataset | Sequence[int] | np.ndarray, policies: Sequence[CachePolicy],
                    *, fast: bool = True, chunk: int = DEFAULT_CHUNK, recompute_stride: int | None = None,
                    curve_bin: int = 1, seed: int = 0, out: str | Path | None = None, progress: bool = True,
                    log: Callable[[str], None] | None = None, kv_quant: Any = None, intervention: Any = None,
                    attention_block: Any = None) -> Results:
    """Streaming perplexity of each policy over one long text, as tidy Results with provenance.

        >>> text = long_text(model, max_tokens=8192)
        >>> res = stream_policies(model, text, [Sinks(s, 512) for s in (0, 1, 2, 4, 8)])
        >>> res.filter(metric="perplexity").df[["policy", "sinks", "window", "value"]]

    Rows: loss and perplexity per policy (`policy, sinks, window, recent, cache_size, path, ...`) and
    `metric="nll"` rows for the curve, binned by `curve_bin` tokens (1: every token). With `out`, the
    sweep is journalled per policy and resumes where a killed run stopped. `kv_quant`: a KVCacheQuant
    (or a quantize-kv spec) or a list of them, None among them for the full-precision cache; every policy
    runs under each (rows gain `kv_bits`, `kv_keep`, `kv_granularity`, `kv_group`, `kv_rope`, ...).

        >>> stream_policies(model, text, [Sinks(4, 256)], kv_quant=[None, KVCacheQuant(3), KVCacheQuant(3, "bos")])
        >>> stream_policies(model, text, [Sinks(4, 256), Window(256)], intervention="scale-sink:gamma=0.5")

    `intervention`: one catalogue intervention applied at every step of every policy (rows name it in
    `intervention`; see `stream_nll`). `attention_block`: workbench.attention.policy of the passes through
    the model's forward (auto by default).
    """
    block = attention.parse_block(attention_block)  # a bad value fails before anything runs
    with attention.policy(model, block) if block is not None else contextlib.nullcontext():
        return _stream_policies(model, text, policies, fast, chunk, recompute_stride, curve_bin, seed, out, progress,
                                log, kv_quant, as_intervention(intervention))


def _stream_policies(model: Any, text: Any, policies: Sequence[CachePolicy], fast: bool, chunk: int,
                     recompute_stride: int | None, curve_bin: int, seed: int, out: str | Path | None, progress: bool,
                     log: Callable[[str], None] | None, kv_quant: Any, intervention: Any) -> Results:
    started = time.perf_counter()
    dataset = text if isinstance(text, _data.Dataset) else _data.Dataset([np.asarray(text, np.int64)], "tokens",
                                                                          "as-given", {}, None)
    if len(dataset) != 1:
        raise InputError(f"{dataset.source}: streaming reads one long text, got {len(dataset)} sequences")
    ids = dataset.sequences[0]
    check_range("curve bin", curve_bin, 1, 1 << 20)
    model_info = zoo.info(model)
    if not model_info.causal:
        raise InputError(f"{model_info.name} is an encoder: streaming perplexity needs a causal LM")
    if out is not None and Path(out).suffix not in (".json", ".csv", ".parquet"):
        raise InputError(f"unknown result format {Path(out).suffix!r} for {out}: use .json, .csv or .parquet")
    if not policies:
        raise InputError("no policies to run: pass at least one of dense, window, sinks, recompute")
    quants = as_quant_list(kv_quant)
    for quant in quants:
        if quant is not None:
            quant.check(model)
    for policy in policies:
        if not isinstance(policy, CachePolicy):
            raise InputError(f"expected CachePolicy objects (Dense, Window, Sinks, Recompute or a subclass), "
                             f"got {policy!r}")
        if policy.window is not None:
            check_range(f"window W (the cache budget) for {model_info.name}", policy.window, 1, model_info.n_ctx)
        elif len(ids) > model_info.n_ctx:
            raise InputError(f"policy dense keeps all {len(ids)} tokens, beyond the context of {model_info.name} "
                             f"(allowed up to {model_info.n_ctx}): use --max-tokens {model_info.n_ctx} or a cache "
                             "policy")
        if policy.window is not None and len(ids) <= policy.window:
            raise InputError(f"{dataset.source}: the text has {len(ids)} tokens, not longer than the cache "
                             f"({policy.label()}: W = {policy.window}): nothing would ever be evicted and every "
                             f"policy would equal dense; use a longer text or a smaller --window (below {len(ids)})")
        if not policy.recompute and (refusal := cache_engine_refusal(model)):
            raise InputError(refusal)
        for quant in quants:
            if quant is not None:
                check_quantisable(policy, quant, fast)
    quantised = any(q is not None for q in quants)
    units = [(policy, quant) for policy in policies for quant in quants]
    names = [unit_name(p, q, intervention) for p, q in units]
    settings = {"fast": fast, "chunk": chunk, "recompute_stride": recompute_stride, "curve_bin": curve_bin}
    if quantised:  # (absent otherwise: the journals of unquantised sweeps keep their identity)
        settings["kv_quant"] = [None if q is None else q.label() for q in quants]
    bound = None
    if intervention is not None:  # checked and prepared once, before any policy runs (absent from old journals)
        settings["intervention"] = str(intervention)
        bound = StreamIntervention(model, intervention, torch.as_tensor(ids).to(next(hf_model(model).parameters()).device),
                                   progress)
    store = None
    if out is not None:
        identity = {"experiment": EXPERIMENT, "model": model_info.name, "weights": model_info.weights_sha256,
                    "data": dataset.hash(), "seed": seed, "policies": names, **settings}
        store = ResultStore(out, identity)
    prefixes: dict[KVCacheQuant | None, SharedPrefix] = {}
    for quant in quants:
        sharing = [p for p in policies if fast and bound is None and p.band() is not None and not p.replace_sinks
                   and not (store is not None and store.done(unit_name(p, quant)))]
        if len(sharing) > 1 and any(p.window for p in sharing):
            # Every band policy reads tokens 0..W-1 exactly as dense does (through the same quantiser): read them once.
            length = min(len(ids) - 1, max(p.window for p in sharing if p.window))
            with torch.no_grad():
                decoder = LlamaDecoder(model)
                tokens = torch.as_tensor(ids).to(decoder.device)
                quantizer = None if quant is None else quant.bind(model, tokens)
                prefixes[quant] = SharedPrefix.compute(decoder, tokens, length, chunk, quantizer)
    rows: list[dict] = []
    for policy, quant in units:
        unit = unit_name(policy, quant, intervention)
        if store is not None and store.done(unit):
            rows += store.rows(unit)
            continue
        stream = stream_nll(model, ids, policy, fast=fast, chunk=chunk, recompute_stride=recompute_stride,
                            progress=progress, shared_prefix=prefixes.get(quant), kv_quant=quant, intervention=bound)
        unit_rows = policy_rows(model, stream, policy, len(ids), curve_bin, seed, quant, quantised, intervention)
        if log is not None:
            ppl = next(r for r in unit_rows if r["metric"] == "perplexity")
            label = policy.label() if quant is None else f"{policy.label()} | {quant.label()}"
            label = label if intervention is None else f"{label} | {intervention}"
            log(f"{label:<24} perplexity {ppl['value']:10.3f}  ({stream.path} path, "
                f"{stream.tokens_per_second:.0f} tok/s, at most {stream.max_keys} keys per query)")
        if store is not None:
            store.add(unit, unit_rows)
        rows += unit_rows
    header = provenance(EXPERIMENT, model, dataset, seed=seed, policies=names,
                        **settings, shared_prefix_tokens=max((p.length for p in prefixes.values()), default=0),
                        wall_seconds=round(time.perf_counter() - started, 3))
    if store is not None:
        return store.finish(header)
    return Results(rows, header)
