"""Can the cache engine run this model, and how does it read tokens through an attention of its own?

    >>> decoder = LlamaDecoder(zoo.load("smollm2-135m"))    # InputError with the reason if it cannot
    >>> logits = decoder.forward(ids, attend)                # attend(layer, q, k, v) -> z, keys before RoPE

The cache engine runs the Llama decoder layer (RMSNorm, RoPE, GQA, gated MLP) from the model's own
modules, unwrapped from the bridge, with the bridge's attention hook points firing around its softmax
(`hook_attn_scores`, `hook_pattern`, `hook_z`; workbench.streaming.hooks): SmolLM2, Qwen2.5 and `tiny-llama`. It refuses Gemma 3
(native 512-token sliding-window layers, two RoPE bases, QK-norm, sandwich norms) and models with
learned absolute positions, whose cached keys carry their text position and cannot be moved into the
cache without re-encoding (`cache_engine_refusal` says why); `Recompute` runs on any causal LM.
Every path (exact, fast, recompute) returns a `Stream`: the per-token NLL and what the cache held.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench import zoo
from workbench.core.errors import InputError
from workbench.streaming.hooks import has_hooks, hook_points, hooked_attention

# Llama-style decoder layers the cache engine implements (every layer global); rope types whose rotation
# depends only on position.
ENGINE_MODEL_TYPES = ("llama", "qwen2")  # Qwen2: the Llama layer with q/k/v biases (the modules carry them)
ENGINE_ROPE_TYPES = ("default", "linear", "llama3")


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face module a TransformerBridge component wraps (the module itself if unwrapped)."""
    while (inner := module._modules.get("_original_component")) is not None:
        module = inner
    return module


def hf_model(model: Any) -> torch.nn.Module:
    """The Hugging Face causal LM under a bridge (a plain HF model is returned as is)."""
    hf = getattr(model, "original_model", model)
    if not hasattr(hf, "config"):
        raise InputError(f"streaming needs a Hugging Face causal LM (a zoo model), got {type(model).__name__}")
    return hf


def cache_engine_refusal(model: Any) -> str | None:
    """Why the cache engine cannot run `model` (None if it can)."""
    model_info = zoo.info(model)
    config = hf_model(model).config
    name = model_info.name
    if not model_info.causal:
        return f"{name} is an encoder: streaming perplexity needs a causal LM"
    if model_info.positional != "rotary":
        return (f"{name} has learned absolute positions: its cached keys carry their text position, so a cache "
                "policy cannot renumber them inside the cache (StreamingLLM needs RoPE-style relative "
                "positions, Xiao §3.2); use --policy recompute, which re-encodes the window every step")
    windowed = [t for t in (model_info.layer_types or ()) if t != "full_attention"]
    if windowed or getattr(config, "model_type", "").startswith("gemma3"):
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
        hf = hf_model(model)
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
        self.model = model
        self.points = hook_points(model)  # per layer (hook_attn_scores, hook_pattern, hook_z) of the bridge
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

    def attention(self, layer: int, scores: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """`mix` with the layer's hook points firing on scores, pattern and z (where hooks are registered)."""
        points = None if self.points is None else self.points[layer]
        if points is None or not any(has_hooks(point) for point in points):
            return self.mix(scores, values)  # no hooks: exactly the engine's attention
        return hooked_attention(points, scores, values, self.n_heads)

    def mix(self, scores: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Softmax (in float32, as HF's eager attention) and the weighted values [KV, n, d] -> z [H, c, d], p."""
        p = torch.softmax(scores.float(), dim=-1).to(values.dtype)  # [KV, G, c, n]
        z = p @ values[:, None]  # [KV, G, c, d]
        return z.reshape(self.n_heads, scores.shape[2], values.shape[-1]), p


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
