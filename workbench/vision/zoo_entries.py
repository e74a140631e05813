"""How the zoo and `core.modelinfo` learn about Vision Transformers (a family entry point, see
workbench.core.families): HF ViT / DeiT configs, the ViTs trained here and the tiny random ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.core.positions import is_vision_config


def _model_info(*args: Any, **kwargs: Any):
    from workbench.vision.vit import model_info

    return model_info(*args, **kwargs)


def _load(*args: Any, **kwargs: Any):
    from workbench.vision.vit import load_vision_model

    return load_vision_model(*args, **kwargs)


def _trainer(name: str):
    def train(target: Path, log) -> None:
        from workbench.vision.presets import VIT_PRESETS
        from workbench.vision.train import train_vit

        log(f"training {name}: {VIT_PRESETS[name].describe()}")
        train_vit(VIT_PRESETS[name], target, log=log)
    return train


def _tiny(base: str):
    def build():
        from workbench.vision.presets import ViTTrainConfig
        from workbench.vision.train import PREPROCESSING, vit_config
        from workbench.vision.vit import build_classifier

        config = vit_config(ViTTrainConfig(image_size=16, patch_size=4, hidden_size=32, layers=2, heads=4,
                                           mlp_ratio=2, registers=2 if base == "tiny-vit-reg" else 0))
        if base == "tiny-deit":
            from transformers import DeiTConfig

            config = DeiTConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"},
                                attn_implementation="eager")
        return build_classifier(config), PREPROCESSING
    return build


def register() -> None:
    from workbench.core.modelinfo import register_describer
    from workbench.vision.presets import VIT_PRESETS
    from workbench.zoo.cards import TRAINED, ModelCard, register_card
    from workbench.zoo.fetch import register_trainer
    from workbench.zoo.load import register_config_loader
    from workbench.zoo.tiny import register_tiny

    register_describer(is_vision_config, _model_info)
    register_config_loader(is_vision_config, _load)
    for name, preset in VIT_PRESETS.items():
        register_card(ModelCard(
            name, "image-classifier", "ViTForImageClassification", name, preset.n_params, preset.layers,
            preset.heads, preset.heads, f"trained here (`sinkbench train-vit --preset {name}`): {preset.describe()}",
            "MIT (weights trained by Sink Workbench)",
            missing_hint=f"model {name!r} is not trained yet: run `sinkbench train-vit --preset {name}` "
                         f"(or `sinkbench models fetch {name}`; about a minute on 2 cores)"), TRAINED)
        register_trainer(name, _trainer(name))
    for card in [
        ModelCard("tiny-vit", "image-classifier", "ViTForImageClassification", "tiny-vit", 0, 2, 4, 4,
                  "random ViT classifier (16x16 images, 4x4 grid of 4px patches) built from a config", "n/a"),
        ModelCard("tiny-vit-reg", "image-classifier", "ViTForImageClassification", "tiny-vit-reg", 0, 2, 4, 4,
                  "random ViT classifier with 2 register tokens built from a config", "n/a"),
        ModelCard("tiny-deit", "image-classifier", "DeiTForImageClassification", "tiny-deit", 0, 2, 4, 4,
                  "random DeiT classifier ([CLS] + distillation token) built from a config", "n/a"),
    ]:
        register_tiny(card, _tiny(card.name))
