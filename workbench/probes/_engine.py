"""Helpers the probes share (the hooked loop itself is workbench.passes).

    >>> per_head_rows(values, "first_token_attention", layers=range(30))     # [layer, head] -> tidy rows
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def expand_kv(tensor: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[batch, pos, kv_head, d] -> [batch, pos, head, d]: query head h reads kv head h // group (GQA)."""
    group = n_heads // tensor.shape[2]
    return tensor.repeat_interleave(group, dim=2) if group > 1 else tensor


def w_o(model: Any, layer: int) -> torch.Tensor:
    """The output projection of one layer as [head, d_head, d_model]."""
    return model.blocks[layer].attn.W_O.detach()


def per_head_rows(values: torch.Tensor, metric: str, layers: Sequence[int], **extra: Any) -> list[dict]:
    """Rows {metric, layer, head, value} from a [layer, head] tensor (indexed by position in `layers`)."""
    return [{"metric": metric, "layer": layer, "head": head, "value": float(values[i, head]), **extra}
            for i, layer in enumerate(layers) for head in range(values.shape[1])]
