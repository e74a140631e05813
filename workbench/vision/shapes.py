"""Procedurally generated images: one shape on a plain background, so every image has background patches.

    >>> pixels, labels, masks = shapes(8, size=32, seed=0)     # [8, 32, 32, 3] in [0, 1], [8], [8, 32, 32] bool
    >>> SHAPES[labels[0]]                                       # 'circle'

No pretrained ViT weights are reachable from the package registries, so the small ViTs of the zoo are
trained here on these images (`workbench.vision.train`). The background is one flat, dark colour per
image and the shape is brighter by at least 0.35 in every channel, so "background patch" has an
exact meaning: a patch that contains no shape pixel (Darcet et al. 2024 find the high-norm artifact
tokens of large ViTs in such redundant background patches). Generation is vectorised numpy and fully
determined by the seed.
"""

from __future__ import annotations

import numpy as np

from workbench.core.errors import InputError, check_range

SHAPES = ("square", "circle", "triangle", "cross", "ring", "diamond")
MIN_CONTRAST = 0.35  # every channel of the shape is at least this much brighter than the background


def _inside(kind: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean mask of one shape class; dx, dy [n, H, W] pixel-centre offsets, r [n, 1, 1] the radius."""
    name = SHAPES[kind]
    if name == "square":
        return (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    if name == "circle":
        return dx ** 2 + dy ** 2 <= r ** 2
    if name == "triangle":  # pointing up: apex at dy = -r, base at dy = +r
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if name == "cross":
        arm = r / 3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if name == "ring":
        d2 = dx ** 2 + dy ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    return np.abs(dx) + np.abs(dy) <= r  # diamond


def shapes(n: int, size: int = 32, seed: int | tuple[int, ...] = 0, n_classes: int = len(SHAPES), noise: float = 0.0,
           min_radius: float | None = None, max_radius: float | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` images of one shape each on a plain background.

    Returns (pixels [n, size, size, 3] float32 in [0, 1], labels [n] int64 (index into SHAPES),
    object masks [n, size, size] bool). `seed` may be a tuple (the trainer draws step t with (seed, t)). The radius is drawn from [size/6, size/3.5] unless given;
    `noise` adds Gaussian pixel noise of that standard deviation (clipped to [0, 1]).
    """
    check_range("number of images", n, 1, 1 << 24)
    check_range("image size", size, 8, 1024)
    check_range("number of shape classes", n_classes, 2, len(SHAPES))
    if noise < 0:
        raise InputError(f"noise = {noise} must be >= 0")
    rng = np.random.default_rng(seed)
    low = size / 6 if min_radius is None else min_radius
    high = size / 3.5 if max_radius is None else max_radius
    if not 1 <= low <= high <= size / 2 - 1:
        raise InputError(f"shape radius range [{low}, {high}] does not fit a {size} x {size} image")
    labels = rng.integers(0, n_classes, size=n)
    radius = rng.uniform(low, high, size=n)
    centre = rng.uniform(radius[:, None], size - radius[:, None], size=(n, 2))  # the shape stays inside
    # a dark, slightly tinted background and a brighter shape of any hue: every channel of the shape is at
    # least MIN_CONTRAST above the background's, so the shape is visible to a linear patch embedding
    grey = rng.uniform(0.0, 0.4, size=(n, 1))
    background = np.clip(grey + rng.uniform(-0.05, 0.05, size=(n, 3)), 0.0, 1.0)
    foreground = background + MIN_CONTRAST + rng.uniform(0.0, 1.0, size=(n, 3)) * (1.0 - MIN_CONTRAST - background)
    grid = np.arange(size) + 0.5
    dx = grid[None, None, :] - centre[:, 0, None, None]
    dy = grid[None, :, None] - centre[:, 1, None, None]
    r = radius[:, None, None]
    masks = np.zeros((n, size, size), dtype=bool)
    for kind in range(n_classes):
        rows = labels == kind
        if rows.any():
            masks[rows] = _inside(kind, dx[rows], dy[rows], r[rows])
    pixels = np.where(masks[..., None], foreground[:, None, None, :], background[:, None, None, :])
    if noise:
        pixels = np.clip(pixels + rng.normal(0.0, noise, size=pixels.shape), 0.0, 1.0)
    return pixels.astype(np.float32), labels.astype(np.int64), masks


def background_patches(pixels: np.ndarray, patch_size: int, tolerance: float = 0.1) -> np.ndarray:
    """Which patches are background, read from the image itself: [n, H/p, W/p] bool.

    The background colour of each image is the per-channel median of its border pixels; a patch is
    background when every one of its pixels is within `tolerance` of that colour in every channel
    (pixels in [0, 1], [n, H, W, C]). On the generated shapes (flat background, contrast >= 0.35) this
    is exact; on photographs it is a heuristic for flat, low-information regions.
    """
    if pixels.ndim != 4:
        raise InputError(f"images must be [n, H, W, C], got shape {tuple(pixels.shape)}")
    n, height, width, channels = pixels.shape
    if height % patch_size or width % patch_size:
        raise InputError(f"image size {height} x {width} is not a multiple of the patch size {patch_size}")
    if not 0 <= tolerance < 1:
        raise InputError(f"background tolerance = {tolerance} must be in [0, 1)")
    border = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], axis=1)  # [n, 2H+2W, C]
    colour = np.median(border, axis=1)  # [n, C]
    close = (np.abs(pixels - colour[:, None, None, :]) <= tolerance).all(axis=-1)  # [n, H, W]
    gh, gw = height // patch_size, width // patch_size
    blocks = close.reshape(n, gh, patch_size, gw, patch_size)
    return blocks.all(axis=(2, 4))


def object_patches(masks: np.ndarray, patch_size: int) -> np.ndarray:
    """The ground truth of the generator: [n, H/p, W/p] bool, True where a patch holds a shape pixel."""
    n, height, width = masks.shape
    return masks.reshape(n, height // patch_size, patch_size, width // patch_size, patch_size).any(axis=(2, 4))
