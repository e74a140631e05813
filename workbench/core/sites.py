"""Where experiments touch a model: hook names, layer/head selectors, and sink positions.

    >>> sites.pattern(3)                                   # 'blocks.3.attn.hook_pattern'
    >>> sites.parse_layers("3-10", model)                  # (3, 4, ..., 10), range-checked
    >>> SinkSpec.parse("bos").key_mask(tokens, model)      # [batch, T] bool: where the sink keys are

Hook names are TransformerLens's (the contract every model in the zoo satisfies):
`blocks.{l}.attn.hook_pattern` [batch, head, q, k] post-softmax weights (a modified pattern flows
into the output), `hook_attn_scores` (pre-softmax on every adapter we checked, see
`scores_are_pre_softmax`), `hook_q` [batch, pos, head, d_head], `hook_k`/`hook_v` [batch, pos, kv_head,
d_head] (GQA: query head h reads value head h // group_size), `hook_z` [batch, pos, head, d_head],
`blocks.{l}.hook_resid_pre/mid/post` [batch, pos, d_model].

Sinks are explicit: `bos` (position 0; [CLS] on encoders), positions (`0`, `0,5`), tokens
(`tok:.`, `tok:\\n`, `sep`, `cls`; every occurrence), `first:tok:.` (the first occurrence in each
sequence), or `auto:EPS` (keys whose mean received attention exceeds EPS, found by a first pass). In
Python a sink can also be given per sequence: a [sequences, T] bool mask (tensor or array; a list of 1-D
masks when lengths differ) or a function `tokens [b, T] -> [b, T] bool`. A spec's `label` reads back as
the same spec (`SinkSpec.parse(spec.label) == spec`). On image models (workbench.vision) the tokens of a
batch are the kinds of its positions, and the sink can be `cls`, `dist` (DeiT), `reg` (every register), `reg:K`, `bg` / `obj`
(background / object patches, read from each image), `top-norm` (patches a high-norm rule flagged,
`workbench.probes.high_norm.mark_high_norm`) or `patch:R,C` (one patch of the grid).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from workbench.core.errors import InputError, check_number, is_integer
from workbench.core.modelinfo import info

RESID_PRE, RESID_MID, RESID_POST = "hook_resid_pre", "hook_resid_mid", "hook_resid_post"


def hook(layer: int, name: str) -> str:
    return f"blocks.{layer}.{name}"


def pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def scores(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_attn_scores"


def z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def q(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_q"


def k(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_k"


def v(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_v"


def mlp_post(layer: int) -> str:
    """The MLP's hidden activations (after the nonlinearity): where register neurons live (Jiang et al. 2025)."""
    return f"blocks.{layer}.mlp.hook_post"


EMBED = "hook_embed"


# Mixture-of-Experts feed-forward layers (issue 19): TransformerLens 4.3's MoEBridge / MoERouterBridge names
# (OLMoE, Mixtral, Qwen2-MoE adapters), which the MoE toy (workbench.toy.model.MoE) also fires. The router
# reshapes the batch to tokens: row b * T + t is position t of sequence b.
def moe_in(layer: int) -> str:
    """The MoE block's input [batch, pos, d_model] (after ln2): what the router and every expert read."""
    return f"blocks.{layer}.mlp.hook_in"


def moe_out(layer: int) -> str:
    """The MoE block's output [batch, pos, d_model] (routed experts + any shared expert)."""
    return f"blocks.{layer}.mlp.hook_out"


def router_logits(layer: int) -> str:
    """The router's logits [tokens, n_experts]; read-only on the bridge (it fires after the HF router has chosen)."""
    return f"blocks.{layer}.mlp.gate.hook_out"


def expert_weights(layer: int) -> str:
    """The gate weights [tokens, n_experts] (0 outside each token's top-k). An edit re-derives the top-k from the
    edited tensor and its values are used as they are (no renormalisation after the hook)."""
    return f"blocks.{layer}.mlp.hook_expert_weights"


def expert_indices(layer: int) -> str:
    """The experts each token is routed to [tokens, top_k] (long)."""
    return f"blocks.{layer}.mlp.hook_expert_indices"


def require_experts(model: Any, what: str) -> Any:
    """The ModelInfo of an MoE model whose routing hooks are there; one InputError on a dense model."""
    model_info = _info(model)
    if not model_info.is_moe:
        raise InputError(f"{what} needs an MoE model; {model_info.name} has no experts (its feed-forward layers are "
                         "dense): use tiny-olmoe, tiny-mixtral, tiny-qwen2-moe, moe-toy-bb (a toy: `sinkbench train --preset moe`), or a "
                         "local OLMoE / Mixtral / Qwen2-MoE directory")
    missing = next((name for name in (expert_weights(0), router_logits(0)) if name not in model.hook_dict), None)
    if missing is not None:
        raise InputError(f"{what}: {model_info.name} has {model_info.n_experts} experts but no hook {missing}; its "
                         "adapter exposes no router (supported: OLMoE, Mixtral, Qwen2-MoE and the MoE toys)")
    return model_info


def parse_experts(spec: Any, model: Any) -> tuple[int, ...]:
    """Expert indices ('all', 3, '0-2', '1,5'), range-checked against the model's experts per layer."""
    model_info = _info(model)
    return _parse_index_spec(spec, model_info.n_experts, "expert", model_info.name)


def resid(layer: int, where: str = RESID_POST) -> str:
    return f"blocks.{layer}.{where}"


def _info(model: Any):
    return info(model)


def sample_input(model: Any) -> torch.Tensor:
    """A short valid input for one-off checks of an adapter: 5 tokens, or one (seeded) image on image models."""
    model_info = _info(model)
    device = next(model.parameters()).device
    if model_info.is_image:
        generator = torch.Generator().manual_seed(0)
        return torch.rand(1, model_info.num_channels, *model_info.image_size, generator=generator).to(device)
    return torch.tensor([[model_info.bos_token_id or model_info.cls_token_id or 1, 7, 8, 9, 10]], device=device)


def require_pattern_hooks(model: Any) -> None:
    """Refuse a model whose attention kernel exposes no post-softmax pattern (fused SDPA / flash)."""
    if pattern(0) not in model.hook_dict:
        raise InputError(f"{_info(model).name} exposes no attention pattern (no {pattern(0)} hook): its attention "
                         "kernel is fused; load it with eager attention")


def _parse_index_spec(spec: Any, count: int, what: str, model_name: str) -> tuple[int, ...]:
    """None/'all' -> everything; int; 'a-b'; 'a,b,c'; or an iterable of ints. Negative ints count from the end."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all", "*")):
        return tuple(range(count))
    if isinstance(spec, str):
        out: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            if re.fullmatch(r"-?\d+", part):
                out.append(int(part))
            elif re.fullmatch(r"\d+\s*-\s*\d+", part):
                low, high = (int(x) for x in part.split("-"))
                if low > high:
                    raise InputError(f"{what} range {part!r} is empty (start > end) for {model_name}")
                out.extend(range(low, high + 1))
            else:
                raise InputError(f"cannot read {what}s {spec!r}: use 'all', 5, '3-10' or '1,4,7'")
        items: Iterable[Any] = out
    elif is_integer(spec):
        items = [spec]
    elif isinstance(spec, (list, tuple, set, range)) or (hasattr(spec, "__iter__") and not isinstance(spec, dict)):
        items = list(spec)
    else:
        raise InputError(f"cannot read {what}s {spec!r}: use 'all', an integer (5), '3-10', '1,4,7' or a list of "
                         "integers")
    result = []
    for item in items:
        if not is_integer(item):
            raise InputError(f"{what} must be integers, got {item!r}: use 'all', 5, '3-10', '1,4,7' or [1, 4, 7]")
        item = int(item)
        index = item + count if item < 0 else item
        if not 0 <= index < count:
            raise InputError(f"{what} {item} is out of range for {model_name}: allowed 0..{count - 1}")
        if index not in result:
            result.append(index)
    if not result:
        raise InputError(f"no {what}s selected")
    return tuple(sorted(result))


def parse_layers(spec: Any, model: Any) -> tuple[int, ...]:
    model_info = _info(model)
    return _parse_index_spec(spec, model_info.n_layers, "layer", model_info.name)


def parse_heads(spec: Any, model: Any) -> tuple[int, ...]:
    model_info = _info(model)
    return _parse_index_spec(spec, model_info.n_heads, "head", model_info.name)


# --------------------------------------------------------------------------------------------------
# Sinks
# --------------------------------------------------------------------------------------------------

_ENCODER_TOKENS = {"cls", "sep"}
# image sinks (workbench.core.positions) and their aliases
_IMAGE_TOKENS = {"reg": "reg", "registers": "reg", "register": "reg", "dist": "dist", "bg": "bg",
                 "background": "bg", "obj": "obj", "object": "obj", "top-norm": "top-norm", "high-norm": "top-norm"}
# sinks over the mixed image+text sequences of a multimodal LM (workbench.core.positions.MIXED_SINKS; bg / obj
# are its background / object visual tokens there)
_MIXED_NAMES = {"visual": "visual", "question": "question", "answer": "answer"}
_IMAGE_TOKENS.update(_MIXED_NAMES)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0", "'": "'", '"': '"'}
_HEX_WIDTH = {"x": 2, "u": 4, "U": 8}
_SINK_HELP = ("use bos, a position (0 or 0,5), tok:TOKEN (tok:. tok:\\n), first:tok:TOKEN (its first occurrence "
              "in each sequence), cls, sep or auto:EPS; on image models also reg, reg:K, bg, obj, top-norm or "
              "patch:R,C; on multimodal LMs also visual, bg, obj, question, answer; in Python also a [sequences, T] "
              "bool mask or a function tokens -> mask")


def unescape_token(text: str, spec: Any) -> str:
    """`\\n`, `\\t`, `\\r`, `\\\\`, `\\xHH`, `\\uHHHH`, `\\UHHHHHHHH` in a `tok:` sink; anything else is one InputError."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = text[i + 1] if i + 1 < len(text) else ""
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code and code in _HEX_WIDTH:
            digits = text[i + 2:i + 2 + _HEX_WIDTH[code]]
            if len(digits) != _HEX_WIDTH[code] or not re.fullmatch(r"[0-9a-fA-F]+", digits) or \
                    int(digits, 16) > 0x10FFFF:
                raise InputError(f"cannot read sink {spec!r}: \\{code} needs {_HEX_WIDTH[code]} hex digits "
                                 f"(a code point up to 10FFFF), got {digits!r}")
            out.append(chr(int(digits, 16)))
            i += 2 + _HEX_WIDTH[code]
        else:
            shown = f"\\{code}" if code else "a lone \\ at the end"
            raise InputError(f"cannot read sink {spec!r}: unknown escape {shown}; use \\n \\t \\r \\\\ \\xHH or "
                             "\\uHHHH (write \\\\ for a backslash)")
    return "".join(out)


def escape_token(token: str) -> str:
    """The inverse of `unescape_token`: what a label writes after `tok:`."""
    reverse = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "\0": "\\0"}
    out = []
    for char in token:
        if char in reverse:
            out.append(reverse[char])
        elif not char.isprintable():
            out.append(f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}" if ord(char) < 65536
                       else f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return "".join(out)


def _as_bool_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{what} must be a bool tensor or array, got {type(value).__name__}")
    if value.dtype != torch.bool:
        raise InputError(f"{what} must have dtype bool (True at the sink keys), got {value.dtype}")
    return value.detach().cpu()


def _mask_digest(masks: Sequence[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for mask in masks:
        digest.update(str(tuple(mask.shape)).encode())
        digest.update(mask.numpy().tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class SinkSpec:
    """Which key positions count as the sink.

    kind: "positions" (fixed indices; `bos` is position 0), "tokens" (every occurrence of these
    tokens, or with `first` only the first occurrence in each sequence: `first:tok:.`; on image models,
    position kinds), "patches" ((row, column) cells of an image model's patch grid), "auto" (positions
    whose mean received attention, over layers, heads and valid queries, exceeds `eps`; resolved by
    `workbench.probes.sinks.detect_sinks`), "mask" (given per sequence: a [sequences, T] bool tensor or
    array, or one 1-D bool mask per sequence when lengths differ; row i is sequence i of the data) or
    "callable" (`fn(tokens [b, T]) -> [b, T] bool`, called on every batch).

        >>> SinkSpec.parse("first:tok:.")                         # one sink per sequence: its first '.'
        >>> SinkSpec.parse(tokens == dot_id)                       # a [sequences, T] bool mask
        >>> SinkSpec.parse(lambda t: t == dot_id)                  # a function of each batch's tokens
    """

    kind: str = "positions"
    positions: tuple[int, ...] = (0,)
    tokens: tuple[str, ...] = ()
    eps: float = 0.3
    patches: tuple[tuple[int, int], ...] = ()
    first: bool = False
    masks: tuple = dataclasses.field(default=(), compare=False, repr=False)  # kind "mask": one [T] bool per sequence
    digest: str = ""  # kind "mask": SHA-256 of the masks (equality and labels use it)
    fn: Any = None  # kind "callable"

    @classmethod
    def parse(cls, spec: Any = "bos") -> SinkSpec:
        if isinstance(spec, SinkSpec):
            return spec
        if spec is None:
            return cls()
        if is_integer(spec):
            return cls("positions", (int(spec),))
        if isinstance(spec, (torch.Tensor, np.ndarray)):
            return cls._from_array(spec)
        if isinstance(spec, (list, tuple)):
            return cls._from_sequence(spec)
        if callable(spec) and not isinstance(spec, str):
            return cls("callable", positions=(), fn=spec)
        if not isinstance(spec, str):
            raise InputError(f"cannot read sink {spec!r} (a {type(spec).__name__}): {_SINK_HELP}")
        text = spec.strip()
        lowered = text.lower()
        if lowered.startswith("first:"):
            inner = cls.parse(text[len("first:"):])
            if inner.kind != "tokens":
                raise InputError(f"cannot read sink {spec!r}: first: takes a token sink (first:tok:. or first:sep), "
                                 f"not {inner.label}")
            return dataclasses.replace(inner, first=True)
        if lowered in ("bos", "first", "0"):
            return cls()
        if lowered in _ENCODER_TOKENS:
            return cls("tokens", tokens=(lowered,))
        if lowered in _IMAGE_TOKENS:
            return cls("tokens", tokens=(_IMAGE_TOKENS[lowered],))
        if re.fullmatch(r"reg(ister)?:\s*\d+", lowered):
            return cls("tokens", tokens=(f"reg:{int(lowered.split(':', 1)[1])}",))
        if lowered.startswith("patch:"):
            cells = re.fullmatch(r"\d+\s*,\s*\d+(\s*;\s*\d+\s*,\s*\d+)*", lowered[6:].strip())
            if not cells:
                raise InputError(f"cannot read sink {spec!r}: write patch:ROW,COL (several: patch:0,0;3,4)")
            pairs = tuple(tuple(int(x) for x in cell.split(",")) for cell in cells.group(0).split(";"))
            return cls("patches", positions=(), patches=pairs)
        if lowered.startswith(("tok:", "token:")):
            token = unescape_token(text.split(":", 1)[1], spec)
            if not token:
                raise InputError("sink token is empty: write e.g. tok:. or tok:\\n")
            return cls("tokens", tokens=(token,))
        if lowered.startswith("mask:"):
            raise InputError(f"sink {spec!r} is the label of a mask given in Python; a mask cannot be rebuilt from "
                             "its label: pass the [sequences, T] bool mask itself")
        if lowered.startswith("callable:"):
            raise InputError(f"sink {spec!r} is the label of a function given in Python; pass the function itself")
        if lowered == "auto" or lowered.startswith("auto:"):
            raw = text.split(":", 1)[1].strip() if ":" in text else "0.3"
            try:
                eps = float(raw)
            except ValueError:
                raise InputError(f"cannot read sink {spec!r}: write auto:EPS with EPS a number in [0, 1], "
                                 "e.g. auto:0.3") from None
            return cls("auto", positions=(), eps=check_eps(eps))
        if re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
            return cls("positions", tuple(int(p) for p in text.split(",")))
        raise InputError(f"cannot read sink {spec!r}: {_SINK_HELP}")

    @classmethod
    def _from_array(cls, array: Any) -> SinkSpec:
        if array.ndim == 1 and array.dtype not in (torch.bool, np.bool_):
            return cls._from_sequence([int(p) for p in array.tolist()])
        mask = _as_bool_tensor(array, "a sink mask")
        if mask.ndim != 2:
            raise InputError(f"a sink mask must be [sequences, T] (one row per sequence of the data), got shape "
                             f"{tuple(mask.shape)}")
        masks = tuple(mask)
        return cls("mask", positions=(), masks=masks, digest=_mask_digest(masks))

    @classmethod
    def _from_sequence(cls, items: Sequence[Any]) -> SinkSpec:
        items = list(items)
        if not items:
            raise InputError(f"an empty sink: {_SINK_HELP}")
        if all(is_integer(item) for item in items):
            return cls("positions", tuple(int(p) for p in items))
        if all(isinstance(item, (torch.Tensor, np.ndarray)) for item in items):
            masks = tuple(_as_bool_tensor(item, f"sink mask of sequence {i}") for i, item in enumerate(items))
            bad = next((i for i, m in enumerate(masks) if m.ndim != 1), None)
            if bad is not None:
                raise InputError(f"a list of sink masks holds one 1-D bool mask per sequence; mask {bad} has shape "
                                 f"{tuple(masks[bad].shape)}")
            return cls("mask", positions=(), masks=masks, digest=_mask_digest(masks))
        bad = next(item for item in items if not is_integer(item))
        raise InputError(f"a list sink holds positions (integers) or one bool mask per sequence; got {bad!r}")

    @property
    def label(self) -> str:
        """The sink as a spec string that `parse` reads back (masks and functions: a name for them)."""
        if self.kind == "positions":
            return "bos" if self.positions == (0,) else ",".join(map(str, self.positions))
        if self.kind == "tokens":
            names = [t if t in _ENCODER_TOKENS or t in _IMAGE_TOKENS.values() or t.startswith("reg:")
                     else "tok:" + escape_token(t) for t in self.tokens]
            return ("first:" if self.first else "") + ",".join(names)
        if self.kind == "patches":
            return "patch:" + ";".join(f"{r},{c}" for r, c in self.patches)
        if self.kind == "mask":
            return f"mask:{self.digest[:12]}"
        if self.kind == "callable":
            return "callable:" + getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"auto:{self.eps:g}"

    @property
    def per_sequence(self) -> bool:
        """Whether the sink keys depend on each sequence (tokens, masks, functions), not only on positions."""
        return self.kind in ("tokens", "mask", "callable")

    def fixed_positions(self, model: Any) -> tuple[int, ...] | None:
        """The sink's positions when they are the same in every input (positions; [CLS], registers and grid
        patches of an image model); None when they move between inputs (tokens, masks, background, top-norm)."""
        if self.kind == "positions":
            return self.positions
        model_info = _info(model)
        if self.kind == "patches" and model_info.is_image:
            from workbench.core.positions import patch_position

            return tuple(patch_position(model_info, row, col) for row, col in self.patches)
        if self.kind == "tokens" and model_info.is_image and all(t == "cls" or t.startswith("reg") for t in self.tokens):
            from workbench.core.positions import fixed_position_of

            found = tuple(sorted({p for t in self.tokens for p in fixed_position_of(model_info, t)}))
            return found[:1] if self.first else found
        return None

    def token_ids(self, model: Any) -> list[int]:
        """Vocabulary ids of the sink tokens; a token must be a single id of the model's tokenizer."""
        model_info = _info(model)
        if model_info.is_image:
            return self._image_kind_ids(model_info)
        if model_info.is_multimodal and _mixed_only(self.tokens):
            return []  # position kinds, not ids: key_mask reads them from the kind bits of the tokens
        tokenizer = model_info.tokenizer
        ids = []
        for token in self.tokens:
            if token in _IMAGE_TOKENS.values() or token.startswith("reg:"):
                raise InputError(f"sink {token!r} is an image sink; {model_info.name} is a text model: use bos, a "
                                 "position, tok:TOKEN, cls or sep")
            if token in _ENCODER_TOKENS:
                if model_info.causal:
                    raise InputError(f"sink {token!r} is an encoder token ([{token.upper()}]); {model_info.name} is a "
                                     "causal LM: use bos, a position or tok:TOKEN")
                found = model_info.cls_token_id if token == "cls" else model_info.sep_token_id
                ids.append(found)
                continue
            special = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
            encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
            if special is not None and special != tokenizer.unk_token_id:
                ids.append(special)
            elif len(encoded) == 1:
                ids.append(encoded[0])
            else:
                raise InputError(f"sink token {token!r} is not a single token for {model_info.name} "
                                 f"(it encodes to {len(encoded)} ids: {encoded[:6]})")
        return ids

    def _image_kind_ids(self, model_info: Any) -> list[int]:
        from workbench.core.positions import kind_ids

        ids = []
        for token in self.tokens:
            if token == "sep":
                raise InputError(f"sink 'sep': {model_info.name} is an image model, it has no [SEP]; use cls, reg, "
                                 "reg:K, bg, obj, top-norm or patch:R,C")
            if token not in _ENCODER_TOKENS and token not in _IMAGE_TOKENS.values() and not token.startswith("reg:"):
                raise InputError(f"sink token {token!r}: {model_info.name} is an image model, it has no text tokens; "
                                 "use cls, reg, reg:K, bg, obj, top-norm or patch:R,C")
            ids += kind_ids(model_info, token)
        return ids

    def key_mask(self, tokens: torch.Tensor, model: Any, positions: Sequence[int] | None = None,
                 require: bool = True, index: Sequence[int] | None = None) -> torch.Tensor:
        """[batch, T] bool: True at the sink keys of each sequence. `positions` resolves an `auto` spec;
        `index` says which sequences of the data the rows are (a mask sink takes those rows; default
        0..batch-1). With `require`, a sequence without any sink key is an error; without, its row stays
        all False."""
        batch, length = tokens.shape
        mask = torch.zeros(batch, length, dtype=torch.bool, device=tokens.device)
        chosen: tuple[int, ...] | None = None
        if self.kind == "positions":
            chosen = self.positions
        elif self.kind == "auto" and positions is not None:
            chosen = tuple(positions)
        elif self.kind == "patches":
            chosen = self.fixed_positions(model)  # checks the cells against the grid
            if chosen is None:
                raise InputError(f"sink {self.label}: grid patches exist on image models only; "
                                 f"{_info(model).name} is a text model")
        if chosen is not None:
            for position in chosen:
                if not 0 <= position < length:
                    raise InputError(f"sink position {position} is outside the sequence: allowed 0..{length - 1} "
                                     f"(T = {length})")
                mask[:, position] = True
            return mask
        if self.kind == "auto":
            raise InputError("an auto sink must be resolved first (workbench.probes.sinks.detect_sinks)")
        if self.kind == "mask":
            mask = self._given_rows(list(range(batch)) if index is None else list(index), length).to(tokens.device)
        elif self.kind == "callable":
            mask = self._called(tokens)
        elif _info(model).is_multimodal:  # mixed tokens: kind bits over the ids (workbench.core.positions)
            from workbench.core.positions import mixed_ids, mixed_kind_mask

            ids = mixed_ids(tokens)
            if _mixed_only(self.tokens):
                for token in self.tokens:
                    mask |= mixed_kind_mask(tokens, token)
            else:
                for token_id in self.token_ids(model):
                    mask |= ids == token_id
            if self.first:
                mask &= mask.cumsum(dim=1) == 1
        else:
            for token_id in self.token_ids(model):
                mask |= tokens == token_id
            if self.first:  # keep each row's first occurrence only
                mask &= mask.cumsum(dim=1) == 1
        missing = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if missing and require:
            hint = " (mark high-norm patches first: workbench.probes.high_norm.mark_high_norm(model, images, rule), or --high-norm RULE)" \
                if "top-norm" in self.tokens else ""
            where = missing[0] if index is None else list(index)[missing[0]]
            raise InputError(f"sink {self.label}: its keys do not occur in {len(missing)} of {batch} input sequences "
                             f"(e.g. sequence {where}){hint}; choose another sink or other data")
        return mask

    def _given_rows(self, rows: list[int], length: int) -> torch.Tensor:
        if rows and max(rows) >= len(self.masks):
            raise InputError(f"sink mask has {len(self.masks)} rows (one per sequence), but the data has sequence "
                             f"{max(rows)}: give one row per sequence of the data")
        picked = [self.masks[row] for row in rows]
        bad = next((row for row, m in zip(rows, picked) if m.shape[0] != length), None)
        if bad is not None:
            raise InputError(f"sink mask of sequence {bad} has {self.masks[bad].shape[0]} positions, the sequence "
                             f"has {length}: a mask row must cover every position")
        return torch.stack(picked) if picked else torch.zeros(0, length, dtype=torch.bool)

    def _called(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.fn(tokens)
        if isinstance(out, np.ndarray):
            out = torch.from_numpy(out)
        name = self.label
        if not isinstance(out, torch.Tensor) or out.dtype != torch.bool or tuple(out.shape) != tuple(tokens.shape):
            got = f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(f"sink {name} must return a bool mask shaped like the tokens {tuple(tokens.shape)}, "
                             f"got {got}")
        return out.to(tokens.device)


def _mixed_only(tokens: Sequence[str]) -> bool:
    """Whether every sink token names a kind of position of a mixed sequence (visual, bg, obj, question, answer)."""
    return bool(tokens) and all(t in _MIXED_NAMES or t in ("bg", "obj") for t in tokens)


def check_eps(eps: float) -> float:
    return check_number("eps", eps, 0.0, 1.0)


def query_mask(key_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """[batch, T] bool: the queries over which attention to the sink is averaged.

    A query counts when it can see a sink key and is not itself a sink: on a causal model q > the
    first sink position (query 0 can only attend to itself), on an encoder every non-sink query.
    """
    batch, length = key_mask.shape
    positions = torch.arange(length, device=key_mask.device).expand(batch, length)
    if causal:
        first = torch.where(key_mask, positions, torch.full_like(positions, length)).min(dim=1, keepdim=True).values
        return (positions > first) & ~key_mask
    return ~key_mask


def scores_are_pre_softmax(model: Any, tokens: torch.Tensor | None = None, layer: int = 0) -> bool:
    """Check, on this adapter, whether `hook_attn_scores` fires before the softmax (softmax(scores) == pattern)."""
    require_pattern_hooks(model)
    if tokens is None:
        tokens = sample_input(model)
    seen: dict[str, torch.Tensor] = {}

    def grab(tensor: torch.Tensor, hook: Any) -> None:
        seen[hook.name.rsplit(".", 1)[-1]] = tensor.detach().clone()

    with torch.no_grad(), model.hooks(fwd_hooks=[(scores(layer), grab), (pattern(layer), grab)]):
        model(tokens.to(next(model.parameters()).device))
    raw, weights = seen["hook_attn_scores"].float(), seen["hook_pattern"].float()
    return bool(torch.allclose(torch.softmax(raw, dim=-1), weights, atol=1e-5))
