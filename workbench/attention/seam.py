"""The seam: `blockwise` installs the block forwards on a model's attention modules (which module gets which
forward, or one error naming why none fits) and hands transformers a zero-byte mask; `policy`, `path` and
`runs_blockwise` decide per pass between it and the full path."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import torch

from workbench.attention.families import _bert_forward, _rotary_forward, _toy_forward, _vit_forward
from workbench.attention.plan import (
    BLOCK_OPTION,
    Blockwise,
    _model_name,
    budget_bytes,
    check_block,
    check_length,
    parse_block,
    plan,
)
from workbench.core.errors import InputError

_DEFAULT_POLICY: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "sinkbench_attention_policy", default=None)


def _chosen_policy(model: Any) -> tuple[Any, Any]:
    """(block, budget) for a pass of `model`: its own policy, else the process-wide one, else (None, None)."""
    own = getattr(model, "_sinkbench_attention_policy", None)
    return own or _DEFAULT_POLICY.get() or (None, None)


def require_full(model: Any, batch: int, n_tokens: int, what: str) -> None:
    """For a computation that needs every layer's whole pattern at once (attribution patching's gradients):
    refuse a blockwise path (open, or asked for by the model's or the process's policy) and a full pattern
    over the budget, with one InputError naming `what`, the block and the estimate."""
    open_block = active(model)
    block = _chosen_policy(model)[0] if open_block is None else (open_block.block or "auto-sized")
    if open_block is not None or block not in (None, "auto", "full"):
        raise InputError(f"{what} needs the whole attention pattern of every layer in one pass (its gradients "
                         f"flow through them); blockwise attention (block {block}) cannot carry it: run it on the "
                         f"full path (leave {BLOCK_OPTION.split(' (')[0]} unset or set it to full)")
    plan(model, batch, n_tokens, "full")


def _chosen_block(model: Any, inputs: torch.Tensor, block: Any, budget: Any) -> tuple[int | None, Any]:
    """(B or None for the full path, budget) of one pass over `inputs`, unset arguments from `policy`."""
    chosen_block, chosen_budget = _chosen_policy(model)
    block = chosen_block if block is None else parse_block(block)
    budget = chosen_budget if budget is None else budget
    if inputs.ndim == 2:  # tokens
        return plan(model, inputs.shape[0], inputs.shape[1], block, budget), budget
    # pixels: T is fixed by the image, only an explicit block applies
    return (check_block(model, block) if block not in (None, "full") else None), budget


def runs_blockwise(model: Any, inputs: torch.Tensor, block: Any = None, budget: Any = None) -> bool:
    """Whether a pass over `inputs` under `path` runs blockwise (an open `blockwise`, or the plan's choice)."""
    return active(model) is not None or _chosen_block(model, inputs, block, budget)[0] is not None


def path(model: Any, inputs: torch.Tensor, block: Any = None, budget: Any = None):
    """The attention path `plan` picks for one pass over `inputs` ([batch, T] tokens; images: full or B), or
    nothing when the caller already opened `blockwise` on the model; unset arguments come from `policy`:

        >>> with attention.path(model, tokens):
        ...     model(tokens)
    """
    if active(model) is not None:
        return contextlib.nullcontext(active(model))
    chosen, budget = _chosen_block(model, inputs, block, budget)
    return blockwise(model, chosen, budget) if chosen is not None else contextlib.nullcontext()


@contextlib.contextmanager
def policy(model: Any, block: Any = None, budget: Any = None) -> Iterator[None]:
    """What `--attention-block` / `attention_block=` mean, for every pass run inside the context:

        >>> with attention.policy(model, block=args.attention_block):    # None / "auto", "full" or B
        ...     probes.sinks(model, data)
        >>> with attention.policy(None, block=64):                        # every model of this context
        ...     gallery.build(...)                                        # (what the CLI sets)

    None or "auto": per pass, full while the pattern fits the budget, else blockwise; "full": always the full
    path, refused before a pass whose pattern would not fit; B: blockwise with B query rows per block.
    `model=None` sets the policy of every model without one of its own (a context variable: this thread and
    the tasks it starts; Ray workers are other processes and take `attention_block=` with their job).
    """
    block = parse_block(block)
    budget_bytes(budget)  # a bad budget fails here, before any pass
    if model is None:
        token = _DEFAULT_POLICY.set((block, budget) if (block, budget) != (None, None) else None)
        try:
            yield
        finally:
            _DEFAULT_POLICY.reset(token)
        return
    if block is not None and block != "full":
        with blockwise(model, block, budget):
            yield
        return
    before = getattr(model, "_sinkbench_attention_policy", None)
    object.__setattr__(model, "_sinkbench_attention_policy", (block, budget) if (block, budget) != (None, None)
                       else ("auto", budget))  # an explicit auto on the model wins over a process-wide policy
    try:
        yield
    finally:
        object.__setattr__(model, "_sinkbench_attention_policy", before)


# --------------------------------------------------------------------------------------------------
# The seam
# --------------------------------------------------------------------------------------------------


def active(model: Any) -> Blockwise | None:
    """The blockwise installation on `model`, or None when its attention runs the full path."""
    return getattr(model, "_sinkbench_blockwise", None)


@contextlib.contextmanager
def blockwise(model: Any, block: int | None = None, budget: Any = None, fuse: bool = True) -> Iterator[Blockwise]:
    """Run `model`'s attention in query blocks while the context is open (see the module docstring).

        >>> with attention.blockwise(model, block=64) as run:
        ...     model(tokens, fwd_hooks=...)    # a hook on hook_pattern: the explicit blocks
        >>> run.n_blocks                        # 2 layers x ceil(T / 64)

    `block`: query rows per block (an integer >= 1) or None to size blocks from `budget`. `fuse=False` runs
    the explicit blocks even where no hook reads the pattern (the fused path: "No pattern where none is read").
    """
    if block is not None:
        block = check_block(model, block)
    state = Blockwise(model, block, budget_bytes(budget), fuse=bool(fuse))
    components = attention_components(model)
    previous_state = active(model)
    installed: list[tuple[torch.nn.Module, Any]] = []
    handles = []
    try:
        for module, forward in components:
            installed.append((module, module.__dict__.get("forward")))
            # object.__setattr__: a bridge component's own __setattr__ would forward the name to the HF module
            object.__setattr__(module, "forward", _bind(forward, module, state))
        hf_model = getattr(model, "original_model", None)
        if hf_model is not None:
            handles.append(hf_model.base_model.register_forward_pre_hook(_mask_hook(model, state), with_kwargs=True))
        object.__setattr__(model, "_sinkbench_blockwise", state)
        yield state
    finally:
        for handle in handles:
            handle.remove()
        for module, before in reversed(installed):
            if before is None:
                module.__dict__.pop("forward", None)
            else:
                object.__setattr__(module, "forward", before)
        object.__setattr__(model, "_sinkbench_blockwise", previous_state)


def _bind(forward: Callable, module: torch.nn.Module, state: Blockwise) -> Callable:
    def bound(*args: Any, **kwargs: Any) -> Any:
        return forward(module, state, *args, **kwargs)
    bound.__wrapped__ = forward  # type: ignore[attr-defined]
    return bound


def _mask_hook(model: Any, state: Blockwise) -> Callable:
    """Before the HF model runs: check T against the context, keep a 2D padding mask, and hand transformers a
    zero-byte 4D mask so that it builds none (the block forwards rebuild masks from positions)."""
    def pre_hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        embeds = kwargs.get("inputs_embeds")
        reference = ids if ids is not None else embeds
        state.padding, state.sentinel = None, None
        if reference is None or reference.ndim < 2 or not (ids is None or ids.dtype in (torch.long, torch.int)):
            return args, kwargs  # pixels (ViT): no mask to replace, T fixed by the image
        batch, length = reference.shape[:2]
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if cache is None:  # a pass without a cache keeps none: HF's default one holds K and V of every layer
            kwargs["use_cache"] = False
        check_length(model, past + length)
        mask = kwargs.get("attention_mask")
        if getattr(mask, "_sinkbench_sentinel", False):  # an enclosing blockwise's (nested): share its masks
            state.padding, state.sentinel = mask._sinkbench_padding, mask
            return args, kwargs
        if mask is not None and mask.ndim == 4:
            return args, kwargs  # a caller's own 4D mask: the block forwards slice it per block
        if mask is not None:
            state.padding = mask.to(dtype=torch.bool, device=reference.device)
        elif not getattr(getattr(model, "sinkbench", None), "causal", True):
            return args, kwargs  # an encoder without padding: transformers builds no mask anyway
        dtype = embeds.dtype if embeds is not None else next(module.parameters()).dtype
        state.sentinel = torch.zeros((), dtype=dtype, device=reference.device).expand(batch, 1, length, past + length)
        state.sentinel._sinkbench_sentinel = True  # a nested blockwise recognises it (and its padding)
        state.sentinel._sinkbench_padding = state.padding
        kwargs["attention_mask"] = state.sentinel
        return args, kwargs
    return pre_hook


# --------------------------------------------------------------------------------------------------
# Which modules, which forward
# --------------------------------------------------------------------------------------------------


def attention_components(model: Any) -> list[tuple[torch.nn.Module, Callable]]:
    """Every attention module of `model` with the block forward that replaces its own; an attention the
    workbench does not know is refused with an error naming it (before anything is installed)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise InputError(f"{_model_name(model)} has no `blocks`: blockwise attention needs a TransformerBridge "
                         "or a workbench toy model")
    out = []
    for layer, block in enumerate(blocks):
        module = getattr(block, "attn", None)
        forward, reason = _forward_for(module)
        if forward is None:
            raise InputError(f"blockwise attention cannot run layer {layer} of {_model_name(model)}: {reason}; "
                             "it supports Llama/SmolLM2, Qwen2, Gemma 3, BERT, ViT/DeiT and the toy models "
                             "(run the full path: leave the attention block unset)")
        out.append((module, forward))
    return out


def _forward_for(module: Any) -> tuple[Callable | None, str]:
    if module is None:
        return None, "the block has no `attn` module"
    if _is_toy(module):
        return _toy_forward, ""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
    from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
        PositionEmbeddingsAttentionBridge,
    )

    if isinstance(module, PositionEmbeddingsAttentionBridge):
        reason = _rotary_unsupported(module, PositionEmbeddingsAttentionBridge)
        return (None, reason) if reason else (_rotary_forward, "")
    if isinstance(module, AttentionBridge) and type(module).forward is AttentionBridge.forward:
        hf = module.original_component
        if getattr(module.config, "use_attn_result", False):
            return None, "use_attn_result (hook_result) is on"
        name = type(hf).__name__
        if name == "BertAttention" and not getattr(hf, "is_cross_attention", False) \
                and not getattr(hf.self.config, "is_decoder", False):
            return _bert_forward, ""
        if name in ("ViTAttention", "DeiTAttention"):
            return _vit_forward, ""
        return None, f"its attention module is {name}"
    return None, f"its attention module is {type(module).__name__}"


def _is_toy(module: Any) -> bool:
    """The toy's Attention (workbench.toy.model), recognised by its fields: this floor imports nothing above it."""
    cfg = getattr(module, "cfg", None)
    return all(hasattr(module, name) for name in ("W_Q", "W_K", "W_V", "W_O", "weights", "hook_pattern")) \
        and hasattr(cfg, "variant") and hasattr(cfg, "positional")


def _rotary_unsupported(module: Any, base: type) -> str:
    """Why the block forward cannot reproduce this PositionEmbeddingsAttentionBridge ('' when it can)."""
    hf, cfg = module.original_component, module.config
    rope = getattr(getattr(hf, "config", None), "rope_parameters", None)
    checks = [
        (type(module).forward is not base.forward, f"{type(module).__name__} has its own forward"),
        (bool(getattr(cfg, "use_split_qkv_input", False) or getattr(cfg, "use_attn_in", False)),
         "use_split_qkv_input / use_attn_in is on"),
        (bool(getattr(cfg, "use_attn_result", False)), "use_attn_result (hook_result) is on"),
        (bool(getattr(cfg, "gated_q_proj", False)) or "gate" in module.submodules, "gated attention"),
        (getattr(hf, "key_multiplier", None) is not None, "a key multiplier"),
        (getattr(hf, "sinks", None) is not None, "learned attention sinks (gpt-oss)"),
        (getattr(getattr(hf, "config", None), "clip_qkv", None) is not None, "clip_qkv"),
        (module._qk_norm_phase not in (None, "post_reshape") or module._qk_norm_per_head
         or bool(getattr(cfg, "qk_norm_after_rope", False)), "a q/k norm other than Gemma's"),
        (bool(getattr(cfg, "rotary_interleaved_cos_sin", False) or getattr(cfg, "rotary_adjacent_pairs", False)),
         "adjacent-pair rotary embeddings"),
        (isinstance(rope, dict) and rope.get("llama_4_scaling_beta") is not None, "llama-4 query scaling"),
    ]
    return next((why for failed, why in checks if failed), "")
