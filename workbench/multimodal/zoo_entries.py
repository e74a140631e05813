"""How the zoo and `core.modelinfo` learn about multimodal LMs (a family entry point, see workbench.core.families):
LLaVA configs (local directories, cached ids), the LLaVA trained here (`shapes-llava`) and the tiny random one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.core.positions import is_multimodal_config


def _model_info(*args: Any, **kwargs: Any):
    from workbench.multimodal.llava import model_info

    return model_info(*args, **kwargs)


def _load(*args: Any, **kwargs: Any):
    from workbench.multimodal.llava import load_llava

    return load_llava(*args, **kwargs)


def _trainer(name: str):
    def train(target: Path, log) -> None:
        from workbench.multimodal.presets import LLAVA_PRESETS
        from workbench.multimodal.train import train_llava

        log(f"training {name}: {LLAVA_PRESETS[name].describe()}")
        train_llava(LLAVA_PRESETS[name], target, log=log)
    return train


def _tiny():
    from workbench.multimodal.llava import build_tiny_llava

    return build_tiny_llava()


def register() -> None:
    from workbench.core.modelinfo import register_describer
    from workbench.multimodal.presets import LLAVA_PRESETS
    from workbench.zoo.cards import TRAINED, ModelCard, register_card
    from workbench.zoo.fetch import register_trainer
    from workbench.zoo.load import register_config_loader
    from workbench.zoo.tiny import register_tiny

    register_describer(is_multimodal_config, _model_info)
    register_config_loader(is_multimodal_config, _load)
    for name, preset in LLAVA_PRESETS.items():
        register_card(ModelCard(
            name, "causal-lm", "LlavaForConditionalGeneration", name, 0, preset.layers, preset.heads,
            preset.kv_heads, f"trained here (`sinkbench models fetch {name}`): {preset.describe()}",
            "MIT (weights trained by Sink Workbench)",
            missing_hint=f"model {name!r} is not trained yet: run `sinkbench models fetch {name}` (about two "
                         f"minutes on 2 cores; it needs {preset.vision}, trained first if missing)"), TRAINED)
        register_trainer(name, _trainer(name))
    register_tiny(ModelCard("tiny-llava", "causal-lm", "LlavaForConditionalGeneration", "tiny-llava", 0, 2, 4, 2,
                            "random LLaVA (CLIP tower on 16x16 images, 16 visual tokens; Llama d=64) built from a "
                            "config", "n/a"), _tiny)
