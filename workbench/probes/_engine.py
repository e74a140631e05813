"""One mechanism for every probe: hook only what is read, reduce on the fly, never cache a whole pass.

    >>> def on_pattern(layer, pattern, batch): sums[layer] += pattern[..., 0].sum()
    >>> probe_pass(model, data, [("attn.hook_pattern", on_pattern)], layers=range(30))

Hook functions receive (layer, tensor, batch) and return nothing: probes are read-only. `batch`
carries the tokens, the sink key mask, the query mask and a scratch dict that hooks of one forward
pass share (hook_v fires before hook_pattern, which fires before hook_z, inside each block).
The model is called on `data.model_inputs(index, tokens)`: the tokens for text, the pixels for an image
set (whose tokens are the kinds of its positions, workbench.core.positions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from workbench.core import sites
from workbench.core.data import Dataset
from workbench.core.errors import InputError, check_range
from workbench.core.modelinfo import info
from workbench.core.progress import progress_bar
from workbench.core.sites import SinkSpec

Reader = Callable[[int, torch.Tensor, "Batch"], None]


@dataclasses.dataclass
class Batch:
    index: list[int]  # which sequences of the Dataset
    tokens: torch.Tensor  # [batch, T]
    sink: torch.Tensor  # [batch, T] bool: sink keys
    queries: torch.Tensor  # [batch, T] bool: queries averaged over
    scratch: dict[str, Any]
    inputs: Any = None  # what the model is called on: the tokens, or pixels [batch, C, H, W] for images


def device_of(model: Any) -> torch.device:
    return next(model.parameters()).device


def probe_pass(model: Any, data: Dataset, readers: Sequence[tuple[str, Reader]], layers: Iterable[int],
               sink: SinkSpec | None = None, batch_size: int = 8, progress: bool = True, desc: str = "probe",
               after_batch: Callable[[Batch], None] | None = None, auto_positions: Sequence[int] | None = None,
               skip_missing: bool = False) -> None:
    """Run `data` through `model` with read-only hooks on `blocks.{l}.{suffix}` for the given layers.

    `skip_missing`: sequences in which a token sink does not occur (or no query sees it) are kept with an
    empty query mask (they count zero queries) instead of being an error."""
    model_info = info(model)
    sites.require_pattern_hooks(model)
    check_range("batch size", batch_size, 1, 1 << 20)
    layers = list(layers)
    names = [f"blocks.{layer}.{suffix}" for suffix, _ in readers for layer in layers]
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise InputError(f"{model_info.name} has no hook {missing[0]}; this probe needs it")
    sink = sink or SinkSpec()
    device = device_of(model)
    fired: set[str] = set()
    stop = _stop_layer(model, layers)
    # Resolve every batch's sink keys first, so bad input fails before any forward pass.
    prepared = []
    for index, tokens in data.batches(batch_size):
        tokens = tokens.to(device)
        key_mask = sink.key_mask(tokens, model, auto_positions, require=not skip_missing)
        queries = sites.query_mask(key_mask, model_info.causal) & key_mask.any(dim=1, keepdim=True)
        if not skip_missing and not queries.any(dim=1).all():
            raise InputError(f"sink {sink.label}: some sequences have no query that can see the sink "
                             "(it sits at their last position); choose an earlier sink or longer windows")
        prepared.append(Batch(index, tokens, key_mask, queries, {}, data.model_inputs(index, tokens).to(device)))
    for batch in progress_bar(prepared, desc=desc, enabled=progress):
        hooks = [(name, _reader(fn, layer, batch, fired, name))
                 for suffix, fn in readers for layer in layers for name in [f"blocks.{layer}.{suffix}"]]
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            if stop is not None:
                model.run_with_hooks(batch.inputs, fwd_hooks=[], stop_at_layer=stop)
            else:
                model(batch.inputs)
        if after_batch is not None:
            after_batch(batch)
    silent = sorted(set(names) - fired)
    if silent:
        raise InputError(f"hook {silent[0]} never fired on {model_info.name}: its attention kernel does not expose "
                         "this activation (load the model with eager attention)")


def _reader(fn: Reader, layer: int, batch: Batch, fired: set[str], name: str):
    def hook_fn(tensor: torch.Tensor, hook: Any) -> None:
        fired.add(name)  # the name asked for: hook.name may be the canonical one behind an alias
        fn(layer, tensor.detach(), batch)
    return hook_fn


def _stop_layer(model: Any, layers: list[int]) -> int | None:
    """Bridges can stop after the last hooked block (skipping the unembedding); other models run whole."""
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(model, TransformerBridge):
        return max(layers) + 1
    return None


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


def gather(suffixes: Sequence[str], compute: Callable[[int, dict[str, torch.Tensor], Batch], None]) -> list:
    """Readers that collect several activations of one layer and call `compute(layer, tensors, batch)`
    once all have fired, whatever order the adapter fires them in (BERT fires hook_z before its
    post-hoc hook_pattern), then drop them so memory holds one layer at a time."""
    def make(suffix: str) -> Reader:
        def read(layer: int, tensor: torch.Tensor, batch: Batch) -> None:
            slot = batch.scratch.setdefault(("gather", layer), {})
            slot[suffix] = tensor
            if len(slot) == len(suffixes):
                del batch.scratch[("gather", layer)]
                compute(layer, slot, batch)
        return read
    return [(suffix, make(suffix)) for suffix in suffixes]
