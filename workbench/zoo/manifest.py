"""Checksums of cached models: what was built is what is loaded.

    >>> from workbench.zoo import manifest
    >>> manifest.check("smollm2-135m")["weights_sha256"]

Each cached model directory holds `model.safetensors` and a manifest recording its SHA-256 (and a size +
mtime stamp, so an unchanged file is not re-hashed at every load; `full=True` re-hashes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from workbench.core.cache import atomic_write_text, cache_dir, sha256_file
from workbench.core.errors import ModelNotAvailable

MANIFEST = "sinkbench-manifest.json"
WEIGHTS = "model.safetensors"


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_cached(name: str) -> bool:
    return (model_dir(name) / MANIFEST).is_file()


def write_manifest(directory: Path, name: str, source: str, licence: str, extra: dict | None = None) -> dict:
    """Record the SHA-256 (and the size + mtime stamp) of `directory`'s weights: what `verify` checks."""
    from workbench.core.results import package_versions  # pandas: not for `sinkbench models`

    weights = Path(directory) / WEIGHTS
    stat = weights.stat()
    manifest = {"name": name, "source": source, "licence": licence, **(extra or {}),
                "weights_sha256": sha256_file(weights), "weights_size": stat.st_size,
                "weights_mtime_ns": stat.st_mtime_ns, "built_with": package_versions()}
    atomic_write_text(Path(directory) / MANIFEST, json.dumps(manifest, indent=2))
    return manifest


def check(name: str, full: bool = False, missing: str | None = None) -> dict:
    """Check a cached model's weights against the SHA-256 recorded when it was built.

    Without `full`, an unchanged size and mtime (the stamp written after the last full check) is
    accepted without re-hashing; any change triggers a full hash. Raises ModelNotAvailable on mismatch, or
    with `missing` (the card's own hint) when the model is not in the cache.
    """
    directory = model_dir(name)
    fix = f"run `sinkbench models fetch {name} --force`"
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ModelNotAvailable(missing or f"model {name!r} is not fetched yet: run `sinkbench models fetch {name}`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["weights_size"], manifest["weights_mtime_ns"], manifest["weights_sha256"]  # noqa: B018
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ModelNotAvailable(f"the manifest of {name!r} is corrupt ({exc}); {fix}") from None
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ModelNotAvailable(f"{weights} is missing; {fix}")
    stat = weights.stat()
    stamp_ok = stat.st_size == manifest["weights_size"] and stat.st_mtime_ns == manifest["weights_mtime_ns"]
    if full or not stamp_ok or os.environ.get("SINKBENCH_VERIFY") == "full":
        got = sha256_file(weights)
        if got != manifest["weights_sha256"]:
            raise ModelNotAvailable(
                f"checksum mismatch for {weights}: SHA-256 {got}, expected {manifest['weights_sha256']}; "
                f"refusing to load it; {fix}"
            )
        manifest["weights_mtime_ns"] = stat.st_mtime_ns
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2))
    return manifest
