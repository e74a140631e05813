"""The block forwards of each attention family: Llama / Qwen2 / Gemma 3 (PositionEmbeddingsAttentionBridge),
BERT and ViT / DeiT (AttentionBridge over the HF module), and the toy. Each takes the installation's
state (`plan.Blockwise`) after the module."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from workbench.attention.blocks import _key_span, _masked, _run_blocks, _run_whole
from workbench.attention.keys import _fusable, _fused, _key_readers, _serve_key_readers
from workbench.attention.plan import Blockwise, QueryBlock
from workbench.core.errors import InputError


def _rotary_forward(self: Any, state: Blockwise, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """TransformerLens's PositionEmbeddingsAttentionBridge.forward for the families above, the scores,
    softmax, pattern and output projection run per query block."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

    hf_attn = self.original_component
    hidden_states = kwargs.pop("hidden_states") if "hidden_states" in kwargs else args[0]
    position_embeddings = kwargs.pop("position_embeddings", None)
    attention_mask = kwargs.pop("attention_mask", None)
    hidden_states = self.hook_in(hidden_states)
    batch, n_queries = hidden_states.shape[:2]
    head_dim = hf_attn.head_dim
    hidden_shape = (batch, n_queries, -1, head_dim)
    query = self.q(hidden_states).view(hidden_shape).transpose(1, 2)  # (b, nh, T, hs); hook_q fires
    key = self.k(hidden_states).view(hidden_shape).transpose(1, 2)  # (b, nkv, T, hs)
    value = self.v(hidden_states).view(hidden_shape).transpose(1, 2)
    if self._qk_norm_phase == "post_reshape":  # Gemma 3
        query = self.hook_q_normed(self.q_norm(query))
        if "k_norm" in self.submodules:
            key = self.hook_k_normed(self.k_norm(key))
    if position_embeddings is not None:
        cos, sin = self._apply_position_embedding_hooks(position_embeddings)
        if cos.shape[-1] != head_dim:
            raise InputError(f"blockwise attention: rotary embeddings over {cos.shape[-1]} of {head_dim} head "
                             "dimensions are not supported (run the full path)")
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
    if hasattr(self, "hook_rot_q"):
        query = self.hook_rot_q(query)
    if hasattr(self, "hook_rot_k"):
        key = self.hook_rot_k(key)
    cache = kwargs.pop("cache", None)  # transformers 5.2x names the layer's cache `cache`; TransformerLens's
    if cache is not None and kwargs.get("past_key_values") is None:  # _update_kv_cache reads past_key_values
        kwargs["past_key_values"] = cache
    key, value = self._update_kv_cache(key, value, **kwargs)
    groups = getattr(hf_attn, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    n_keys = key.shape[-2]
    scaling = getattr(hf_attn, "scaling", head_dim ** -0.5)
    softcap = getattr(hf_attn, "attn_logit_softcapping", None)
    window = getattr(hf_attn, "sliding_window", None)
    causal = bool(getattr(self, "is_causal", True))
    key_t = key.transpose(-2, -1)  # (b, nh, hs, K)
    o_weight = getattr(getattr(getattr(self, "o", None), "original_component", None), "weight", None)
    readers = _key_readers(self)
    dropout = getattr(hf_attn, "attention_dropout", 0.0) if self.training else 0.0

    def project(z: torch.Tensor, rows: int) -> torch.Tensor:
        z = z.transpose(1, 2).reshape(batch, rows, -1)  # (b, B, nh * hs)
        z = self._pre_output_projection(z)
        if isinstance(o_weight, torch.Tensor) and o_weight.dtype.is_floating_point and z.dtype != o_weight.dtype:
            z = z.to(o_weight.dtype)
        return self.o(z)  # hook_z fires on the block: (b, B, nh, hs)

    if _fusable(self, state, attention_mask, softcap, window, causal, dropout, n_queries, n_keys, readers):
        def whole(block: QueryBlock) -> torch.Tensor:
            z, lse = _fused(query, key, value, scaling, causal)
            for reader in readers:
                reader.from_lse(query, key, lse, scaling, causal, state)
            return project(z, n_queries)

        state.n_fused += 1
        return self.hook_out(_run_whole(n_queries, whole)), None

    def one_block(block: QueryBlock) -> torch.Tensor:
        lo, hi = _key_span(block, n_keys, causal, window, attention_mask, state)
        scores = torch.matmul(query[:, :, block.rows], key_t[..., lo:hi]) * scaling  # (b, nh, B, hi - lo)
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if (lo, hi) != (0, n_keys):  # keys no query of the block sees: the mask value, as on the full path
            every = scores.new_full((*scores.shape[:-1], n_keys), torch.finfo(scores.dtype).min)
            every[..., lo:hi] = scores
            scores = every
        scores = self.hook_attn_scores(_masked(scores, block, attention_mask, state, causal, window))
        weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        if dropout > 0.0:
            weights = torch.nn.functional.dropout(weights, p=dropout, training=True)
        weights = self.hook_pattern(weights)
        _serve_key_readers(self, weights, readers)
        if (lo, hi) != (0, n_keys) and not (weights[..., :lo].any() or weights[..., hi:].any()):
            z = torch.matmul(weights[..., lo:hi], value[:, :, lo:hi])  # the other keys carry no weight
        else:  # a hook moved weight onto keys the mask hid: they count, as on the full path
            z = torch.matmul(weights, value)
        return project(z, block.size)

    size = state.rows(batch, query.shape[1], n_queries, n_keys)
    return self.hook_out(_run_blocks(state, n_queries, size, one_block)), None


# --------------------------------------------------------------------------------------------------
# BERT and ViT / DeiT: AttentionBridge over the HF module
# --------------------------------------------------------------------------------------------------


def _encoder_attention(self: Any, state: Blockwise, hidden_states: torch.Tensor, attention_mask: Any,
                       scaling: float, softmax_fp32: bool) -> torch.Tensor:
    """Bidirectional attention through the bridge's q/k/v/o projections, per query block; returns the output
    of the o projection [b, T, d_model] (hook_z and o fire per block)."""
    batch, n_queries = hidden_states.shape[:2]
    heads = int(self.config.n_heads)
    query = self.q(hidden_states).view(batch, n_queries, heads, -1).transpose(1, 2)  # (b, nh, T, hs)
    key = self.k(hidden_states).view(batch, n_queries, heads, -1).transpose(1, 2)
    value = self.v(hidden_states).view(batch, n_queries, heads, -1).transpose(1, 2)
    key_t = key.transpose(-2, -1)

    def one_block(block: QueryBlock) -> torch.Tensor:
        scores = torch.matmul(query[:, :, block.rows], key_t) * scaling  # (b, nh, B, T)
        scores = self.hook_attn_scores(_masked(scores, block, attention_mask, state, False, None))
        if softmax_fp32:  # ViT's eager attention
            weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        else:  # BERT's
            weights = torch.nn.functional.softmax(scores, dim=-1)
        weights = self.hook_pattern(self._apply_attn_dropout(weights) if self.training else weights)
        _serve_key_readers(self, weights)
        z = torch.matmul(weights, value).transpose(1, 2).reshape(batch, block.size, -1)
        return self.o(z)

    size = state.rows(batch, heads, n_queries, n_queries)
    return _run_blocks(state, n_queries, size, one_block)


def _split_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, Any]:
    hidden = kwargs.pop("hidden_states") if "hidden_states" in kwargs else args[0]
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    return hidden, mask


def _bert_forward(self: Any, state: Blockwise, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """BertAttention: self-attention per block, then BertSelfOutput (dense, dropout, LayerNorm(x + input))."""
    hidden, mask = _split_inputs(args, kwargs)
    hidden = self.hook_in(hidden)
    hf = self.original_component
    dense = _encoder_attention(self, state, hidden, mask, hf.self.scaling, softmax_fp32=False)
    out = hf.output.LayerNorm(hf.output.dropout(dense) + hidden)
    return self.hook_out(out), None


def _vit_forward(self: Any, state: Blockwise, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """ViTAttention / DeiTAttention: self-attention per block, then o_proj (the residual is the layer's)."""
    hidden, mask = _split_inputs(args, kwargs)
    hidden = self.hook_in(hidden)
    out = _encoder_attention(self, state, hidden, mask, self.original_component.scaling, softmax_fp32=True)
    return self.hook_out(out), None


# --------------------------------------------------------------------------------------------------
# The toy (workbench.toy.model.Attention)
# --------------------------------------------------------------------------------------------------


def _toy_forward(self: Any, state: Blockwise, x: torch.Tensor) -> torch.Tensor:
    """The toy's Attention.forward with its scores, weights, gate and z per query block."""
    import torch.nn.functional as F

    batch, n_queries, _ = x.shape
    q = self.hook_q(torch.einsum("btd,hde->bthe", x, self.W_Q))  # (B, T, nh, hs)
    k = self.hook_k(torch.einsum("btd,hde->bthe", x, self.W_K))
    v = self.hook_v(torch.einsum("btd,hde->bthe", x, self.W_V))
    if self.cfg.positional == "rotary":
        rotate = inspect.getmodule(type(self)).rotate  # the toy's own RoPE
        q = self.hook_rot_q(rotate(q, self.cfg.rotary_base))
        k = self.hook_rot_k(rotate(k, self.cfg.rotary_base))
    keys = torch.arange(n_queries, device=x.device)
    scale = math.sqrt(self.cfg.d_head)

    def one_block(block: QueryBlock) -> torch.Tensor:
        q_block = q[:, block.rows]
        scores = torch.einsum("bqhe,bkhe->bhqk", q_block, k) / scale  # (B, nh, rows, T)
        positions = keys[block.rows]
        scores = self.hook_attn_scores(scores.masked_fill(keys[None, :] > positions[:, None], float("-inf")))
        if self.variant == "relu":  # row t divided by its t + 1 visible keys (the toy's `weights`, per block)
            weights = F.relu(scores) / (positions + 1).to(scores.dtype)[:, None]
        else:
            weights = self.weights(scores, q_block)  # fires hook_sink on the block's rows
        pattern = self.hook_pattern(weights)
        _serve_key_readers(self, pattern)
        z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)  # (B, rows, nh, hs)
        if self.variant == "gated":
            gate = torch.sigmoid(torch.einsum("btd,hdg->bthg", x[:, block.rows], self.W_G) + self.b_G)
            z = z * self.hook_gate(gate)
        z = self.hook_z(z)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)

    size = state.rows(batch, self.cfg.n_heads, n_queries, n_queries)
    return _run_blocks(state, n_queries, size, one_block)
