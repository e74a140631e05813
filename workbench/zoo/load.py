"""Loading: a name becomes a TransformerBridge with its ModelInfo attached, offline.

    >>> from workbench import zoo
    >>> model = zoo.load("smollm2-135m")        # fetched once by `sinkbench models fetch smollm2-135m`

Names the zoo knows:
- bundled real models (workbench.zoo.cards.BUNDLED): `smollm2-135m` (default), `minilm-l6`, `gemma3-270m`;
- models trained here (`shapes-vit`, `shapes-vit-reg4`: small ViTs trained on generated shapes);
- `tiny-*`: random models built from a config (no download), for tests; `@SEED` changes the seed;
- a name with a registered prefix (`toy:DIR`: a small transformer trained by `sinkbench train`);
- a local Hugging Face model directory, or a Hugging Face id already in the local HF cache
  (SINKBENCH_ONLINE=1 allows downloads).

Families above the zoo plug in through two tables, filled by their registration (workbench.core.families):
`PREFIX_LOADERS` (a name prefix -> load(rest, device)) and `CONFIG_LOADERS` (an HF config matcher ->
load(source, config, dtype, local_files_only) -> (hf_model, preprocessing)).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core import offline
from workbench.core.cache import cache_dir
from workbench.core.errors import InputError, ModelNotAvailable
from workbench.core.families import ensure_registered
from workbench.core.modelinfo import describe
from workbench.zoo.cards import BUNDLED, DEFAULT_MODEL, TINY, TRAINED, card, unknown_model_message
from workbench.zoo.fetch import verify
from workbench.zoo.manifest import model_dir
from workbench.zoo.tiny import build_tiny, tiny_seed

# "toy:" -> load(rest of the name, device=...): models that are not transformers models
PREFIX_LOADERS: dict[str, Callable[..., Any]] = {}
# (matches(hf config), load(source, config, dtype, local_files_only=...) -> (hf_model, tokenizer or preprocessing))
CONFIG_LOADERS: list[tuple[Callable[[Any], bool], Callable[..., tuple[Any, Any]]]] = []


def register_prefix(prefix: str, loader: Callable[..., Any]) -> None:
    PREFIX_LOADERS.setdefault(prefix, loader)


def register_config_loader(matches: Callable[[Any], bool], loader: Callable[..., tuple[Any, Any]]) -> None:
    if (matches, loader) not in CONFIG_LOADERS:
        CONFIG_LOADERS.append((matches, loader))


def _config_loader(config: Any) -> Callable[..., tuple[Any, Any]] | None:
    return next((loader for matches, loader in CONFIG_LOADERS if matches(config)), None)


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
    device = check_device(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    ensure_registered()
    for prefix, loader in PREFIX_LOADERS.items():
        if isinstance(name, str) and name.startswith(prefix):  # e.g. toy:DIR (workbench.toy)
            return loader(name[len(prefix):], device=device)
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


def check_device(device: Any) -> str:
    """A device string this torch build can use now (`cpu`, `cuda`, `cuda:1`, `mps`, ...): an invalid string
    or one that is not available here is one InputError naming what is available."""
    import torch

    available = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                           if torch.cuda.is_available() else [])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.append("mps")
    hint = f"available here: {', '.join(available)}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r} is not a device name ({hint})") from None
    backend = getattr(torch, parsed.type, None) if parsed.type != "cpu" else None
    if parsed.type == "cuda":
        ok = torch.cuda.is_available() and (parsed.index is None or parsed.index < torch.cuda.device_count())
    elif parsed.type == "mps":
        ok = mps is not None and mps.is_available()
    elif parsed.type == "cpu":
        ok = parsed.index in (None, 0)
    else:
        is_available = getattr(backend, "is_available", None)
        ok = bool(is_available and is_available())
    if not ok:
        raise InputError(f"device {device!r} is not available in this torch build ({torch.__version__}); {hint}")
    return str(device)


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
    ensure_registered()
    base = name.split("@", 1)[0]
    if base in TINY:
        seed = tiny_seed(name)
        hf_model, tokenizer = build_tiny(base, seed)
        return hf_model.to(dtype), tokenizer, describe(name, hf_model, tokenizer, None, TINY[base].source), base
    if name in BUNDLED or name in TRAINED:
        model_card = card(name)
        manifest = verify(name)
        hf_model, tokenizer = _from_directory(model_dir(name), dtype, model_card.architecture)
        model_info = describe(name, hf_model, tokenizer, manifest["weights_sha256"], model_card.source)
        model_info.default_prepend_bos = model_card.prepend_bos
        return hf_model, tokenizer, model_info, model_card.hf_id
    path = Path(name).expanduser()
    if path.is_dir():
        hf_model, tokenizer = _from_directory(path, dtype, None)
        return hf_model, tokenizer, describe(name, hf_model, tokenizer, None, f"local directory {path}"), name
    if "/" in name and not name.startswith((".", "/", "~")):
        hf_model, tokenizer = _from_hub(name, dtype)
        return hf_model, tokenizer, describe(name, hf_model, tokenizer, None, f"Hugging Face {name}"), name
    raise ModelNotAvailable(unknown_model_message(name))


def _from_directory(directory: Path, dtype: Any, architecture: str | None):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BertForMaskedLM

    offline.quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(directory)
        family_loader = _config_loader(config)
        if family_loader is not None:  # e.g. ViT / DeiT: the image preprocessing takes the tokenizer's place
            return family_loader(directory, config, dtype)
        tokenizer = _tokenizer_with_bos(AutoTokenizer, directory)
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


def _tokenizer_with_bos(auto: Any, directory: Path) -> Any:
    """The directory's tokenizer, loaded with add_bos_token=True where it names a BOS token: TransformerLens's
    bridge reloads any other such tokenizer that way (get_tokenizer_with_bos), which cost Qwen2.5's 7 MB
    tokenizer a second second-long load. The workbench never relies on it: it tokenises with
    add_special_tokens=False and applies the BOS policy itself."""
    import json

    try:
        config = json.loads((Path(directory) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if config.get("bos_token") and config.get("add_bos_token") is None:
        try:
            return auto.from_pretrained(directory, add_bos_token=True)
        except ValueError:  # a post-processor that cannot express the BOS token: the bridge keeps the plain one
            pass
    return auto.from_pretrained(directory)


def _from_hub(hf_id: str, dtype: Any):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    offline.quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(hf_id, local_files_only=not offline.ONLINE)
        family_loader = _config_loader(config)
        if family_loader is not None:
            return family_loader(hf_id, config, dtype, local_files_only=not offline.ONLINE)
        tokenizer = AutoTokenizer.from_pretrained(hf_id, local_files_only=not offline.ONLINE)
        model = AutoModelForCausalLM.from_pretrained(
            hf_id, dtype=dtype, attn_implementation="eager", local_files_only=not offline.ONLINE
        )
    except OSError as exc:
        hint = ("it is not in the local Hugging Face cache and downloads are off; set SINKBENCH_ONLINE=1 "
                "(before Python starts) to allow them" if not offline.ONLINE else str(exc).splitlines()[0])
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
