"""Quantising around sinks: how much of the damage of KV-cache, activation and weight quantisation comes
from the sink tokens?

    >>> get("quantize-kv", bits=4, keep="bos")                  # IntactKV: BOS's K/V stay full precision
    >>> parse("quantize-kv:bits=2,granularity=per-channel,group=32,values=false")   # KIVI-style keys
    >>> parse("quantize-activations:bits=8,granularity=per-tensor,keep=bos")         # PrefixQuant's question
    >>> parse("quantize-weights:bits=4,group=32") + parse("quantize-kv:bits=4")      # W4 + KV4

Every entry is *fake* quantisation: a tensor is quantised and dequantised in place, so the forward pass
computes with exactly the values a quantised model would hold. One quantiser serves all three:
asymmetric min-max round-to-nearest over a group of entries,

    scale = (max - min) / (2^B - 1),   x' = round((x - min) / scale) * scale + min,

(the usual asymmetric uniform quantiser, as in KIVI, Liu et al. 2024; min is the zero point).

`keep=` names the tokens that stay in full precision and are left out of every statistic (a per-channel
or per-tensor min/max is taken over the other tokens only): `none`, `bos` (position 0; IntactKV, Liu et
al. 2024), `first:N` (KVQuant keeps the first tokens in fp16), `sinks` / `auto:EPS` (positions whose mean
received attention exceeds EPS, detected by a first pass over the evaluated data; default EPS 0.3), a
token sink `tok:X` (every occurrence of X), or explicit positions `0,5`.

`quantize-kv` quantises what a KV cache holds. Measured on the TransformerLens 4.3 bridge (Llama and
Gemma 3 adapters, `PositionEmbeddingsAttentionBridge`): `hook_k` (an alias of `k.hook_out`) is the key
projection *before* RoPE (and before Gemma 3's k_norm); `hook_rot_k` fires after k_norm and RoPE, in the
layout [batch, pos, kv_head, d_head], and equals bit for bit the keys that transformers' DynamicCache
holds (Gemma 3's sliding layers: the last W - 1 of them); `hook_v` equals the cached values. Edits of
both flow into the output. So keys are quantised at `hook_rot_k` on rotary models (`hook_k` where there
is no rotary), values at `hook_v`; tests/unit/test_quant.py checks all of it against plain transformers.
Encoders (BERT, ViT) have no KV cache: `quantize-kv` refuses them.

Granularity of `quantize-kv`: `per-token` (each position's d_head channels of each KV head, in groups of
`group` channels; default the whole head), `per-channel` (each channel of each KV head over the tokens, in
groups of `group` consecutive tokens; default the whole sequence) or `kivi` (keys per channel, values per
token, as KIVI does). A one-pass per-channel statistic sees every token of its group, later ones included:
a cache that quantises a group once it is full (KIVI) shows queries inside the group full-precision keys
instead; the streaming path quantises what the cache holds at each step.

`quantize-activations` quantises the inputs of every linear layer of the blocks in scope (q/k/v/o and the
MLP's projections; the unembedding is left in full precision, as W8A8 / W4A4 schemes do) or the residual
stream entering each block (`site=residual`), `per-tensor` (one scale per sequence: where the massive
activations at the sinks stretch the range, PrefixQuant; Bondarenko et al. 2023) or `per-token`.

`quantize-weights` rounds the weights of those linear layers per output channel (groups of `group` input
channels), applied as out += x (W' - W)^T at the layer's output so that interventions stacked in one
batch keep their own rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from interventions.protocol import Intervention, register
from workbench.core import sites
from workbench.core.errors import InputError, is_integer
from workbench.core.modelinfo import info
from workbench.core.sites import SinkSpec
from workbench.passes import Hook, PassContext

BITS_RANGE = (1, 16)
KV_GRANULARITIES = ("per-token", "per-channel", "kivi")
ACTIVATION_GRANULARITIES = ("per-tensor", "per-token")
ACTIVATION_SITES = ("linear", "residual")
DEFAULT_SINK_EPS = 0.3


# --------------------------------------------------------------------------------------------------
# The quantiser
# --------------------------------------------------------------------------------------------------


def check_bits(bits: Any, who: str) -> int:
    """bits must be an integer in 1..16 (a string of digits, from a CLI spec, is read as one)."""
    if isinstance(bits, str) and bits.strip().isdigit():
        bits = int(bits.strip())
    if not is_integer(bits):
        raise InputError(f"{who}: bits must be an integer in {BITS_RANGE[0]}..{BITS_RANGE[1]}, got {bits!r}")
    if not BITS_RANGE[0] <= bits <= BITS_RANGE[1]:
        raise InputError(f"{who}: bits = {bits} is out of range: allowed {BITS_RANGE[0]}..{BITS_RANGE[1]}")
    return int(bits)


def fake_quantize(x: torch.Tensor, bits: int, dims: int | tuple[int, ...],
                  exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Asymmetric min-max round-to-nearest over `dims`, dequantised; same shape and dtype as `x`.

        >>> fake_quantize(torch.tensor([[0.0, 1.0, 2.0, 3.1]]), bits=2, dims=-1)
        tensor([[0.0000, 1.0333, 2.0667, 3.1000]])

    `exclude` (bool, broadcastable to x) marks entries that are left out of the min/max and returned
    unchanged (the kept tokens). Computed in float32; a group whose entries are all equal is returned as is.
    """
    values = x.float()
    if exclude is None:
        low, high = values.amin(dims, keepdim=True), values.amax(dims, keepdim=True)
    else:
        exclude = exclude.expand_as(values)
        low = values.masked_fill(exclude, float("inf")).amin(dims, keepdim=True)
        high = values.masked_fill(exclude, float("-inf")).amax(dims, keepdim=True)
        empty = ~torch.isfinite(low)  # every entry of the group kept: nothing to quantise
        low, high = low.masked_fill(empty, 0.0), high.masked_fill(empty, 0.0)
    levels = 2 ** bits - 1
    scale = (high - low) / levels
    codes = torch.round((values - low) / scale.clamp_min(torch.finfo(torch.float32).tiny)).clamp_(0, levels)
    out = codes * scale + low
    if exclude is not None:
        out = torch.where(exclude, values, out)
    return out.to(x.dtype)


def quantize_kv_tensor(x: torch.Tensor, bits: int, granularity: str = "per-token", group: int | None = None,
                       keep: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantise keys or values [batch, pos, kv_head, d_head] as a KV cache would hold them.

        >>> quantize_kv_tensor(k, bits=4)                                        # per token, over d_head
        >>> quantize_kv_tensor(k, bits=2, granularity="per-channel", group=32, keep=first_token)

    `granularity` per-token: each (position, KV head) over its d_head channels, in groups of `group`
    channels (None: the whole head); per-channel: each (channel, KV head) over the positions, in groups of
    `group` consecutive positions (None: all of them; a shorter last group has its own statistics).
    `keep` [batch, pos] bool: positions left in full precision and out of the statistics.
    """
    batch, length, heads, d_head = x.shape
    exclude = None if keep is None or not keep.any() else keep.to(x.device, torch.bool)
    if granularity == "per-token":
        size = group or d_head
        grouped = x.reshape(batch, length, heads, d_head // size, size)
        mask = None if exclude is None else exclude[:, :, None, None, None]
        return fake_quantize(grouped, bits, -1, mask).reshape(x.shape)
    if granularity != "per-channel":
        raise InputError(f"granularity {granularity!r}: use per-token or per-channel")
    size = min(group or length, length)
    blocks = -(-length // size)
    pad = blocks * size - length
    padded = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) if pad else x
    mask = torch.zeros(batch, length, dtype=torch.bool, device=x.device) if exclude is None else exclude
    mask = torch.nn.functional.pad(mask, (0, pad), value=True) if pad else mask
    out = fake_quantize(padded.reshape(batch, blocks, size, heads, d_head), bits, 2,
                        mask.reshape(batch, blocks, size)[..., None, None] if (pad or exclude is not None) else None)
    return out.reshape(batch, blocks * size, heads, d_head)[:, :length]


def quantize_activation_tensor(x: torch.Tensor, bits: int, granularity: str = "per-token",
                               keep: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantise activations [batch, pos, ...]: per-token (each position over its features) or
    per-tensor (one range per sequence, over every position and feature not kept).

        >>> quantize_activation_tensor(resid, bits=8, granularity="per-tensor", keep=bos)
    """
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    exclude = None if keep is None or not keep.any() else keep.to(x.device, torch.bool)[:, :, None]
    dims = -1 if granularity == "per-token" else (1, 2)
    return fake_quantize(flat, bits, dims, exclude).reshape(x.shape)


# --------------------------------------------------------------------------------------------------
# Keep policies
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeepPolicy:
    """Which tokens stay in full precision: `none`, `bos`, `first:N`, `sinks` / `auto:EPS`, `tok:X`, positions.

        >>> KeepPolicy.parse("first:4").mask(tokens, model)        # [batch, T] bool
    """

    text: str
    spec: SinkSpec | None  # None: nothing kept

    @classmethod
    def parse(cls, keep: Any, who: str = "keep") -> KeepPolicy:
        text = "none" if keep is None else str(keep).strip()
        lowered = text.lower()
        if lowered in ("none", "", "nothing"):
            return cls("none", None)
        if lowered.startswith("first:"):
            count = lowered.split(":", 1)[1].strip()
            if not count.isdigit() or int(count) < 1:
                raise InputError(f"{who}: keep={text!r}: first:N needs a whole number of tokens N >= 1 (e.g. first:4)")
            return cls(f"first:{int(count)}", SinkSpec("positions", tuple(range(int(count)))))
        if lowered == "sinks":
            return cls("sinks", SinkSpec("auto", positions=(), eps=DEFAULT_SINK_EPS))
        try:
            spec = SinkSpec.parse(text)
        except (InputError, ValueError) as exc:
            raise InputError(f"{who}: cannot read keep={text!r}: use none, bos, first:N, sinks, auto:EPS, tok:TOKEN "
                             f"or positions (0 or 0,5) ({exc})") from exc
        return cls(text, spec)

    @property
    def auto(self) -> bool:
        return self.spec is not None and self.spec.kind == "auto"

    def check(self, model: Any, who: str) -> None:
        """What can be checked without data: the tokens exist in the vocabulary as single tokens."""
        if self.spec is not None and self.spec.kind in ("tokens", "patches"):
            try:
                self.spec.token_ids(model) if self.spec.kind == "tokens" else self.spec.fixed_positions(model)
            except InputError as exc:
                raise InputError(f"{who}: keep={self.text!r}: {exc}") from exc

    def runner_spec(self) -> SinkSpec:
        """The spec the runner checks against every batch before any forward pass (a token that does not
        occur, a position beyond the sequence); auto sinks are resolved by `prepare`, so they check nothing."""
        return SinkSpec() if self.spec is None or self.auto else self.spec

    def mask(self, tokens: torch.Tensor, model: Any, state: Any = None) -> torch.Tensor | None:
        """[batch, T] bool of the kept tokens, or None when nothing is kept."""
        if self.spec is None:
            return None
        positions = None
        if self.auto:
            if not state or "keep_positions" not in state:
                raise InputError(f"keep={self.text!r} needs the sink positions found by prepare(model, data)")
            positions = state["keep_positions"]
        return self.spec.key_mask(tokens, model, positions)


def detect_keep_positions(model: Any, data: Any, eps: float, batch_size: int, progress: bool) -> list[int]:
    from workbench.probes.sinks import detect_sinks

    return detect_sinks(model, data, eps, batch_size, progress)


# --------------------------------------------------------------------------------------------------
# Where the tensors are
# --------------------------------------------------------------------------------------------------


def _flow_check(model: Any, names: list[str], attribute: str) -> bool:
    """Whether replacing these hooks' tensors (by zeros) changes the output; remembered on the model."""
    cached = getattr(model, attribute, None)
    if cached is not None:
        return cached
    fired: list[str] = []

    def zero(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
        fired.append(hook.name)
        return torch.zeros_like(tensor)

    inputs = sites.sample_input(model)
    with torch.no_grad():
        before = model(inputs)
        flows = True
        for name in names:
            with model.hooks(fwd_hooks=[(name, zero)]):
                after = model(inputs)
            flows = flows and bool(fired) and not torch.equal(before, after)
            fired.clear()
    object.__setattr__(model, attribute, flows)
    return flows


def kv_hooks(model: Any, layer: int) -> tuple[str, str]:
    """(key hook, value hook) of a layer: the keys and values as a KV cache holds them (post-RoPE keys).

        >>> kv_hooks(zoo.load("smollm2-135m"), 3)   # ('blocks.3.attn.hook_rot_k', 'blocks.3.attn.hook_v')
    """
    model_info = info(model)
    if not model_info.causal:
        kind = "image model" if model_info.is_image else "encoder"
        raise InputError(f"quantize-kv quantises what a KV cache holds; {model_info.name} is a bidirectional {kind} "
                         "with no KV cache path. Quantise its activations instead (quantize-activations)")
    rotated = sites.hook(layer, "attn.hook_rot_k")
    key = rotated if rotated in model.hook_dict else sites.k(layer)
    if model_info.positional == "rotary" and key != rotated:
        raise InputError(f"{model_info.name} exposes no post-RoPE key hook ({rotated}); its keys as a KV cache "
                         "holds them cannot be reached, so quantize-kv cannot run on it")
    value = sites.v(layer)
    missing = [name for name in (key, value) if name not in model.hook_dict]
    if missing:
        raise InputError(f"{model_info.name} has no KV cache path: no hook {missing[0]}")
    return key, value


def linear_input_hooks(model: Any, layer: int) -> list[str]:
    """The `hook_in` of every linear layer of a block, in forward order (bridges only; the toy has none)."""
    from transformer_lens.model_bridge.generalized_components.linear import LinearBridge

    prefix = f"blocks.{layer}."
    out = []
    for name in model.hook_dict:
        if name.startswith(prefix) and name.endswith(".hook_in"):
            try:
                module = model.get_submodule(name[: -len(".hook_in")])
            except AttributeError:
                continue
            if isinstance(module, LinearBridge):
                out.append(name)
    return out


def _linear_weight(model: Any, hook_in: str) -> torch.Tensor:
    return model.get_submodule(hook_in[: -len(".hook_in")]).original_component.weight


# --------------------------------------------------------------------------------------------------
# The interventions
# --------------------------------------------------------------------------------------------------


def _check_choice(who: str, what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{who}: {what}={value!r}: use one of {', '.join(allowed)}")


def _read_group(group: Any, who: str) -> int | None:
    """None / 'none' / 'all' / 'd_head' / 'seq': the whole dimension; otherwise a positive integer."""
    if group is None or (isinstance(group, str) and group.strip().lower() in ("", "none", "all", "d_head", "seq")):
        return None
    if isinstance(group, str) and group.strip().isdigit():
        group = int(group.strip())
    if not is_integer(group) or group < 1:
        raise InputError(f"{who}: group must be a positive integer (or d_head / all), got {group!r}")
    return group


def _replace_rows(tensor: torch.Tensor, rows: slice, new: torch.Tensor) -> torch.Tensor:
    if rows.start in (0, None) and rows.stop in (None, tensor.shape[0]):
        return new.to(tensor.dtype)
    out = tensor.clone()
    out[rows] = new.to(out.dtype)
    return out


@dataclasses.dataclass(frozen=True)
class Quantizer(Intervention):
    """Shared by the quantisation family: bits, keep, layers; the auto-sink first pass."""

    bits: Any = 4  # Any, not int: "bits=4.5" must reach validate() and get the range in its error
    keep: Any = "none"
    layers: Any = None
    sink_aware: ClassVar[bool] = True

    def keep_policy(self) -> KeepPolicy:
        return KeepPolicy.parse(self.keep, self.name)

    def sink_spec(self) -> SinkSpec:
        return self.keep_policy().runner_spec()

    def layer_ids(self, model: Any) -> tuple[int, ...]:
        return sites.parse_layers(self.layers, model)

    def validate(self, model: Any) -> None:
        super().validate(model)
        check_bits(self.bits, self.name)
        self.keep_policy().check(model, self.name)
        self.layer_ids(model)

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        policy = self.keep_policy()
        if not policy.auto:
            return None
        try:
            positions = detect_keep_positions(model, data, policy.spec.eps, batch_size, progress)
        except InputError as exc:
            raise InputError(f"{self.name}: keep={policy.text!r}: {exc} (keep=auto:EPS) or keep bos / first:N") from exc
        return {"keep_positions": positions}

    def prepare_key(self) -> str:  # every configuration with the same auto keep shares one detection pass
        policy = self.keep_policy()
        return f"quantization:detect-sinks:{policy.spec.eps}" if policy.auto else "quantization:nothing"

    def describe_state(self, state: Any) -> dict | None:
        return {"keep_positions": state["keep_positions"]} if state and "keep_positions" in state else None

    def _keep_mask(self, model: Any, ctx: PassContext) -> torch.Tensor | None:
        return self.keep_policy().mask(ctx.tokens, model, ctx.state)


@register("quantize-kv", "fake-quantise the KV cache (post-RoPE keys, values), keeping some tokens full precision")
@dataclasses.dataclass(frozen=True)
class QuantizeKV(Quantizer):
    """Keys (after RoPE) and values quantised as a KV cache would store them; see the module docstring.
    `keys=` / `values=` choose which; `group` counts channels (per-token) or positions (per-channel; kivi:
    the keys' groups of positions, values per token over the whole head)."""

    granularity: str = "per-token"
    group: Any = None
    keys: bool = True
    values: bool = True

    def validate(self, model: Any) -> None:
        super().validate(model)
        model_info = info(model)
        _check_choice(self.name, "granularity", self.granularity, KV_GRANULARITIES)
        if not (self.keys or self.values):
            raise InputError(f"{self.name}: keys=false and values=false quantise nothing; choose at least one")
        names = [name for layer in self.layer_ids(model) for name in kv_hooks(model, layer)]
        group = _read_group(self.group, self.name)
        if group is not None and self.granularity == "per-token" and model_info.d_head % group:
            raise InputError(f"{self.name}: group = {group} does not divide d_head = {model_info.d_head} of "
                             f"{model_info.name}: use a divisor of {model_info.d_head}")
        if not _flow_check(model, names[:2], "_sinkbench_kv_edits_flow"):
            raise InputError(f"{model_info.name}: edits of {names[0]} / {names[1]} do not reach the output on this "
                             "adapter, so it has no KV cache path quantize-kv can use")

    def _plans(self, group: int | None) -> tuple[tuple[str, int | None], tuple[str, int | None]]:
        """(granularity, group) for the keys and for the values."""
        if self.granularity == "kivi":  # KIVI (Liu et al. 2024): keys per channel (groups of tokens), values per token
            return ("per-channel", group), ("per-token", None)
        return (self.granularity, group), (self.granularity, group)

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        bits = check_bits(self.bits, self.name)
        keep = self._keep_mask(model, ctx)
        key_plan, value_plan = self._plans(_read_group(self.group, self.name))
        rows = ctx.rows

        def quantizer(granularity: str, group: int | None):
            def on_kv(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
                return _replace_rows(tensor, rows, quantize_kv_tensor(tensor[rows], bits, granularity, group, keep))
            return on_kv

        out: list[Hook] = []
        for layer in self.layer_ids(model):
            key, value = kv_hooks(model, layer)
            if self.keys:
                out.append((key, quantizer(*key_plan)))
            if self.values:
                out.append((value, quantizer(*value_plan)))
        return out


@register("quantize-activations", "fake-quantise linear-layer inputs or the residual stream, per tensor or per token")
@dataclasses.dataclass(frozen=True)
class QuantizeActivations(Quantizer):
    """Activations quantised per-tensor (one range per sequence) or per-token; see the module docstring."""

    bits: Any = 8
    granularity: str = "per-token"
    site: str = "linear"

    def validate(self, model: Any) -> None:
        super().validate(model)
        _check_choice(self.name, "granularity", self.granularity, ACTIVATION_GRANULARITIES)
        _check_choice(self.name, "site", self.site, ACTIVATION_SITES)
        if self.site == "linear" and not linear_input_hooks(model, self.layer_ids(model)[0]):
            raise InputError(f"{self.name}: {info(model).name} exposes no linear-layer input hooks (LinearBridge "
                             "hook_in); use site=residual")

    def sites_of(self, model: Any, layer: int) -> list[str]:
        if self.site == "residual":
            return [sites.resid(layer, sites.RESID_PRE)]
        return linear_input_hooks(model, layer)

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        bits = check_bits(self.bits, self.name)
        keep = self._keep_mask(model, ctx)
        rows = ctx.rows

        def quantizer(name: str):
            def on_activation(tensor: torch.Tensor, hook: Any) -> torch.Tensor:
                new = _replace_rows(tensor, rows, quantize_activation_tensor(tensor[rows], bits, self.granularity, keep))
                if _input_slot(name) in ctx.scratch:  # a quantize-weights hook read this input before us
                    ctx.scratch[_input_slot(name)] = new
                return new
            return on_activation

        return [(name, quantizer(name)) for layer in self.layer_ids(model) for name in self.sites_of(model, layer)]


@register("quantize-weights", "round the linear layers' weights per output channel (RTN, groups of input channels)")
@dataclasses.dataclass(frozen=True)
class QuantizeWeights(Quantizer):
    """Round-to-nearest weights, per output channel in groups of `group` input channels (None: the whole row),
    asymmetric min-max; the embedding and unembedding stay in full precision. `keep` does not apply."""

    group: Any = None
    sink_aware: ClassVar[bool] = False

    def validate(self, model: Any) -> None:
        super().validate(model)
        if self.keep_policy().spec is not None:
            raise InputError(f"{self.name}: keep={self.keep!r}: weights belong to no token; keep applies to "
                             "quantize-kv and quantize-activations")
        group = _read_group(self.group, self.name)
        names = [name for layer in self.layer_ids(model) for name in linear_input_hooks(model, layer)]
        if not names:
            raise InputError(f"{self.name}: {info(model).name} exposes no linear layers (LinearBridge) to quantise")
        if group is not None:
            for name in names:
                width = _linear_weight(model, name).shape[1]
                if width % group:
                    raise InputError(f"{self.name}: group = {group} does not divide the input width {width} of "
                                     f"{name[: -len('.hook_in')]}: use a divisor of {width}")

    def prepare(self, model: Any, data: Any, batch_size: int = 8, progress: bool = False) -> Any:
        """W' - W of every linear layer in scope (the correction the hooks add)."""
        bits = check_bits(self.bits, self.name)
        group = _read_group(self.group, self.name)
        deltas = {}
        with torch.no_grad():
            for layer in self.layer_ids(model):
                for name in linear_input_hooks(model, layer):
                    weight = _linear_weight(model, name)
                    out_features, in_features = weight.shape
                    size = group or in_features
                    grouped = weight.float().reshape(out_features, in_features // size, size)
                    deltas[name] = (fake_quantize(grouped, bits, -1).reshape(weight.shape) - weight.float()).to(weight.dtype)
        return {"delta": deltas}

    def prepare_key(self) -> str:
        return Intervention.prepare_key(self)

    def describe_state(self, state: Any) -> dict | None:
        return None

    def hooks(self, model: Any, ctx: PassContext) -> list[Hook]:
        rows = ctx.rows
        deltas = (ctx.state or {}).get("delta") or self.prepare(model, None)["delta"]  # hooked() without data
        out: list[Hook] = []
        for layer in self.layer_ids(model):
            names = linear_input_hooks(model, layer)
            for name in names:
                def on_in(tensor: torch.Tensor, hook: Any, name: str = name) -> None:
                    ctx.scratch[_input_slot(name)] = tensor

                def on_out(tensor: torch.Tensor, hook: Any, name: str = name) -> torch.Tensor:
                    x = ctx.scratch[_input_slot(name)][rows]
                    correction = x.reshape(*x.shape[:2], -1) @ deltas[name].to(x.dtype).T
                    return _replace_rows(tensor, rows, tensor[rows] + correction.reshape(tensor[rows].shape))

                out += [(name, on_in), (name[: -len(".hook_in")] + ".hook_out", on_out)]

            def release(tensor: torch.Tensor, hook: Any, names: list[str] = names) -> None:
                for name in names:
                    ctx.scratch.pop(_input_slot(name), None)

            out.append((sites.resid(layer), release))
        return out


def _input_slot(hook_in: str) -> tuple[str, str]:
    """Where the input a linear layer really receives is kept between its hook_in and hook_out: the last
    hook of this family at hook_in writes it (quantize-activations updates it when a weight hook ran first),
    so W + A composes in either order."""
    return ("linear-input", hook_in)
