"""What experiments need to know about a loaded model: `ModelInfo`, attached to a model as `.sinkbench`.

    >>> from workbench.core.modelinfo import info
    >>> info(model).n_layers, info(model).group_size        # (30, 3) on SmolLM2

The zoo (workbench.zoo) builds a ModelInfo when it loads a model; `info` derives one for a bridge booted
elsewhere. Model families whose config this module cannot read (image models) register a describer with
`register_describer` (workbench.vision does), so this ground-floor module imports nothing above it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

from workbench.core.errors import InputError


@dataclasses.dataclass
class ModelInfo:
    """What experiments need to know about a loaded model; attached to the bridge as `.sinkbench`."""

    name: str
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    n_ctx: int
    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    cls_token_id: int | None
    sep_token_id: int | None
    positional: str  # "rotary" or "absolute"
    layer_types: list[str] | None  # per layer "sliding_attention"/"full_attention" where the model mixes them
    sliding_window: int | None
    weights_sha256: str | None
    source: str
    tokenizer: Any = dataclasses.field(repr=False, compare=False, default=None)
    # image models only (workbench.vision): positions are [CLS] ([DIST]) | patches | registers
    image_size: tuple[int, int] | None = None
    patch_size: int | None = None
    num_channels: int | None = None
    n_registers: int = 0
    n_prefix: int = 0  # special tokens before the patches: 1 ([CLS]) on ViT, 2 ([CLS], [DIST]) on DeiT
    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None
    label_names: list[str] | None = None
    # The BOS policy when a caller states none (workbench.core.data): from the model's card; True for all
    # but models whose first-token sink needs the text's own first token (qwen2.5-0.5b).
    default_prepend_bos: bool = True
    # multimodal LMs only (workbench.multimodal): the input id of the image placeholder and how many visual
    # tokens one image becomes; image_size / patch_size / image_mean / image_std then describe the vision tower
    image_token_id: int | None = None
    n_image_tokens: int = 0
    # Mixture-of-Experts models only (issue 19): routed experts per MoE layer and experts chosen per token; 0 on
    # dense models. Shared (always-on) experts, as Qwen2-MoE's, are not counted.
    n_experts: int = 0
    top_k: int = 0

    @property
    def causal(self) -> bool:
        return self.family == "causal-lm"

    @property
    def is_moe(self) -> bool:
        """A Mixture-of-Experts model: its feed-forward layers route each token to `top_k` of `n_experts`."""
        return self.n_experts > 0

    @property
    def is_multimodal(self) -> bool:
        """A multimodal LM (causal; inputs S = [BOS] [V'] text, workbench.multimodal)."""
        return self.image_token_id is not None

    @property
    def is_image(self) -> bool:
        """An image model (family image-classifier or image-encoder): inputs are pixels, not tokens."""
        return self.family.startswith("image")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid of an image model."""
        if not self.is_image:
            raise InputError(f"{self.name} is not an image model: it has no patch grid")
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def n_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (GQA); query head h reads value head h // group_size."""
        return self.n_heads // self.n_kv_heads

    def tokenizer_fingerprint(self) -> str | None:
        """A short hash of the tokenizer's vocabulary (token -> id): equal fingerprints, the same ids mean the
        same text. Data records it (workbench.core.data.Dataset), so data cut for one model is not silently run
        on another. None for image models and tokenizers that cannot list their vocabulary."""
        if "_fingerprint" in self.__dict__:
            return self.__dict__["_fingerprint"]
        found = None
        vocab = getattr(self.tokenizer, "get_vocab", None) if not self.is_image else None
        if vocab is not None:
            try:
                items = sorted(vocab().items(), key=lambda item: (item[1], item[0]))
            except (TypeError, AttributeError, NotImplementedError):
                items = None
            if items is not None:
                digest = hashlib.sha256("\n".join(f"{i}\t{t}" for t, i in items).encode("utf-8", "surrogatepass"))
                found = digest.hexdigest()[:16]
        self.__dict__["_fingerprint"] = found
        return found

    def provenance(self) -> dict:
        out = {
            "model": self.name,
            "model_family": self.family,
            "model_weights_sha256": self.weights_sha256,
            "model_source": self.source,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
        }
        if self.is_moe:
            out.update(n_experts=self.n_experts, top_k=self.top_k)
        if self.is_image:
            out.update(image_size=list(self.image_size), patch_size=self.patch_size, n_registers=self.n_registers)
        if self.is_multimodal:
            out.update(image_size=list(self.image_size), patch_size=self.patch_size,
                       n_image_tokens=self.n_image_tokens, image_token_id=self.image_token_id)
        return out


def info(model: Any) -> ModelInfo:
    """The ModelInfo of a bridge loaded by `load` (or derived from the bridge for one booted elsewhere)."""
    found = getattr(model, "sinkbench", None)
    if isinstance(found, ModelInfo):
        return found
    hf = getattr(model, "original_model", None)
    if hf is None:
        raise InputError(f"expected a TransformerBridge, got {type(model).__name__}")
    derived = describe(getattr(model.cfg, "model_name", "unknown"), hf, model.tokenizer, None, "unknown")
    model.sinkbench = derived
    return derived


# (matches(config), describe(name, hf_model, preprocessing, weights_sha256, source)) of the families that
# are not text models; the first match wins.
_DESCRIBERS: list[tuple[Callable[[Any], bool], Callable[..., ModelInfo]]] = []


def register_describer(matches: Callable[[Any], bool], describe_fn: Callable[..., ModelInfo]) -> None:
    """Let a model family describe the models whose HF config `matches` (workbench.vision registers ViTs)."""
    if (matches, describe_fn) not in _DESCRIBERS:
        _DESCRIBERS.append((matches, describe_fn))


def describe(name: str, hf_model: Any, tokenizer: Any, weights_sha256: str | None, source: str) -> ModelInfo:
    """The ModelInfo of a transformers model; `tokenizer` is the image preprocessing for image models."""
    cfg = hf_model.config
    for matches, describe_fn in _DESCRIBERS:
        if matches(cfg):
            return describe_fn(name, hf_model, tokenizer, weights_sha256, source)
    n_heads = cfg.num_attention_heads
    hidden = cfg.hidden_size
    is_encoder = getattr(cfg, "model_type", "") in {"bert", "roberta", "distilbert", "electra"}
    rope = getattr(cfg, "rope_parameters", None) is not None or getattr(cfg, "rope_theta", None) is not None
    return ModelInfo(
        name=name,
        family="encoder" if is_encoder else "causal-lm",
        n_layers=cfg.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(cfg, "num_key_value_heads", None) or n_heads,
        d_head=getattr(cfg, "head_dim", None) or hidden // n_heads,
        d_model=hidden,
        n_ctx=cfg.max_position_embeddings,
        vocab_size=cfg.vocab_size,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
        cls_token_id=getattr(tokenizer, "cls_token_id", None),
        sep_token_id=getattr(tokenizer, "sep_token_id", None),
        positional="rotary" if rope else "absolute",
        layer_types=list(cfg.layer_types) if getattr(cfg, "layer_types", None) else None,
        sliding_window=getattr(cfg, "sliding_window", None) if getattr(cfg, "layer_types", None) else None,
        weights_sha256=weights_sha256,
        source=source,
        tokenizer=tokenizer,
        n_experts=int(getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None) or 0),
        top_k=int(getattr(cfg, "num_experts_per_tok", None) or 0),
    )
