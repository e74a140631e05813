"""Vision Transformers in the zoo: Hugging Face ViT / DeiT classifiers, and ViTs with register tokens.

    >>> model = zoo.load("path/to/vit-dir")              # any HF ViT/DeiT directory (or a cached HF id)
    >>> zoo.info(model).grid, zoo.info(model).n_registers
    ((8, 8), 4)

TransformerLens 4.3 has a ViT/DeiT adapter (`ViTArchitectureAdapter`); it has none for DINOv2 with
registers (transformers' `Dinov2WithRegisters*`), so registers enter here as a thin extension of
HF ViT: `RegisterViTEmbeddings` appends N learned tokens after the patch tokens (no position
embedding, as in Darcet et al. 2024 and DINOv2-reg) and the classifier still reads [CLS] only, so the
registers are discarded at the output. Every other module is HF ViT's, and the bridge boots it with
the plain ViT adapter, so every TransformerLens hook name works unchanged. A saved register ViT
records `num_register_tokens` in its config.json and `RegisterViTForImageClassification` as its
architecture; `zoo.load` rebuilds it (plain HF `ViTForImageClassification` would drop the registers).

On this adapter `hook_pattern` and `hook_attn_scores` both fire post hoc with the post-softmax
weights (like BERT's): probes read them, and the catalogue applies attention edits through the
pattern rebuilt from `hook_q`/`hook_k` (see interventions.mechanisms).
Positions and their kinds (what token ids are to text): `workbench.core.positions`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    DeiTForImageClassification,
    DeiTModel,
    ViTForImageClassification,
    ViTModel,
)
from transformers.models.vit.modeling_vit import ViTEmbeddings

from workbench.core.errors import InputError, ModelNotAvailable
from workbench.core.positions import CLS, PositionVocabulary, check_registers

# --------------------------------------------------------------------------------------------------
# Register tokens: a thin extension of HF ViT
# --------------------------------------------------------------------------------------------------


class RegisterViTEmbeddings(ViTEmbeddings):
    """ViT embeddings + N learned register tokens appended after the patches (no position embedding)."""

    def __init__(self, config, use_mask_token: bool = False):
        super().__init__(config, use_mask_token=use_mask_token)
        # Initialised here: HF's post_init dispatches the inner ViTModel's own _init_weights to this module. Equal
        # registers (zeros) would stay equal forever: without position embeddings nothing breaks their symmetry.
        tokens = torch.empty(1, config.num_register_tokens, config.hidden_size)
        self.register_tokens = nn.Parameter(nn.init.trunc_normal_(tokens, mean=0.0, std=config.initializer_range))

    def forward(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=False):
        embeddings = super().forward(pixel_values, bool_masked_pos, interpolate_pos_encoding)  # [b, 1 + P, d]
        registers = self.register_tokens.expand(embeddings.shape[0], -1, -1).to(embeddings.dtype)
        return torch.cat([embeddings, registers], dim=1)  # [b, 1 + P + N, d]


class RegisterViTForImageClassification(ViTForImageClassification):
    """`ViTForImageClassification` whose embeddings append `config.num_register_tokens` registers. The
    classifier reads [CLS] (position 0), so the registers are discarded at the output."""

    def __init__(self, config):
        super().__init__(config)
        self.vit.embeddings = RegisterViTEmbeddings(config)
        self.post_init()


def build_classifier(config: Any):
    """A fresh (randomly initialised) classifier for `config`: register ViT if it asks for registers."""
    registers = check_registers(getattr(config, "num_register_tokens", 0) or 0)
    if config.model_type == "deit":
        if registers:
            raise InputError("register tokens are implemented for ViT only, not DeiT")
        return DeiTForImageClassification(config)
    if registers:
        return RegisterViTForImageClassification(config)
    return ViTForImageClassification(config)


# --------------------------------------------------------------------------------------------------
# Loading from a directory or the local HF cache
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImagePreprocessing:
    """How raw pixels in [0, 1] become model input: (x - mean) / std per channel (HF image processors)."""

    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @classmethod
    def from_directory(cls, directory: Path | None, channels: int) -> ImagePreprocessing:
        path = directory / "preprocessor_config.json" if directory is not None else None
        if path is None or not path.is_file():
            return cls((0.5,) * channels, (0.5,) * channels)  # the ViTImageProcessor defaults
        blob = json.loads(path.read_text())
        if not blob.get("do_normalize", True):
            return cls((0.0,) * channels, (1.0,) * channels)
        mean, std = blob.get("image_mean", [0.5] * channels), blob.get("image_std", [0.5] * channels)
        mean = [mean] * channels if isinstance(mean, (int, float)) else mean
        std = [std] * channels if isinstance(std, (int, float)) else std
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def to_json(self, size: int) -> dict:
        return {"image_processor_type": "ViTImageProcessor", "do_resize": False, "size": {"height": size, "width": size},
                "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": list(self.mean), "image_std": list(self.std)}


def load_vision_model(source: str | Path, config: Any, dtype: Any, local_files_only: bool = True):
    """(HF model in eval mode with eager attention, ImagePreprocessing) from a directory or cached id."""
    registers = check_registers(getattr(config, "num_register_tokens", 0) or 0)
    architecture = (config.architectures or [""])[0]
    if "WithTeacher" in architecture:
        raise ModelNotAvailable(f"{source}: {architecture} (a DeiT with a distillation head) is not supported by the "
                                "TransformerLens ViT adapter; use a DeiTForImageClassification checkpoint")
    with_head = architecture.endswith("ForImageClassification") or (not architecture and config.num_labels > 0)
    if config.model_type == "deit":
        cls = DeiTForImageClassification if with_head else DeiTModel
        if registers:
            raise ModelNotAvailable(f"{source}: register tokens are implemented for ViT only, not DeiT")
    elif registers:
        cls = RegisterViTForImageClassification
    else:
        cls = ViTForImageClassification if with_head else ViTModel
    directory = Path(source) if Path(str(source)).is_dir() else _cached_snapshot(str(source))
    extra = {}
    if cls in (ViTModel, DeiTModel) and not _has_pooler(directory):
        extra["add_pooling_layer"] = False  # e.g. DINOv2 (dinov2-s14): no pooler weights, so none is made up
    model = cls.from_pretrained(source, dtype=dtype, attn_implementation="eager", local_files_only=local_files_only,
                                **extra)
    # The bridge picks its adapter from `architectures`; the register model is a ViT to it.
    model.config.architectures = ["DeiTForImageClassification" if config.model_type == "deit" and with_head else
                                  "DeiTModel" if config.model_type == "deit" else
                                  "ViTForImageClassification" if with_head else "ViTModel"]
    return model.eval(), ImagePreprocessing.from_directory(directory, config.num_channels)


def _has_pooler(directory: Path | None) -> bool:
    """Whether a checkpoint directory's safetensors hold pooler weights (True when it cannot tell)."""
    files = sorted(directory.glob("*.safetensors")) if directory is not None else []
    if not files:
        return True
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            if any(key.startswith(("pooler.", "vit.pooler.", "deit.pooler.")) for key in handle.keys()):
                return True
    return False


def _cached_snapshot(hf_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hf_id, local_files_only=True))
    except (OSError, ValueError):  # no cached snapshot: the processor defaults apply
        return None


# --------------------------------------------------------------------------------------------------
# Facts about an image model
# --------------------------------------------------------------------------------------------------


def model_info(name: str, hf_model: Any, preprocessing: ImagePreprocessing | None, weights_sha256: str | None,
               source: str):
    """The ModelInfo of a ViT / DeiT (family `image-classifier`, or `image-encoder` without a head)."""
    from workbench.core.modelinfo import ModelInfo

    cfg = hf_model.config
    size = cfg.image_size if isinstance(cfg.image_size, int) else tuple(cfg.image_size)[0]
    width = cfg.image_size if isinstance(cfg.image_size, int) else tuple(cfg.image_size)[1]
    patch = cfg.patch_size if isinstance(cfg.patch_size, int) else tuple(cfg.patch_size)[0]
    if size % patch or width % patch:
        raise ModelNotAvailable(f"{name}: image size {size} x {width} is not a multiple of the patch size {patch}")
    registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
    prefix = 2 if cfg.model_type == "deit" else 1
    n_patches = (size // patch) * (width // patch)
    classifier = hasattr(hf_model, "classifier")
    n_heads = cfg.num_attention_heads
    preprocessing = preprocessing or ImagePreprocessing((0.5,) * cfg.num_channels, (0.5,) * cfg.num_channels)
    labels = [cfg.id2label[i] for i in range(cfg.num_labels)] if classifier and cfg.id2label else None
    return ModelInfo(
        name=name,
        family="image-classifier" if classifier else "image-encoder",
        n_layers=cfg.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=n_heads,
        d_head=cfg.hidden_size // n_heads,
        d_model=cfg.hidden_size,
        n_ctx=prefix + n_patches + registers,
        vocab_size=cfg.num_labels if classifier else cfg.hidden_size,
        bos_token_id=None,
        eos_token_id=None,
        cls_token_id=CLS,
        sep_token_id=None,
        positional="absolute",
        layer_types=None,
        sliding_window=None,
        weights_sha256=weights_sha256,
        source=source,
        tokenizer=PositionVocabulary(registers, prefix == 2),
        image_size=(size, width),
        patch_size=patch,
        num_channels=cfg.num_channels,
        n_registers=registers,
        n_prefix=prefix,
        image_mean=preprocessing.mean,
        image_std=preprocessing.std,
        label_names=labels,
    )
