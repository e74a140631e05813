"""What a small ViT trained here is: its architecture, data and optimisation, as one frozen value.

    >>> VIT_PRESETS["shapes-vit-reg4"].registers
    4
    >>> dataclasses.replace(VIT_PRESETS["shapes-vit"], steps=3000, seed=1)    # a variant

The zoo names `shapes-vit` and `shapes-vit-reg4` are these presets, trained by `sinkbench train-vit`
(or `sinkbench models fetch NAME`) into the cache; the two differ only in the register tokens, so any
difference between them is what registers change. This module imports no torch.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from workbench.core.errors import InputError, check_number, check_range


@dataclasses.dataclass(frozen=True)
class ViTTrainConfig:
    """A ViT classifier on procedurally generated shapes (`workbench.vision.shapes`)."""

    image_size: int = 32
    patch_size: int = 4
    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 2
    registers: int = 0
    n_classes: int = 6
    steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: int = 50
    seed: int = 0
    eval_images: int = 512
    eval_every: int = 100
    checkpoint_every: int = 0
    noise: float = 0.0

    HELP: ClassVar[dict[str, str]] = {
        "image_size": "image side in pixels", "patch_size": "patch side in pixels (the grid is image/patch square)",
        "hidden_size": "residual width d_model", "layers": "transformer blocks", "heads": "attention heads per block",
        "mlp_ratio": "MLP width / d_model", "registers": "register tokens appended after the patches (0..64)",
        "n_classes": "shape classes (2..6)", "steps": "optimiser steps (each a fresh batch of generated shapes)",
        "batch_size": "images per step", "lr": "peak AdamW learning rate (linear warmup, cosine decay)",
        "weight_decay": "AdamW weight decay", "warmup": "warmup steps", "seed": "seed of the weights and the data",
        "eval_images": "held-out images for accuracy", "eval_every": "steps between accuracy measurements",
        "checkpoint_every": "also save checkpoints/step-N every N steps (0: final weights only)",
        "noise": "std of Gaussian pixel noise added to the shapes"}

    def validate(self) -> ViTTrainConfig:
        from workbench.core.positions import check_registers

        check_range("image size", self.image_size, 8, 512)
        check_range("patch size", self.patch_size, 1, self.image_size)
        if self.image_size % self.patch_size:
            raise InputError(f"image size {self.image_size} is not a multiple of the patch size {self.patch_size}")
        check_range("hidden size", self.hidden_size, 8, 4096)
        check_range("layers", self.layers, 1, 64)
        check_range("heads", self.heads, 1, 64)
        if self.hidden_size % self.heads:
            raise InputError(f"hidden size {self.hidden_size} is not divisible by {self.heads} heads")
        check_range("MLP ratio", self.mlp_ratio, 1, 16)
        check_registers(self.registers)
        check_range("shape classes", self.n_classes, 2, 6)
        check_range("steps", self.steps, 1, 10_000_000)
        check_range("batch size", self.batch_size, 1, 65536)
        check_range("warmup steps", self.warmup, 0, self.steps)
        check_range("seed", self.seed, 0, 2**63 - 1)
        check_range("evaluation images", self.eval_images, 1, 1 << 20)
        check_range("eval_every", self.eval_every, 1, 10_000_000)
        check_range("checkpoint_every", self.checkpoint_every, 0, 10_000_000)
        check_number("learning rate", self.lr, low=0.0, low_open=True)
        check_number("weight decay", self.weight_decay, low=0.0)
        check_number("pixel noise", self.noise, low=0.0)
        return self

    @property
    def n_params(self) -> int:
        """Parameters of the ViT classifier this config trains."""
        d, m, grid = self.hidden_size, self.mlp_ratio * self.hidden_size, self.image_size // self.patch_size
        embeddings = 3 * self.patch_size ** 2 * d + d + d + (grid * grid + 1) * d + self.registers * d
        block = 4 * d + 4 * (d * d + d) + (d * m + m) + (m * d + d)
        return embeddings + self.layers * block + 2 * d + d * self.n_classes + self.n_classes

    @property
    def n_tokens(self) -> int:
        return 1 + (self.image_size // self.patch_size) ** 2 + self.registers

    def describe(self) -> str:
        grid = self.image_size // self.patch_size
        return (f"ViT {self.layers} x {self.heads} heads, d={self.hidden_size}, {grid}x{grid} patches of "
                f"{self.patch_size}px, {self.registers} registers; {self.steps} steps x {self.batch_size} "
                f"generated shapes (seed {self.seed})")


VIT_PRESETS: dict[str, ViTTrainConfig] = {
    "shapes-vit": ViTTrainConfig(),
    "shapes-vit-reg4": ViTTrainConfig(registers=4),
}
