"""What the LLaVA trained here is: its tower, language model, data and optimisation, as one frozen value.

    >>> LLAVA_PRESETS["shapes-llava"].layers
    3
    >>> dataclasses.replace(LLAVA_PRESETS["shapes-llava"], steps=800, seed=1)    # a variant

The zoo name `shapes-llava` is this preset, trained by `sinkbench models fetch shapes-llava` into the cache
(`workbench.multimodal.train`). This module imports no torch.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from workbench.core.errors import InputError, check_number, check_range


@dataclasses.dataclass(frozen=True)
class LlavaTrainConfig:
    """A LLaVA on generated scenes: frozen `vision` tower, trained projector and Llama."""

    vision: str = "shapes-vit"
    hidden_size: int = 64
    layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    mlp_ratio: int = 2
    feature_layer: int = -2
    steps: int = 400
    batch_size: int = 32
    pool: int = 2048
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 60
    seed: int = 0
    eval_images: int = 256
    eval_every: int = 200
    checkpoint_every: int = 200

    HELP: ClassVar[dict[str, str]] = {
        "vision": "the zoo's frozen ViT whose patch tokens are the visual tokens (a trained one or tiny-vit)", "hidden_size": "LM width d_model",
        "layers": "LM blocks", "heads": "LM attention heads", "kv_heads": "LM key/value heads (GQA)",
        "mlp_ratio": "LM MLP width / d_model",
        "feature_layer": "tower block whose patch tokens are projected (-1 last, -2 penultimate as in LLaVA-1.5)", "steps": "optimiser steps (each a fresh batch of scenes)",
        "batch_size": "scenes per step", "pool": "training scenes (their frozen-tower features are computed once)",
        "lr": "peak AdamW learning rate (linear warmup, cosine decay)",
        "weight_decay": "AdamW weight decay", "warmup": "warmup steps", "seed": "seed of the weights and the data",
        "eval_images": "held-out scenes per question type", "eval_every": "steps between accuracy measurements",
        "checkpoint_every": "steps between resume checkpoints (0: none)"}

    def validate(self) -> LlavaTrainConfig:
        check_range("hidden size", self.hidden_size, 8, 4096)
        check_range("layers", self.layers, 1, 64)
        check_range("heads", self.heads, 1, 64)
        check_range("KV heads", self.kv_heads, 1, self.heads)
        if self.hidden_size % self.heads or self.heads % self.kv_heads:
            raise InputError(f"hidden size {self.hidden_size} / heads {self.heads} / KV heads {self.kv_heads}: d must "
                             "divide by the heads and the heads by the KV heads")
        check_range("MLP ratio", self.mlp_ratio, 1, 16)
        check_range("feature layer", self.feature_layer, -64, -1)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("batch size", self.batch_size, 1, 65536)
        check_range("training scenes", self.pool, 1, 1 << 20)
        check_range("warmup steps", self.warmup, 0, self.steps)
        check_range("seed", self.seed, 0, 2**63 - 1)
        check_range("evaluation images", self.eval_images, 1, 1 << 20)
        check_range("eval_every", self.eval_every, 1, 10_000_000)
        check_range("checkpoint_every", self.checkpoint_every, 0, 10_000_000)
        check_number("learning rate", self.lr, low=0.0, low_open=True)
        check_number("weight decay", self.weight_decay, low=0.0)
        return self

    def describe(self) -> str:
        return (f"LLaVA: frozen {self.vision} tower (block {self.feature_layer}), trained projector + Llama {self.layers} x {self.heads} heads "
                f"({self.kv_heads} KV), d={self.hidden_size}; {self.steps} steps x {self.batch_size} scenes "
                f"(seed {self.seed})")


LLAVA_PRESETS: dict[str, LlavaTrainConfig] = {"shapes-llava": LlavaTrainConfig()}
