"""LLaVA-style multimodal LMs through TransformerLens's LLaVA adapter: configs, loading, the ModelInfo, and how
an image becomes the visual tokens V' of S = [BOS] [V'] text.

    >>> model = zoo.load("tiny-llava")                        # random CLIP tower + tiny Llama, byte tokenizer
    >>> embeds = visual_embeddings(model, input_ids, pixels)  # [b, T, d]: text embeddings, V' at the image slots
    >>> model(embeds)                                         # == HF LlavaForConditionalGeneration(ids, pixels)

`LlavaForConditionalGeneration` (transformers) projects the vision tower's patch features with a 2-layer MLP
(`multi_modal_projector`) and writes them over the image placeholder tokens of the text; the language model
then runs causally over the mixed sequence. TransformerLens 4.3 boots it with `LlavaArchitectureAdapter`,
whose language-model blocks are the Llama adapter's (`PositionEmbeddingsAttentionBridge`: pre-softmax
`hook_attn_scores`, pattern edits flow), so every probe and catalogue entry of the workbench runs on the LM.

The hooked forward of the workbench calls a model on one tensor (`workbench.passes.forward`), so a mixed set
hands the bridge the input embeddings (`visual_embeddings`: the model's own `get_image_features` and token
embeddings), which the bridge passes to HF as `inputs_embeds`: the LM computes exactly what
`model(input_ids, pixel_values)` computes (tested to 0.0 on tiny-llava) and the vision tower runs once,
outside the hooked pass. The adapter wraps CLIP and SigLIP towers only (`CLIPVisionEncoderBridge` reads
`pre_layrnorm`); a LLaVA whose tower is a ViT (the zoo's `shapes-llava` reuses the frozen `shapes-vit`) is
booted by `LlavaViTArchitectureAdapter`, the same adapter with the tower left as the plain HF module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from workbench.core.errors import InputError, ModelNotAvailable
from workbench.core.positions import is_multimodal_config

VIT_TOWER_ARCHITECTURE = "LlavaViTForConditionalGeneration"  # what `architectures` says to the adapter factory
_ADAPTER_REGISTERED = False


def register_vit_tower_adapter() -> None:
    """Teach TransformerLens's adapter factory `LlavaViTForConditionalGeneration`: the LLaVA adapter without a
    bridge around the vision tower (its CLIP bridge needs CLIP's module names; a ViT tower has others)."""
    global _ADAPTER_REGISTERED
    if _ADAPTER_REGISTERED:
        return
    from transformer_lens.factories import architecture_adapter_factory as factory
    from transformer_lens.model_bridge.supported_architectures.llava import LlavaArchitectureAdapter

    class LlavaViTArchitectureAdapter(LlavaArchitectureAdapter):
        """LLaVA with a ViT vision tower: the LM, projector and every LM hook are LlavaArchitectureAdapter's."""

        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self.component_mapping.pop("vision_encoder", None)

    factory.ArchitectureAdapterFactory.register_adapter(VIT_TOWER_ARCHITECTURE, LlavaViTArchitectureAdapter)
    # the boot path checks the architecture name against this table before it asks the factory
    factory.SUPPORTED_ARCHITECTURES.setdefault(VIT_TOWER_ARCHITECTURE, LlavaViTArchitectureAdapter)
    _ADAPTER_REGISTERED = True


def adapter_architecture(config: Any) -> str:
    """The architecture name the bridge boots a LLaVA config with (its tower decides)."""
    vision_type = getattr(config.vision_config, "model_type", "")
    if vision_type in ("clip_vision_model", "siglip_vision_model", "siglip"):
        return "LlavaForConditionalGeneration"
    if vision_type == "vit":
        register_vit_tower_adapter()
        return VIT_TOWER_ARCHITECTURE
    raise ModelNotAvailable(f"a LLaVA with a {vision_type!r} vision tower has no TransformerLens adapter here "
                            "(supported towers: CLIP, SigLIP, ViT)")


def llava_config(vision_config: Any, text_config: Any, image_token_id: int, n_image_tokens: int,
                 feature_layer: int = -1):
    """A LlavaConfig (eager attention, the CLS token dropped, features of the tower's block `feature_layer`:
    -1 the last, -2 the penultimate as in LLaVA-1.5)."""
    from transformers import LlavaConfig

    config = LlavaConfig(vision_config=vision_config, text_config=text_config, image_token_id=image_token_id,
                         image_seq_length=n_image_tokens, vision_feature_layer=feature_layer,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu")
    config._attn_implementation = "eager"
    return config


def build_tiny_llava():
    """tiny-llava: a random CLIP vision tower (16x16 images, 4x4 grid of 4px patches) + a tiny random Llama
    (2 layers, 4 heads, 2 KV heads, d = 64) over the byte tokenizer plus one `<image>` token."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaForConditionalGeneration

    from workbench.zoo.tiny import tiny_tokenizer

    tokenizer = image_tokenizer(tiny_tokenizer())
    vision = CLIPVisionConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, projection_dim=32)
    text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
                       vocab_size=len(tokenizer), pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlavaForConditionalGeneration(llava_config(vision, text, tokenizer.convert_tokens_to_ids("<image>"), 16))
    return model, tokenizer


def image_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer with the `<image>` placeholder token added (LLaVA's name for it), if it has none."""
    if "<image>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer


def load_llava(source: str | Path, config: Any, dtype: Any, local_files_only: bool = True):
    """(LlavaForConditionalGeneration in eval mode, eager attention, its tokenizer) from a directory or cached id."""
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(source, dtype=dtype, attn_implementation="eager",
                                                          local_files_only=local_files_only)
    model.config.architectures = [adapter_architecture(model.config)]
    norm = _processor_normalisation(Path(str(source)))
    if norm is not None and not getattr(model.config, "sinkbench_image_norm", None):
        model.config.sinkbench_image_norm = norm  # e.g. LLaVA-1.5: CLIP's mean / std, from preprocessor_config.json
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return model.eval(), tokenizer


def model_info(name: str, hf_model: Any, tokenizer: Any, weights_sha256: str | None, source: str):
    """The ModelInfo of a LLaVA: the language model's facts (family causal-lm) plus the image placeholder id,
    the number of visual tokens per image and the tower's image size, patch size and normalisation."""
    from workbench.core.modelinfo import ModelInfo

    cfg = hf_model.config
    text, vision = cfg.text_config, cfg.vision_config
    n_heads = text.num_attention_heads
    size = vision.image_size if isinstance(vision.image_size, int) else tuple(vision.image_size)[0]
    patch = vision.patch_size if isinstance(vision.patch_size, int) else tuple(vision.patch_size)[0]
    n_image_tokens = (size // patch) ** 2 if cfg.vision_feature_select_strategy == "default" else (size // patch) ** 2 + 1
    mean, std = _image_normalisation(hf_model, vision.num_channels if hasattr(vision, "num_channels") else 3)
    rope = getattr(text, "rope_parameters", None) is not None or getattr(text, "rope_theta", None) is not None
    return ModelInfo(
        name=name, family="causal-lm", n_layers=text.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=getattr(text, "num_key_value_heads", None) or n_heads,
        d_head=getattr(text, "head_dim", None) or text.hidden_size // n_heads, d_model=text.hidden_size,
        n_ctx=text.max_position_embeddings, vocab_size=text.vocab_size,
        bos_token_id=getattr(tokenizer, "bos_token_id", None), eos_token_id=getattr(tokenizer, "eos_token_id", None),
        cls_token_id=None, sep_token_id=None, positional="rotary" if rope else "absolute",
        layer_types=None, sliding_window=None, weights_sha256=weights_sha256, source=source, tokenizer=tokenizer,
        image_size=(size, size), patch_size=patch, num_channels=getattr(vision, "num_channels", 3),
        image_mean=mean, image_std=std, image_token_id=int(cfg.image_token_id), n_image_tokens=n_image_tokens,
    )


def _processor_normalisation(directory: Path) -> dict | None:
    """{mean, std} from a model directory's preprocessor_config.json, if it has one."""
    import json

    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return None
    blob = json.loads(path.read_text())
    if "image_mean" not in blob or "image_std" not in blob:
        return None
    return {"mean": list(blob["image_mean"]), "std": list(blob["image_std"])}


def _image_normalisation(hf_model: Any, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the tower expects: recorded in the config (by the trainer here, or from the directory's
    preprocessor_config.json when loaded), else the ViT default 0.5."""
    recorded = getattr(hf_model.config, "sinkbench_image_norm", None)
    if recorded:
        return tuple(recorded["mean"]), tuple(recorded["std"])
    return (0.5,) * channels, (0.5,) * channels


def require_multimodal(model: Any, what: str):
    """The ModelInfo of a multimodal LM; one InputError naming the models that are, on any other model."""
    from workbench.core.modelinfo import info

    model_info = info(model)
    if not model_info.is_multimodal:
        raise InputError(f"{what} needs a multimodal LM (image + text); {model_info.name} is not one: use tiny-llava, "
                         "shapes-llava or a local LLaVA model directory")
    return model_info


@torch.no_grad()
def visual_embeddings(model: Any, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
    """[b, T, d] input embeddings of S: token embeddings, with the projected image features of each image
    written over its `n_image_tokens` placeholder positions (what LlavaModel.forward does before the LM)."""
    model_info = require_multimodal(model, "visual embeddings")
    hf = getattr(model, "original_model", model)
    device = next(hf.parameters()).device
    input_ids, pixel_values = input_ids.to(device), pixel_values.to(device)
    slots = input_ids == model_info.image_token_id
    per_image = slots.sum(dim=1)
    if not bool((per_image == model_info.n_image_tokens).all()):
        raise InputError(f"each sequence needs exactly {model_info.n_image_tokens} image tokens for one image, got "
                         f"{per_image.tolist()}")
    embeds = hf.model.get_input_embeddings()(input_ids)
    features = hf.model.get_image_features(pixel_values=pixel_values.to(embeds.dtype))
    features = getattr(features, "pooler_output", features)
    features = torch.cat(list(features), dim=0) if isinstance(features, (list, tuple)) else features
    embeds[slots] = features.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
    return embeds


def is_llava(config: Any) -> bool:
    return is_multimodal_config(config)
