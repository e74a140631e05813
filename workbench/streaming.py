"""Streaming perplexity under KV-cache policies: does a model keep predicting well once the first
tokens of a long text have left its cache? (StreamingLLM; Xiao et al. 2024, ICLR)

    >>> text = streaming.long_text(model, corpus="austen", document="Emma", max_tokens=4096)
    >>> res = streaming.run(model, text, [Sinks(4, 256), Window(256), Dense()])   # Results, one row per metric

The question. A KV cache that keeps only the last W tokens (window attention) lets a model read a
text of any length in bounded memory, yet Xiao et al. found its perplexity explodes as soon as the
first tokens are evicted: those tokens are attention sinks, and evicting them removes a large part
of every later query's softmax denominator (Xiao §3.1, Eq. 1). Keeping the first S tokens next to
the window ("S + (W - S)", StreamingLLM) restores the quality of sliding-window re-computation.

Policies are objects (write your own: subclass `CachePolicy`, implement `keep`):
- `Dense()`: every token stays, up to the model's context;
- `Window(W)`: the last W tokens;
- `Sinks(S, W)`: the first S tokens and the last W - S (`Sinks(0, W)` is `Window(W)`);
  `replace_sinks="newline"` feeds S newline tokens instead of the first S tokens (Xiao Table 1);
- `Recompute(W, S=0)`: sliding window with re-computation, the quality reference: every prediction
  re-encodes its kept tokens from scratch through the model's ordinary forward pass.

Conventions (every result row records `sinks`, `window`, `recent` = W - S and `cache_size`):
- W is the whole cache budget: S sinks + W - S recent tokens, the token being read among them, so a
  query attends to at most W keys. Xiao's "4+1020" is `Sinks(4, 1024)`; their code prunes after each
  step, so there a query sees one key more (W + 1).
- Positions are assigned inside the cache, as StreamingLLM does for RoPE (Xiao §3.2): keys are cached
  *before* rotation and rotated at their slot index at every step; the query sits at slot min(t, W-1).
- `nll[t]` is -log p(x[t+1] | cache after reading x[t]) in nats; perplexity = exp(mean nll).

Two paths give the same numbers:
- exact: one token at a time through a real cache that the policy prunes before each token (any
  policy); the reference, about N decode steps;
- fast (Dense/Window/Sinks): chunks of `chunk` tokens in one pass each. Under these policies token t
  sees a fixed band: the S sinks at relative distance min(t, W-1) - j, and the W - S most recent
  tokens at their text distance. So one pass with a banded mask, plus a separate sink score block
  whose queries are rotated at min(t, W-1), reproduces the cache; the keys a chunk needs from earlier
  chunks (S sinks + W - S - 1 recent) are carried between chunks. The deviation from the exact path
  is floating-point only: on SmolLM2 over 2,047 predictions of Emma (dense, window 256, sinks 4+252)
  at most 7.6e-5 nats on one token, 3e-6 to 5e-6 on average, perplexity equal to 4e-7 relative.
  Speed (bench/streaming.py, SmolLM2, one torch thread on the shared 2-core VM at load ~2): the exact
  path runs like a plain HF decode loop with a cache (~17 tok/s), the fast path like HF feeding
  blocks through its cache (~190 tok/s), about 11x faster. `run` also reads the first W tokens
  only once for all its fast-path policies: nothing is evicted before W, so they all read them as
  dense does (`SharedPrefix`).
- `Recompute` exact = one forward of W tokens per prediction (N x W tokens); fast = stride s: one
  forward per s predictions, the first of which sees only W - s + 1 tokens (a real approximation,
  the strided-perplexity trick; its deviation is measured, not assumed).

Models. The cache engine runs the Llama decoder layer (RMSNorm, RoPE, GQA, gated MLP) from the
model's own modules, unwrapped from the bridge (no hooks fire): SmolLM2 and `tiny-llama`. It refuses
Gemma 3 (native 512-token sliding-window layers, two RoPE bases, QK-norm, sandwich norms) and models
with learned absolute positions, whose cached keys carry their text position and cannot be moved
into the cache without re-encoding; `Recompute` runs on any causal LM.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench import zoo
from workbench.core import corpora
from workbench.core import data as _data
from workbench.core.errors import InputError, check_range
from workbench.core.metrics import SequenceStats
from workbench.core.progress import progress_bar
from workbench.core.results import Results, ResultStore, provenance

EXPERIMENT = "stream"
DEFAULT_CHUNK = 256
CI_BLOCK = 256  # tokens per bootstrap block: the CI resamples contiguous stretches, not single tokens
REPLACEMENTS = {"newline": "\n"}
# Llama-style decoder layers the cache engine implements; rope types whose rotation depends only on position.
ENGINE_MODEL_TYPES = ("llama",)
ENGINE_ROPE_TYPES = ("default", "linear", "llama3")


# --------------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CacheView:
    """What a policy sees when the cache is full: one entry per slot, in slot (= arrival) order."""

    step: int  # text index of the token about to be read
    positions: Int[Tensor, " n"]  # noqa: F722  text index of the token in each slot
    attention: Float[Tensor, " n"]  # noqa: F722  attention the last query paid each slot, mean over layers and heads
    attention_sum: Float[Tensor, " n"]  # noqa: F722  the same summed over every query since the slot was filled (H2O-style)

    @property
    def n(self) -> int:
        return len(self.positions)


class CachePolicy:
    """Decides which cached tokens stay. A new policy subclasses this and implements `keep`:

        >>> @dataclasses.dataclass(frozen=True)
        ... class KeepTopAttended(CachePolicy):          # keep the most-attended keys + the newest one
        ...     window: int = 64
        ...     name = "top-attended"
        ...     def keep(self, view):
        ...         top = view.attention_sum[:-1].topk(self.window - 2).indices
        ...         return torch.cat([top, torch.tensor([view.n - 1])])

    `keep(view)` is called whenever the cache holds `window` entries and a token is to be read; it
    returns the slot indices to keep (at most window - 1, any order; slot order is preserved). Kept
    tokens are renumbered 0..k-1: positions live inside the cache. Only the exact path runs custom
    policies; the fast path needs `band()`.
    """

    name: ClassVar[str] = "custom"
    recompute: ClassVar[bool] = False
    window: int | None = None  # cache budget in entries (the token being read included); None: unbounded
    sinks: int = 0
    replace_sinks: str | None = None

    def keep(self, view: CacheView) -> Int[Tensor, " k"]:  # noqa: F722
        raise NotImplementedError(f"{type(self).__name__} must implement keep(view)")

    def band(self) -> tuple[int, int | None] | None:
        """(S, W) if this policy always keeps exactly the first S and the last W - S tokens (the fast path's contract)."""
        return None

    def columns(self) -> dict:
        """The policy's columns in every result row."""
        recent = None if self.window is None else self.window - self.sinks
        return {"policy": self.name, "sinks": self.sinks, "window": self.window, "recent": recent,
                "replace_sinks": self.replace_sinks}

    def label(self) -> str:
        if self.window is None:
            return self.name
        extra = f", {self.sinks} x {self.replace_sinks}" if self.replace_sinks else ""
        return f"{self.name} {self.sinks}+{self.window - self.sinks}{extra}"


def _check_budget(sinks: int, window: int) -> None:
    for what, value in (("sinks S", sinks), ("window W", window)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{what} must be an integer, got {value!r}")
    if sinks < 0:
        raise InputError(f"sinks S = {sinks}: the number of kept first tokens cannot be negative (allowed S >= 0)")
    if window < 1:
        raise InputError(f"window W = {window}: the cache must hold at least the token being read (allowed W >= 1)")
    if window <= sinks:
        raise InputError(f"window W = {window} with sinks S = {sinks}: W is the whole cache (S sinks + W - S recent "
                         f"tokens, the token being read among them), so W must exceed S (allowed W >= {sinks + 1})")


def _first_and_last(n: int, first: int, last: int) -> Tensor:
    """Slot indices 0..first-1 and the last `last` slots of n."""
    return torch.cat([torch.arange(first), torch.arange(n - last, n)])


@dataclasses.dataclass(frozen=True)
class Dense(CachePolicy):
    """Keep every token; only defined up to the model's context."""

    name: ClassVar[str] = "dense"

    def keep(self, view: CacheView) -> Tensor:
        return torch.arange(view.n)  # never called: the cache of a dense run is sized to the text

    def band(self) -> tuple[int, int | None]:
        return (0, None)


@dataclasses.dataclass(frozen=True)
class Sinks(CachePolicy):
    """Keep the first `sinks` tokens and the last `window - sinks` (StreamingLLM, Xiao et al. 2024)."""

    sinks: int = 4
    window: int = 256
    replace_sinks: str | None = None  # "newline": the first S tokens read are "\n" instead (Xiao Table 1)
    name: ClassVar[str] = "sinks"

    def __post_init__(self) -> None:
        _check_budget(self.sinks, self.window)
        if self.replace_sinks is not None and self.replace_sinks not in REPLACEMENTS:
            raise InputError(f"replace_sinks = {self.replace_sinks!r}: allowed {', '.join(REPLACEMENTS)} or None")
        if self.replace_sinks is not None and self.sinks == 0:
            raise InputError("replace_sinks needs sinks S >= 1: there is nothing to replace with S = 0")

    def keep(self, view: CacheView) -> Tensor:
        return _first_and_last(view.n, self.sinks, self.window - self.sinks - 1)

    def band(self) -> tuple[int, int | None]:
        return (self.sinks, self.window)


@dataclasses.dataclass(frozen=True)
class Window(Sinks):
    """Keep the last `window` tokens (window attention: `Sinks(0, window)`)."""

    window: int = 256
    sinks: int = dataclasses.field(default=0, init=False)
    replace_sinks: str | None = dataclasses.field(default=None, init=False)
    name: ClassVar[str] = "window"


@dataclasses.dataclass(frozen=True)
class Recompute(CachePolicy):
    """Sliding window with re-computation (Xiao's reference): each prediction re-encodes the first
    `sinks` tokens and the last `window - sinks` from scratch, at positions 0..W-1, through the
    model's ordinary forward pass (so it runs on any causal LM)."""

    window: int = 256
    sinks: int = 0
    name: ClassVar[str] = "recompute"
    recompute: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_budget(self.sinks, self.window)

    def keep(self, view: CacheView) -> Tensor:
        return _first_and_last(view.n, self.sinks, self.window - self.sinks - 1)


POLICY_NAMES = ("dense", "window", "sinks", "recompute")


def policy_grid(names: Sequence[str], sinks: Sequence[int] | None = None, windows: Sequence[int] | None = None,
                replace_sinks: str | None = None) -> list[CachePolicy]:
    """The built-in policies the CLI runs: each name crossed with the cache sizes (and, for `sinks`,
    with the numbers of sinks; default 4). `dense` takes neither; `window` and `recompute` keep S = 0.

        >>> policy_grid(["sinks"], sinks=[0, 1, 2, 4, 8], windows=[256, 512])    # Xiao Table 2
    """
    windows = list(windows or [256])
    sinks = list(sinks if sinks is not None else [4])
    out: list[CachePolicy] = []
    for name in names:
        if name == "dense":
            out.append(Dense())
        elif name == "window":
            out += [Window(w) for w in windows]
        elif name == "sinks":
            out += [Sinks(s, w, replace_sinks) for w in windows for s in sinks]
        elif name == "recompute":
            out += [Recompute(w) for w in windows]
        else:
            raise InputError(f"unknown policy {name!r}: allowed {', '.join(POLICY_NAMES)}")
    if replace_sinks is not None and "sinks" not in names:
        raise InputError("--replace-sinks applies to the sinks policy: add --policy sinks")
    return list(dict.fromkeys(out))  # in order, without repeats


# --------------------------------------------------------------------------------------------------
# The model: a Llama decoder from the bridge's own modules
# --------------------------------------------------------------------------------------------------


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face module a TransformerBridge component wraps (the module itself if unwrapped)."""
    while (inner := module._modules.get("_original_component")) is not None:
        module = inner
    return module


def _hf_model(model: Any) -> torch.nn.Module:
    hf = getattr(model, "original_model", model)
    if not hasattr(hf, "config"):
        raise InputError(f"streaming needs a Hugging Face causal LM (a zoo model), got {type(model).__name__}")
    return hf


def cache_engine_refusal(model: Any) -> str | None:
    """Why the cache engine cannot run `model` (None if it can)."""
    model_info = zoo.info(model)
    config = _hf_model(model).config
    name = model_info.name
    if not model_info.causal:
        return f"{name} is an encoder: streaming perplexity needs a causal LM"
    if model_info.positional != "rotary":
        return (f"{name} has learned absolute positions: its cached keys carry their text position, so a cache "
                "policy cannot renumber them inside the cache (StreamingLLM needs RoPE-style relative "
                "positions, Xiao §3.2); use --policy recompute, which re-encodes the window every step")
    if model_info.layer_types or getattr(config, "model_type", "").startswith("gemma3"):
        return (f"{name} mixes native sliding-window and global layers (Gemma 3: window "
                f"{model_info.sliding_window}, two RoPE bases, QK-norm, sandwich norms), which the cache engine "
                "does not implement; use --policy recompute, or a Llama-style model such as smollm2-135m")
    model_type = getattr(config, "model_type", "?")
    if model_type not in ENGINE_MODEL_TYPES:
        return (f"{name} is a {model_type!r} model; the cache engine implements the Llama decoder layer "
                f"({', '.join(ENGINE_MODEL_TYPES)}); use --policy recompute")
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in ENGINE_ROPE_TYPES:
        return (f"{name} uses RoPE type {rope!r}, whose rotation depends on the sequence length, not only the "
                f"position; the cache engine supports {', '.join(ENGINE_ROPE_TYPES)}")
    return None


@dataclasses.dataclass
class _Layer:
    ln1: torch.nn.Module
    q: torch.nn.Module
    k: torch.nn.Module
    v: torch.nn.Module
    o: torch.nn.Module
    ln2: torch.nn.Module
    gate: torch.nn.Module
    up: torch.nn.Module
    down: torch.nn.Module
    act: Callable[[Tensor], Tensor]


class LlamaDecoder:
    """The Llama decoder of a loaded model, run layer by layer with a caller-supplied attention.

        >>> decoder = LlamaDecoder(zoo.load("smollm2-135m"))
        >>> logits = decoder.forward(ids, attend)       # attend(layer, q, k, v) -> z, keys before RoPE

    Every other part (embedding, RMSNorm, projections, gated MLP, final norm, LM head, the RoPE table)
    is the model's own module, so only the attention (what the cache holds) differs from HF's forward.
    """

    def __init__(self, model: Any):
        refusal = cache_engine_refusal(model)
        if refusal:
            raise InputError(refusal)
        hf = _hf_model(model)
        core = hf.model
        config = hf.config
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.group = self.n_heads // self.n_kv_heads
        self.d_head = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.embed = _unwrap(core.embed_tokens)
        self.norm = _unwrap(core.norm)
        self.lm_head = _unwrap(hf.lm_head)
        self.rotary = _unwrap(core.rotary_emb)
        self.layers = []
        for block in core.layers:
            block = _unwrap(block)
            attn, mlp = _unwrap(block.self_attn), _unwrap(block.mlp)
            self.scaling = attn.scaling
            self.layers.append(_Layer(
                _unwrap(block.input_layernorm), _unwrap(attn.q_proj), _unwrap(attn.k_proj), _unwrap(attn.v_proj),
                _unwrap(attn.o_proj), _unwrap(block.post_attention_layernorm), _unwrap(mlp.gate_proj),
                _unwrap(mlp.up_proj), _unwrap(mlp.down_proj), mlp.act_fn))
        self.dtype = self.embed.weight.dtype
        self.device = self.embed.weight.device
        self._cos = self._sin = torch.empty(0, self.d_head, dtype=self.dtype, device=self.device)

    # -- RoPE: the model's own rotary embedding, tabulated by position ---------------------------
    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin [len(positions), d_head] at integer positions (the table grows on demand)."""
        need = int(positions.max()) + 1 if positions.numel() else 0
        if need > len(self._cos):
            size = max(need, 2 * len(self._cos), 64)
            ids = torch.arange(size, device=self.device)[None]
            cos, sin = self.rotary(self.embed.weight[:1][None], ids)  # [1, size, d_head]
            self._cos, self._sin = cos[0], sin[0]
        return self._cos[positions], self._sin[positions]

    @staticmethod
    def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """RoPE on the last dim (Su et al. 2021; HF's rotate_half layout): x [..., n, d], cos/sin [n, d]."""
        half = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

    # -- the forward pass --------------------------------------------------------------------------
    def forward(self, ids: Int[Tensor, " c"],  # noqa: F722
                attend: Callable[[int, Tensor, Tensor, Tensor], Tensor]) -> Float[Tensor, "c vocab"]:  # noqa: F722
        """Logits for c new tokens; attend(layer, q [H, c, d], k [KV, c, d], v [KV, c, d]) -> z [H, c, d]."""
        c = ids.shape[0]
        x = self.embed(ids)  # [c, d_model]
        for index, layer in enumerate(self.layers):
            h = layer.ln1(x)
            q = layer.q(h).view(c, self.n_heads, self.d_head).transpose(0, 1)  # [H, c, d], before RoPE
            k = layer.k(h).view(c, self.n_kv_heads, self.d_head).transpose(0, 1)  # [KV, c, d], before RoPE
            v = layer.v(h).view(c, self.n_kv_heads, self.d_head).transpose(0, 1)  # [KV, c, d]
            z = attend(index, q, k, v)  # [H, c, d]
            x = x + layer.o(z.transpose(0, 1).reshape(c, self.n_heads * self.d_head))
            h = layer.ln2(x)
            x = x + layer.down(layer.act(layer.gate(h)) * layer.up(h))
        return self.lm_head(self.norm(x))

    def scores(self, q: Tensor, keys: Tensor) -> Tensor:
        """Scaled dot products of rotated q [H, c, d] with rotated keys [KV, n, d] -> [KV, G, c, n] (GQA:
        query head h reads kv head h // G, HF's repeat_kv order)."""
        kv, _, d = keys.shape
        return q.view(kv, self.group, q.shape[1], d) @ keys[:, None].transpose(-1, -2) * self.scaling

    def mix(self, scores: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Softmax (in float32, as HF's eager attention) and the weighted values [KV, n, d] -> z [H, c, d], p."""
        p = torch.softmax(scores.float(), dim=-1).to(values.dtype)  # [KV, G, c, n]
        z = p @ values[:, None]  # [KV, G, c, d]
        return z.reshape(self.n_heads, scores.shape[2], values.shape[-1]), p


# --------------------------------------------------------------------------------------------------
# The exact path: one token at a time through a cache the policy prunes
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Stream:
    """The per-token NLL of one streaming run and what it held."""

    nll: np.ndarray  # [N - 1]: nll[t] = -log p(x[t+1] | ...); NaN where a token is not scored
    path: str  # "exact" or "fast"
    max_cache_entries: int  # most entries the cache held at once (exact: slots; fast: carried between chunks)
    max_keys: int  # most keys any query attended to (S + W - S at most)
    cache_bytes: int  # size of the largest cache held (keys + values, all layers)
    seconds: float
    chunk: int | None = None
    stride: int | None = None

    @property
    def tokens_per_second(self) -> float:
        return (len(self.nll) + 1) / self.seconds if self.seconds > 0 else math.inf


def _checked_keep(policy: CachePolicy, view: CacheView) -> Tensor:
    kept = policy.keep(view)
    kept = torch.as_tensor(kept, dtype=torch.long).flatten().cpu()
    budget = view.n - 1
    if len(kept) > budget:
        raise InputError(f"policy {policy.label()} kept {len(kept)} of {view.n} cache entries; it must free at "
                         f"least one slot for the incoming token (keep at most {budget})")
    if len(kept) and (int(kept.min()) < 0 or int(kept.max()) >= view.n):
        raise InputError(f"policy {policy.label()} returned slot {int(kept.max())}; allowed 0..{view.n - 1}")
    if len(torch.unique(kept)) != len(kept):
        raise InputError(f"policy {policy.label()} returned a slot twice: {kept.tolist()}")
    return torch.sort(kept).values


def _stream_exact(decoder: LlamaDecoder, ids: Tensor, policy: CachePolicy, progress: bool) -> Stream:
    """Read ids token by token; before each token, a full cache is pruned by `policy.keep`."""
    started = time.perf_counter()
    n_tokens = len(ids)
    capacity = policy.window or n_tokens
    n_layers, kv, d = len(decoder.layers), decoder.n_kv_heads, decoder.d_head
    keys = torch.zeros(n_layers, kv, capacity, d, dtype=decoder.dtype, device=decoder.device)  # before RoPE
    values = torch.zeros_like(keys)
    positions = torch.zeros(capacity, dtype=torch.long)  # text index of the token in each slot
    last_attention = torch.zeros(capacity)
    attention_sum = torch.zeros(capacity)
    nll = np.full(n_tokens - 1, np.nan)
    n = max_entries = 0  # slots in use
    cos = sin = step_attention = torch.zeros(0)

    def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        nonlocal step_attention
        keys[layer, :, n] = k[:, 0]
        values[layer, :, n] = v[:, 0]
        # Re-rotate every cached key at its slot: positions live inside the cache (Xiao §3.2).
        scores = decoder.scores(decoder.rotate(q, cos[n:], sin[n:]), decoder.rotate(keys[layer, :, :n + 1], cos, sin))
        z, p = decoder.mix(scores, values[layer, :, :n + 1])
        step_attention = step_attention + p.float().mean(dim=(0, 1, 2)).cpu()  # [n + 1]
        return z

    for t in progress_bar(range(n_tokens - 1), desc=f"stream {policy.label()} (exact)", enabled=progress):
        if n == capacity:
            view = CacheView(t, positions[:n].clone(), last_attention[:n].clone(), attention_sum[:n].clone())
            kept = _checked_keep(policy, view)
            n = len(kept)
            keys[:, :, :n] = keys[:, :, kept.to(keys.device)]
            values[:, :, :n] = values[:, :, kept.to(values.device)]
            for per_slot in (positions, last_attention, attention_sum):
                per_slot[:n] = per_slot[kept]
        cos, sin = decoder.rope(torch.arange(n + 1, device=decoder.device))  # slot i sits at position i
        step_attention = torch.zeros(n + 1)
        logits = decoder.forward(ids[t:t + 1], attend)[0]
        positions[n] = t
        last_attention[:n + 1] = step_attention / n_layers
        attention_sum[n] = 0.0
        attention_sum[:n + 1] += last_attention[:n + 1]
        n += 1
        max_entries = max(max_entries, n)
        nll[t] = float(-torch.log_softmax(logits.float(), dim=-1)[ids[t + 1]])
    bytes_held = 2 * keys.element_size() * n_layers * kv * d * max_entries
    return Stream(nll, "exact", max_entries, max_entries, bytes_held, time.perf_counter() - started)


# --------------------------------------------------------------------------------------------------
# The fast path: chunks with a banded sinks + window mask
# --------------------------------------------------------------------------------------------------


class _BandedCache:
    """What the fast path carries between chunks, per layer: keys (before RoPE) and values of the S
    sinks and of the last W - S - 1 tokens, which is what the exact path's cache would hold.

    For a chunk of queries t0..t1-1, query t attends to the sinks j < S, scored as if it sat at cache
    slot min(t, W - 1) and sink j at slot j, and to the recent tokens S <= j <= t with t - j < W - S,
    at their text distance; both blocks share one softmax.
    """

    def __init__(self, decoder: LlamaDecoder, sinks: int, window: int | None):
        self.decoder, self.sinks, self.window = decoder, sinks, window
        self.recent = None if window is None else window - sinks  # recent tokens a query sees, itself included
        n_layers = len(decoder.layers)
        empty = torch.zeros(decoder.n_kv_heads, 0, decoder.d_head, dtype=decoder.dtype, device=decoder.device)
        self.sink_k, self.sink_v = [empty] * n_layers, [empty] * n_layers  # [KV, <=S, d]: tokens 0..S-1
        self.recent_k, self.recent_v = [empty] * n_layers, [empty] * n_layers  # [KV, m, d]: tokens t0-m..t0-1

    @property
    def entries(self) -> int:
        return self.sink_k[0].shape[1] + self.recent_k[0].shape[1]

    def seed(self, prefix: SharedPrefix, length: int) -> None:
        """Start after a dense pass over tokens 0..length-1 (length <= W: nothing evicted yet)."""
        keep_from = self.sinks if self.recent is None else max(self.sinks, length - (self.recent - 1))
        for layer, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
            self.sink_k[layer], self.sink_v[layer] = k[:, :min(self.sinks, length)], v[:, :min(self.sinks, length)]
            self.recent_k[layer], self.recent_v[layer] = k[:, keep_from:length], v[:, keep_from:length]

    def start_chunk(self, t0: int, t1: int) -> None:
        """The band of queries t0..t1-1: one additive mask over [sinks | window keys] and the RoPE tables."""
        decoder, device = self.decoder, self.decoder.device
        self.t0, self.c, self.m = t0, t1 - t0, self.recent_k[0].shape[1]
        self.n_sinks = min(self.sinks, t1)  # sink tokens that exist by the end of this chunk
        query_t = torch.arange(t0, t1, device=device)[:, None]  # [c, 1] text index of each query
        key_t = torch.arange(t0 - self.m, t1, device=device)[None]  # [1, m + c] text index of each window key
        sees_recent = (key_t <= query_t) & (key_t >= self.sinks)  # [c, m + c]
        if self.recent is not None:
            sees_recent &= query_t - key_t < self.recent
        sees_sink = torch.arange(self.n_sinks, device=device)[None] <= query_t  # [c, n_sinks]
        self.visible = torch.cat([sees_sink, sees_recent], dim=1)  # [c, n_sinks + m + c]
        self.mask = torch.zeros(self.visible.shape, dtype=decoder.dtype, device=device).masked_fill(
            ~self.visible, -math.inf)
        # Window keys at local positions 0..m+c-1: RoPE only sees distances, and small angles stay exact.
        self.cos_w, self.sin_w = decoder.rope(torch.arange(self.m + self.c, device=device))
        slot = query_t[:, 0] if self.window is None else query_t[:, 0].clamp(max=self.window - 1)
        self.cos_q, self.sin_q = decoder.rope(slot)  # the query's cache slot, for the sink block
        self.cos_s, self.sin_s = decoder.rope(torch.arange(self.n_sinks, device=device))
        # The first token the next chunk still needs.
        self.keep_from = self.sinks if self.recent is None else max(self.sinks, t1 - (self.recent - 1))

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        decoder, m = self.decoder, self.m
        new_sinks = self.n_sinks - self.sink_k[layer].shape[1]
        sink_k = self.sink_k[layer] = torch.cat([self.sink_k[layer], k[:, :new_sinks]], dim=1)  # [KV, n_sinks, d]
        sink_v = self.sink_v[layer] = torch.cat([self.sink_v[layer], v[:, :new_sinks]], dim=1)
        window_k = torch.cat([self.recent_k[layer], k], dim=1)  # [KV, m + c, d]
        window_v = torch.cat([self.recent_v[layer], v], dim=1)
        scores = torch.cat([
            decoder.scores(decoder.rotate(q, self.cos_q, self.sin_q), decoder.rotate(sink_k, self.cos_s, self.sin_s)),
            decoder.scores(decoder.rotate(q, self.cos_w[m:], self.sin_w[m:]),
                           decoder.rotate(window_k, self.cos_w, self.sin_w)),
        ], dim=-1) + self.mask  # [KV, G, c, n_sinks + m + c]
        z, _ = decoder.mix(scores, torch.cat([sink_v, window_v], dim=1))
        drop = self.keep_from - (self.t0 - m)
        self.recent_k[layer], self.recent_v[layer] = window_k[:, drop:], window_v[:, drop:]
        return z


def _read_chunk(decoder: LlamaDecoder, cache: _BandedCache, ids: Tensor, t0: int, t1: int) -> np.ndarray:
    """Read tokens t0..t1-1 through the cache; the NLL of each next token, [t1 - t0]."""
    cache.start_chunk(t0, t1)
    logits = decoder.forward(ids[t0:t1], cache.attend)  # [c, vocab]
    targets = ids[t0 + 1:t1 + 1]
    return (-torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[:, None])[:, 0]).cpu().numpy()


@dataclasses.dataclass
class SharedPrefix:
    """A dense pass over the first `length` tokens, computed once by `run` for several fast-path
    policies: while t < W nothing has been evicted, so every Sinks(S, W) / Window(W) reads tokens
    0..W-1 exactly as dense does; each policy starts from this pass instead of recomputing it."""

    length: int
    keys: list[Tensor]  # per layer [KV, length, d], before RoPE
    values: list[Tensor]
    nll: np.ndarray  # [length]
    seconds: float

    @classmethod
    def compute(cls, decoder: LlamaDecoder, ids: Tensor, length: int, chunk: int) -> SharedPrefix:
        started = time.perf_counter()
        cache = _BandedCache(decoder, 0, None)
        nll = [_read_chunk(decoder, cache, ids, t0, min(t0 + chunk, length)) for t0 in range(0, length, chunk)]
        return cls(length, cache.recent_k, cache.recent_v, np.concatenate(nll), time.perf_counter() - started)


def _stream_fast(decoder: LlamaDecoder, ids: Tensor, sinks: int, window: int | None, chunk: int,
                 progress: bool, prefix: SharedPrefix | None = None) -> Stream:
    """Read ids in chunks of `chunk` tokens through a `_BandedCache` (after `prefix`, if given)."""
    started = time.perf_counter()
    n_tokens = len(ids)
    cache = _BandedCache(decoder, sinks, window)
    nll = np.full(n_tokens - 1, np.nan)
    start = 0 if prefix is None else min(prefix.length, window or prefix.length, n_tokens - 1)
    if start:
        cache.seed(prefix, start)
        nll[:start] = prefix.nll[:start]
    max_entries, max_keys = cache.entries, start
    for t0 in progress_bar(range(start, n_tokens - 1, chunk), desc=f"stream S={sinks} W={window} (fast)",
                           enabled=progress):
        nll[t0:t0 + chunk] = _read_chunk(decoder, cache, ids, t0, min(t0 + chunk, n_tokens - 1))
        max_keys = max(max_keys, int(cache.visible.sum(-1).max()))
        max_entries = max(max_entries, cache.entries)
    itemsize = torch.empty(0, dtype=decoder.dtype).element_size()
    bytes_held = 2 * itemsize * len(decoder.layers) * decoder.n_kv_heads * decoder.d_head * max_entries
    seconds = time.perf_counter() - started + (prefix.seconds if start else 0.0)  # as if it had run alone
    return Stream(nll, "fast", max_entries, max_keys, bytes_held, seconds, chunk=chunk)


# --------------------------------------------------------------------------------------------------
# Recompute: re-encode the kept tokens for every prediction (any causal LM)
# --------------------------------------------------------------------------------------------------


def _recompute(model: Any, ids: Tensor, policy: Recompute, stride: int, batch_size: int, progress: bool) -> Stream:
    """Query q reads [first S tokens] + [last W - S tokens up to q], re-encoded at positions 0..W-1.

    Queries q < W see their whole prefix: one forward of the first W tokens. Later queries come in
    blocks of `stride`: one forward per block, of the window ending at the block's last query; the
    block's first query then sees W - stride + 1 tokens instead of W (stride 1 is exact).
    """
    started = time.perf_counter()
    hf = _hf_model(model)
    n_tokens, window, sinks = len(ids), policy.window, policy.sinks
    recent = window - sinks
    nll = np.full(n_tokens - 1, np.nan)

    def score(batch: list[Tensor], n_last: int) -> Tensor:
        with torch.no_grad():
            logits = hf(input_ids=torch.stack(batch), logits_to_keep=n_last).logits  # [b, n_last, vocab]
        return torch.log_softmax(logits.float(), dim=-1)

    head = ids[:min(window, n_tokens)]  # queries 0..len(head)-1 see their prefix
    first = min(window, n_tokens - 1)
    logprobs = score([head], len(head))[0, :first]
    nll[:first] = (-logprobs.gather(-1, ids[1:first + 1, None])[:, 0]).cpu().numpy()
    blocks = [(q0, min(q0 + stride, n_tokens - 1)) for q0 in range(window, n_tokens - 1, stride)]
    batches = [blocks[i:i + batch_size] for i in range(0, len(blocks), batch_size)]
    for batch in progress_bar(batches, desc=f"stream {policy.label()} (recompute, stride {stride})", enabled=progress):
        windows = [torch.cat([ids[:sinks], ids[q1 - recent:q1]]) for _, q1 in batch]  # each W tokens
        logprobs = score(windows, stride)
        for row, (q0, q1) in enumerate(batch):
            block = logprobs[row, stride - (q1 - q0):]  # the last q1 - q0 positions
            nll[q0:q1] = (-block.gather(-1, ids[q0 + 1:q1 + 1, None])[:, 0]).cpu().numpy()
    return Stream(nll, "exact" if stride == 1 else "fast", window, window, 0, time.perf_counter() - started,
                  stride=stride)


# --------------------------------------------------------------------------------------------------
# The engine entry point
# --------------------------------------------------------------------------------------------------


def newline_id(model: Any) -> int:
    """The id of "\\n" (Xiao Table 1 replaces the first four tokens by it); an error if it is not one token."""
    ids = zoo.info(model).tokenizer("\n", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise InputError(f'"\\n" is {len(ids)} tokens for {zoo.info(model).name}; replacement sinks need one token')
    return ids[0]


def stream_nll(model: Any, ids: Sequence[int] | np.ndarray | Tensor, policy: CachePolicy, *, fast: bool = True,
               chunk: int = DEFAULT_CHUNK, recompute_stride: int | None = None, batch_size: int = 8,
               progress: bool = True, shared_prefix: SharedPrefix | None = None) -> Stream:
    """Per-token NLL of reading `ids` under a cache policy: the engine under `run` (no length checks
    beyond the model's own limits).

        >>> s = stream_nll(model, ids, Sinks(4, 256))                   # fast path
        >>> s.nll.shape, s.max_keys                                      # (N - 1,), 256

    `fast=False` forces the exact token-by-token path; policies without a `band()` always take it.
    `recompute_stride` (Recompute only) defaults to 1 on the exact path and W // 8 on the fast one.
    `shared_prefix` (fast path, same ids, no replaced sinks) skips the tokens a dense pass already read.
    """
    model_info = zoo.info(model)
    if not model_info.causal:
        raise InputError(f"{model_info.name} is an encoder: streaming perplexity needs a causal LM")
    if not isinstance(policy, CachePolicy):
        raise InputError(f"expected a CachePolicy (Dense, Window, Sinks, Recompute or a subclass), got {policy!r}")
    device = next(_hf_model(model).parameters()).device
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
    with torch.no_grad():
        if policy.recompute:
            default = 1 if not fast else max(1, policy.window // 8)
            stride = check_range("recompute stride", recompute_stride or default, 1, policy.window)
            result = _recompute(model, ids, policy, stride, batch_size, progress)
        else:
            decoder = LlamaDecoder(model)
            band = policy.band()
            if fast and band is not None:
                prefix = None if policy.replace_sinks else shared_prefix
                result = _stream_fast(decoder, ids, band[0], band[1], chunk, progress, prefix)
            else:
                result = _stream_exact(decoder, ids, policy, progress)
    if policy.replace_sinks:
        result.nll[:max(0, policy.sinks - 1)] = np.nan  # targets 1..S-1 are the inserted newlines, not the text
    return result


# --------------------------------------------------------------------------------------------------
# Data: one long token stream
# --------------------------------------------------------------------------------------------------


def long_text(model: Any, *, text_file: str | Path | None = None, jsonl: str | Path | None = None,
              corpus: str = corpora.DEFAULT_CORPUS, document: str | int | None = None, max_tokens: int | None = None,
              prepend_bos: bool = True) -> _data.Dataset:
    """One long token stream (a Dataset holding one sequence), BOS policy explicit as in workbench.core.data.

        >>> text = long_text(model, corpus="austen", document="Emma", max_tokens=8192)   # BOS + 8191 tokens
        >>> text = long_text(model, jsonl="books.jsonl")      # records concatenated in file order

    JSONL records ({"text": ...} or {"tokens": [...]}) are concatenated into one stream, as Xiao
    Table 2 concatenates PG19 books; `{"tokens"}` ids are used exactly, and BOS is added only when the
    file holds text. `max_tokens` counts every token fed, BOS included.
    """
    model_info = zoo.info(model)
    if max_tokens is not None:
        check_range("max tokens", max_tokens, 2, 1 << 31)
    before: list[int] = []
    special: dict = {}
    if prepend_bos:
        if model_info.bos_token_id is None:
            raise InputError(f"model {model_info.name} has no BOS token; use --no-prepend-bos")
        before, special = [model_info.bos_token_id], {"bos": model_info.bos_token_id}
    budget = None if max_tokens is None else max_tokens - len(before)
    has_text = True
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise InputError(f"input file {path} does not exist")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise InputError(f"{path}: the file is empty")
        body, source = _data.tokenize(model_info, text), f"file:{path}"
    elif jsonl is not None:
        body, has_text = _jsonl_stream(model_info, Path(jsonl))
        source = f"jsonl:{jsonl}"
        if not has_text:
            before, special = [], {}
            budget = max_tokens
    else:
        if document is None:
            document = "Emma" if corpus == "austen" else 0
        body = _data.corpus_tokens(model, corpus, document, budget)
        title = _data._pick_document(corpora.documents(corpus), document, corpus).title
        source = f"corpus:{corpus}/{title}"
    ids = np.concatenate([np.asarray(before, np.int64), np.asarray(body[:budget], np.int64)])
    if len(ids) < 2:
        raise InputError(f"{source}: {len(ids)} token(s) after tokenisation; streaming needs at least 2")
    policy = "bos" if before else ("as-given" if jsonl is not None and not has_text else "none")
    return _data.Dataset([ids], source, policy, special, window=None)


def _jsonl_stream(model_info: Any, path: Path) -> tuple[np.ndarray, bool]:
    """Every record of a JSONL file, concatenated in file order: text tokenised, ids used as given."""
    pieces, has_text = [], False
    for where, kind, value in _data.jsonl_records(path):
        has_text |= kind == "text"
        pieces.append(_data.tokenize(model_info, value) if kind == "text" else _data.checked_ids(value, model_info, where))
    if not pieces:
        raise InputError(f"{path}: no records")
    return np.concatenate(pieces), has_text


# --------------------------------------------------------------------------------------------------
# Evaluation: policies x one text -> Results
# --------------------------------------------------------------------------------------------------


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
                seed: int = 0) -> list[dict]:
    """Tidy rows of one run: loss and perplexity (95 % block-bootstrap CI) and the binned NLL curve."""
    common = {"experiment": EXPERIMENT, "model": zoo.info(model).name, "intervention": "none",
              **policy.columns(), "cache_size": policy.window or n_tokens, "path": stream.path}
    summary = {"n_tokens": n_tokens, "cache_entries_max": stream.max_cache_entries, "keys_per_query_max": stream.max_keys,
               "chunk": stream.chunk, "stride": stream.stride, "seconds": round(stream.seconds, 3),
               "tokens_per_second": round(stream.tokens_per_second, 1)}
    rows = [{**common, **row, **summary} for row in _summary_rows(stream, seed)]
    rows += [{**common, **row, "curve_bin": curve_bin} for row in _curve_rows(stream, curve_bin)]
    return rows


def unit_name(policy: CachePolicy) -> str:
    return repr(policy)


def run(model: Any, text: _data.Dataset | Sequence[int] | np.ndarray, policies: Sequence[CachePolicy], *,
        fast: bool = True, chunk: int = DEFAULT_CHUNK, recompute_stride: int | None = None, curve_bin: int = 1,
        seed: int = 0, out: str | Path | None = None, progress: bool = True,
        log: Callable[[str], None] | None = None) -> Results:
    """Streaming perplexity of each policy over one long text, as tidy Results with provenance.

        >>> res = run(model, long_text(model, max_tokens=8192), [Sinks(s, 512) for s in (0, 1, 2, 4, 8)])
        >>> res.filter(metric="perplexity").df[["policy", "sinks", "window", "value"]]

    Rows: loss and perplexity per policy (`policy, sinks, window, recent, cache_size, path, ...`) and
    `metric="nll"` rows for the curve, binned by `curve_bin` tokens (1: every token). With `out`, the
    sweep is journalled per policy and resumes where a killed run stopped.
    """
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
    settings = {"fast": fast, "chunk": chunk, "recompute_stride": recompute_stride, "curve_bin": curve_bin}
    store = None
    if out is not None:
        identity = {"experiment": EXPERIMENT, "model": model_info.name, "weights": model_info.weights_sha256,
                    "data": dataset.hash(), "seed": seed, "policies": [unit_name(p) for p in policies], **settings}
        store = ResultStore(out, identity)
    prefix = None
    sharing = [p for p in policies if fast and p.band() is not None and not p.replace_sinks
               and not (store is not None and store.done(unit_name(p)))]
    if len(sharing) > 1 and any(p.window for p in sharing):
        # Every band policy reads tokens 0..W-1 exactly as dense does: read them once.
        length = min(len(ids) - 1, max(p.window for p in sharing if p.window))
        with torch.no_grad():
            decoder = LlamaDecoder(model)
            prefix = SharedPrefix.compute(decoder, torch.as_tensor(ids).to(decoder.device), length, chunk)
    rows: list[dict] = []
    for policy in policies:
        unit = unit_name(policy)
        if store is not None and store.done(unit):
            rows += store.rows(unit)
            continue
        stream = stream_nll(model, ids, policy, fast=fast, chunk=chunk, recompute_stride=recompute_stride,
                            progress=progress, shared_prefix=prefix)
        unit_rows = policy_rows(model, stream, policy, len(ids), curve_bin, seed)
        if log is not None:
            ppl = next(r for r in unit_rows if r["metric"] == "perplexity")
            log(f"{policy.label():<24} perplexity {ppl['value']:10.3f}  ({stream.path} path, "
                f"{stream.tokens_per_second:.0f} tok/s, at most {stream.max_keys} keys per query)")
        if store is not None:
            store.add(unit, unit_rows)
        rows += unit_rows
    header = provenance(EXPERIMENT, model, dataset, seed=seed, policies=[unit_name(p) for p in policies],
                        **settings, shared_prefix_tokens=prefix.length if prefix else 0,
                        wall_seconds=round(time.perf_counter() - started, 3))
    if store is not None:
        return store.finish(header)
    return Results(rows, header)
