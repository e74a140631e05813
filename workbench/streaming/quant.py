"""Streaming through a quantised KV cache: how well does a model keep predicting when every step reads
its cache through a B-bit quantiser, and how much do the sink tokens kept in full precision save?

    >>> quant = KVCacheQuant(bits=3, keep="bos")                        # per token; IntactKV keeps BOS
    >>> res = stream_policies(model, text, [Sinks(4, 256), Window(256)], kv_quant=[None, quant])

A one-pass evaluation (`quantize-kv`, interventions.quant) quantises the keys and values of one forward
pass; a single prefill never exercises a cache (transformers' QuantizedCache even returns the prefill's
K/V unquantised). Here the quantiser sits in the cache itself: at every step the query attends to

    quantize_kv_tensor(what the cache holds, bits, granularity, group, keep)

over the entries in the cache at that step (the sinks and the recent tokens), the token being read
among them; the kept tokens are read bit for bit and left out of every statistic. The quantiser is
interventions.quant's (asymmetric min-max round-to-nearest, KIVI's; `keep=` as there: none, bos,
first:N, tok:X, positions, sinks / auto:EPS).

Which keys: the streaming cache stores keys *before* RoPE and rotates them at their slot at every step
(positions live inside the cache, Xiao §3.2), so `rope="pre"` (default) quantises what it holds, as
KVQuant quantises pre-RoPE keys (Hooper et al. 2024). `rope="post"` quantises the keys as rotated at
their current slot, what a post-RoPE cache (transformers' DynamicCache, `quantize-kv` at hook_rot_k)
holds; under Dense, slot = text position, so the stream then reproduces the one-pass `quantize-kv`
(tested). Granularity `per-token` quantises each entry on its own, so quantising once, as the token
enters the cache, is the same as quantising the cache at every step (bit for bit, tested): that is the
only case the fast chunked path runs. `per-channel` and `kivi` (keys per channel, values per token)
take their statistics over what the cache holds at that step, and `rope="post"` changes a key whenever
its slot moves: those re-quantise the full-precision cache at every step, on the exact path only.

`auto:EPS` / `sinks` finds its positions by one ordinary forward pass over the first `DETECT_TOKENS`
tokens of the text (or the cache budget W, if smaller) before streaming (workbench.probes.sinks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor

from interventions.quant import (
    KV_GRANULARITIES,
    KeepPolicy,
    QuantizeKV,
    _read_group,
    check_bits,
    detect_keep_positions,
    quantize_kv_tensor,
)
from workbench import zoo
from workbench.core import data as _data
from workbench.core import sites
from workbench.core.errors import InputError

ROPE_CHOICES = ("pre", "post")
DETECT_TOKENS = 512  # tokens read once to find `auto` sinks (the first tokens of a stream are where they are)
WHO = "kv-cache quantisation"


@dataclasses.dataclass(frozen=True)
class KVCacheQuant:
    """A quantiser for what a streaming cache holds; see the module docstring.

        >>> KVCacheQuant(bits=2, granularity="kivi", group=32, keep="first:4")     # exact path only
        >>> KVCacheQuant.of("quantize-kv:bits=3,keep=bos")                         # the catalogue's spec

    `bits` 1..16; `keep` which tokens stay in full precision; `granularity` per-token (each entry's d_head
    channels of each KV head, in groups of `group` channels), per-channel (each channel over the entries
    in the cache, in groups of `group` consecutive entries) or kivi; `keys` / `values` which are
    quantised; `rope` pre or post (which keys); `layers` the layers whose cache is quantised (None: all).
    """

    bits: Any = 4
    keep: Any = "none"
    granularity: str = "per-token"
    group: Any = None
    keys: bool = True
    values: bool = True
    rope: str = "pre"
    layers: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits, WHO))
        object.__setattr__(self, "keep", KeepPolicy.parse(self.keep, WHO).text)
        if self.granularity not in KV_GRANULARITIES:
            raise InputError(f"{WHO}: granularity {self.granularity!r}: use one of {', '.join(KV_GRANULARITIES)}")
        if self.rope not in ROPE_CHOICES:
            raise InputError(f"{WHO}: rope {self.rope!r}: use pre (the keys as the streaming cache stores them, "
                             "before rotation) or post (rotated at their slot, as a post-RoPE cache holds them)")
        if not (self.keys or self.values):
            raise InputError(f"{WHO}: keys=False and values=False quantise nothing; choose at least one")
        object.__setattr__(self, "group", _read_group(self.group, WHO))
        if isinstance(self.layers, list):  # hashable: a quantiser keys the shared prefix of a sweep
            object.__setattr__(self, "layers", tuple(self.layers))

    @classmethod
    def of(cls, value: Any) -> KVCacheQuant | None:
        """A KVCacheQuant from itself, None, or a `quantize-kv` intervention (or its spec string / dict)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, (str, dict)):
            from interventions import from_spec

            value = from_spec(value)
        if not isinstance(value, QuantizeKV):
            raise InputError(f"a quantised stream needs a KVCacheQuant or a quantize-kv intervention, got {value!r}")
        return cls(bits=value.bits, keep=value.keep, granularity=value.granularity, group=value.group,
                   keys=value.keys, values=value.values, layers=value.layers)

    @property
    def policy(self) -> KeepPolicy:
        return KeepPolicy.parse(self.keep, WHO)

    def plans(self) -> tuple[tuple[str, int | None], tuple[str, int | None]]:
        """(granularity, group) of the keys and of the values (kivi: keys per channel, values per token)."""
        if self.granularity == "kivi":  # KIVI (Liu et al. 2024)
            return ("per-channel", self.group), ("per-token", None)
        return (self.granularity, self.group), (self.granularity, self.group)

    def on_write(self) -> tuple[bool, bool]:
        """Whether keys / values can be quantised once, as they enter the cache (the same numbers)."""
        (key_granularity, _), (value_granularity, _) = self.plans()
        return key_granularity == "per-token" and self.rope == "pre", value_granularity == "per-token"

    def fast_path_refusal(self) -> str | None:
        """Why the fast chunked path cannot run this quantiser exactly (None if it can)."""
        if all(self.on_write()):
            return None
        why = (f"granularity {self.granularity} takes its statistics over what the cache holds at each step"
               if self.granularity != "per-token" else
               "rope=post quantises each key as rotated at its current slot, which moves at every step")
        return (f"{WHO} {self.label()}: {why}, so every query reads differently quantised entries; the fast "
                "chunked path quantises each token once as it enters the cache, exact only for per-token keys "
                "before RoPE (the default). Use the exact token-by-token path (--exact, fast=False)")

    def label(self) -> str:
        group = f"/{self.group}" if self.group else ""
        parts = [f"kv{self.bits}", f"{self.granularity}{group}", f"keep={self.keep}"]
        if self.rope != "pre":
            parts.append(f"rope={self.rope}")
        if not (self.keys and self.values):
            parts.append("keys only" if self.keys else "values only")
        if self.layers is not None:
            parts.append(f"layers={self.layers}")
        return " ".join(parts)

    def columns(self) -> dict:
        """The quantiser's columns in every result row of a quantised stream."""
        tensors = "keys+values" if self.keys and self.values else ("keys" if self.keys else "values")
        return {"kv_bits": self.bits, "kv_keep": self.keep, "kv_granularity": self.granularity,
                "kv_group": self.group, "kv_rope": self.rope, "kv_tensors": tensors,
                "kv_layers": None if self.layers is None else str(self.layers)}

    def check(self, model: Any) -> None:
        """What can be checked before any pass: the layers, the group against d_head, the keep tokens."""
        model_info = zoo.info(model)
        sites.parse_layers(self.layers, model)
        if self.group is not None and self.granularity == "per-token" and model_info.d_head % self.group:
            raise InputError(f"{WHO}: group = {self.group} does not divide d_head = {model_info.d_head} of "
                             f"{model_info.name}: use a divisor of {model_info.d_head}")
        self.policy.check(model, WHO)

    def bind(self, model: Any, ids: Tensor, detect_tokens: int | None = None) -> CacheQuantizer:
        """The quantiser for one stream: the kept tokens of this text resolved, the layers listed."""
        self.check(model)
        return CacheQuantizer(self, keep_mask(self.policy, model, ids, detect_tokens),
                              frozenset(sites.parse_layers(self.layers, model)))


def keep_mask(policy: KeepPolicy, model: Any, ids: Tensor, detect_tokens: int | None = None) -> Tensor | None:
    """[N] bool over the text positions of the stream: the tokens kept in full precision (None: none)."""
    if policy.spec is None:
        return None
    state = None
    if policy.auto:
        length = min(len(ids), detect_tokens or DETECT_TOKENS, zoo.info(model).n_ctx)
        head = _data.Dataset([ids[:length].cpu().numpy().astype(np.int64)], "stream head", "as-given", {}, None)
        try:
            state = {"keep_positions": detect_keep_positions(model, head, policy.spec.eps, 1, False)}
        except InputError as exc:
            raise InputError(f"{WHO}: keep={policy.text!r} on the first {length} tokens of the text: {exc}") from exc
    try:
        return policy.mask(ids[None], model, state)[0]
    except InputError as exc:
        raise InputError(f"{WHO}: keep={policy.text!r}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class CacheQuantizer:
    """A KVCacheQuant bound to one stream: `write` what enters the cache, `read` what a query attends to.

        >>> k, v = quantizer.write(layer, k, v, positions)              # [KV, c, d] each, before RoPE
        >>> rotated_k, v = quantizer.read(layer, keys, values, positions, rotate)
    """

    quant: KVCacheQuant
    keep: Tensor | None  # [N] bool over text positions
    layers: frozenset[int]

    def _kept(self, positions: Tensor) -> Tensor | None:
        if self.keep is None:
            return None
        return self.keep[positions.to(self.keep.device)][None]  # [1, n]

    def _apply(self, x: Tensor, plan: tuple[str, int | None], kept: Tensor | None) -> Tensor:
        """quantize_kv_tensor on a cache tensor [KV, n, d] (its layout [batch, pos, kv_head, d_head])."""
        return quantize_kv_tensor(x.transpose(0, 1)[None], self.quant.bits, plan[0], plan[1], kept)[0].transpose(0, 1)

    def write(self, layer: int, k: Tensor, v: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """k, v [KV, c, d] of tokens at text `positions` [c], as the cache stores them."""
        if layer not in self.layers:
            return k, v
        kept = self._kept(positions)
        (key_plan, value_plan), (key_now, value_now) = self.quant.plans(), self.quant.on_write()
        if self.quant.keys and key_now:
            k = self._apply(k, key_plan, kept)
        if self.quant.values and value_now:
            v = self._apply(v, value_plan, kept)
        return k, v

    def read(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor,
             rotate: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """The rotated keys and the values a query attends to, from the cache [KV, n, d] at `positions` [n]
        (keys before RoPE; `rotate` puts them at their slots)."""
        if layer not in self.layers:
            return rotate(keys), values
        kept = self._kept(positions)
        (key_plan, value_plan), (key_now, value_now) = self.quant.plans(), self.quant.on_write()
        keys_here = self.quant.keys and not key_now  # quantised at this step, from the full-precision cache
        if keys_here and self.quant.rope == "pre":
            keys = self._apply(keys, key_plan, kept)
        rotated = rotate(keys)
        if keys_here and self.quant.rope == "post":
            rotated = self._apply(rotated, key_plan, kept)
        if self.quant.values and not value_now:
            values = self._apply(values, value_plan, kept)
        return rotated, values


def as_quant_list(kv_quant: Any) -> list[KVCacheQuant | None]:
    """stream_policies' `kv_quant`: None, one quantiser, or several (None among them: the unquantised run)."""
    if kv_quant is None or isinstance(kv_quant, (KVCacheQuant, QuantizeKV, str, dict)):
        return [KVCacheQuant.of(kv_quant)]
    out = [KVCacheQuant.of(q) for q in kv_quant]
    if not out:
        raise InputError(f"{WHO}: kv_quant is an empty list; pass None for an unquantised cache")
    return list(dict.fromkeys(out))
