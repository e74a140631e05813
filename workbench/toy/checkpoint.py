"""Toy checkpoints: safetensors weights that remember their architecture, and loading a run directory.

    >>> model = load_toy("runs/bb-softmax")              # what workbench.zoo.load("toy:runs/bb-softmax") does
    >>> early = load_toy("runs/bb-softmax@200")          # the snapshot taken at step 200
    >>> load_weights(ToyTransformer(cfg), "runs/bb-softmax/model.safetensors")   # refuses another architecture

Every weights file carries its `ToyConfig` (attention variant included) in the safetensors metadata, so a
checkpoint is never loaded into a model of another variant: softmax, softmax1, sigmoid and ReLU models
have identical parameter names and shapes and would otherwise load into each other silently.
The optimizer state is stored as safetensors too (no pickle anywhere), for exact resumption.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from workbench.core.cache import atomic_path, sha256_file
from workbench.core.errors import InputError
from workbench.toy.model import ToyConfig, ToyTransformer

FORMAT = "sinkbench-toy/1"
RUN_FILE = "run.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
SNAPSHOTS = "checkpoints"
TOKENIZER_DIR = "tokenizer"


def snapshot_path(directory: Path, step: int) -> Path:
    return Path(directory) / SNAPSHOTS / f"step_{step:06d}.safetensors"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Readers see the old checkpoint or the new one; an interrupted write leaves no temporary file."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_weights(model: ToyTransformer, path: str | Path, **extra: Any) -> Path:
    """Write the model's parameters with its config (and `extra`, e.g. step, task) in the metadata."""
    path = Path(path)
    metadata = {"format": FORMAT, "config": json.dumps(model.cfg.to_dict()),
                **{k: json.dumps(v) for k, v in extra.items()}}
    _atomic_save(dict(model.named_parameters()), path, metadata)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise InputError(f"{path} is not a readable safetensors file: {exc}") from exc
    if raw.get("format") != FORMAT:
        raise InputError(f"{path} is not a workbench.toy checkpoint (format {raw.get('format')!r})")
    return {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}


def load_weights(model: ToyTransformer, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint into `model` after checking that it was saved by the same architecture.

    Raises InputError naming the differences (the attention variant first) instead of loading the
    weights of, say, a softmax model into a ReLU-attention one. Returns the checkpoint's metadata.
    """
    from safetensors.torch import load_file

    meta = read_metadata(path)
    saved, wanted = meta["config"], model.cfg.to_dict()
    if saved.get("attention") != wanted["attention"]:
        raise InputError(f"checkpoint {path} is a {saved.get('attention')!r}-attention model; it cannot be loaded "
                         f"into a model configured for {wanted['attention']!r} attention")
    differences = [f"{k}: checkpoint {saved.get(k)!r}, model {wanted[k]!r}" for k in wanted if saved.get(k) != wanted[k]]
    if differences:
        raise InputError(f"checkpoint {path} has another architecture ({'; '.join(differences)})")
    state = load_file(str(path), device=str(next(model.parameters()).device))
    missing = set(dict(model.named_parameters())) ^ set(state)
    if missing:
        raise InputError(f"checkpoint {path} does not match the model's parameters: {sorted(missing)}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(state[name])
    return meta


def save_optimizer(optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """AdamW state (per-parameter moments and step) as safetensors; the hyper-parameters in the metadata."""
    state = optimizer.state_dict()
    tensors = {f"{index}.{key}": value for index, slots in state["state"].items()
               for key, value in slots.items() if isinstance(value, torch.Tensor)}
    _atomic_save(tensors, Path(path), {"format": FORMAT, "param_groups": json.dumps(state["param_groups"])})


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    from safetensors.torch import load_file

    path = Path(path)
    read_metadata(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        groups = json.loads(handle.metadata()["param_groups"])
    flat = load_file(str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _split_step(directory: str | Path) -> tuple[Path, int | None]:
    """'runs/x@200' -> (runs/x, 200) when runs/x@200 is not itself a directory."""
    text = str(directory)
    path = Path(text).expanduser()
    if not path.exists() and "@" in text:
        base, _, step = text.rpartition("@")
        if step.isdigit():
            return Path(base).expanduser(), int(step)
    return path, None


def load_toy(directory: str | Path, device: str | None = None, *, step: int | None = None,
             variant: str | None = None) -> ToyTransformer:
    """A trained toy from its run directory (`sinkbench train --out DIR`), ready for probes and interventions.

        >>> model = load_toy("runs/bb-softmax")            # model.sinkbench is its ModelInfo, model.variant its attention
        >>> model = load_toy("runs/bb-softmax@200")        # a snapshot (or step=200)

    `variant`, when given, must match the run's attention variant (a guard for scripts that expect one).
    The model is in eval mode, on `device` (default cpu).
    """
    from transformers import AutoTokenizer

    from workbench.core import offline as _offline

    path, at = _split_step(directory)
    step = step if step is not None else at
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise InputError(f"{path} is not a toy run directory (no {RUN_FILE}); train one with `sinkbench train --out {path}`")
    run = json.loads(run_file.read_text())
    cfg = ToyConfig(**run["model"])
    if variant is not None and variant != cfg.attention:
        raise InputError(f"{path} holds a {cfg.attention!r}-attention model, not {variant!r}")
    weights = path / WEIGHTS if step is None else snapshot_path(path, step)
    if not weights.is_file():
        saved = sorted(int(p.stem.split("_")[1]) for p in (path / SNAPSHOTS).glob("step_*.safetensors"))
        raise InputError(f"{weights} does not exist; snapshots of this run: {saved or 'none'}")
    model = ToyTransformer(cfg)
    meta = load_weights(model, weights)
    model.to(device or "cpu").eval()
    _offline.quiet_transformers()
    model.tokenizer = AutoTokenizer.from_pretrained(path / TOKENIZER_DIR)
    done = meta.get("step")
    model.sinkbench = describe_toy(cfg, f"toy:{directory}", model.tokenizer, sha256_file(weights),
                                   f"workbench.toy variant={cfg.attention} task={run['train']['task']} "
                                   f"corpus={run['train']['corpus']} seed={run['train']['seed']} step={done} ({path})")
    return model


def describe_toy(cfg: ToyConfig, name: str, tokenizer: Any, weights_sha256: str | None = None,
                 source: str = "workbench.toy") -> Any:
    """The ModelInfo of a toy of architecture `cfg` (what `load_toy` attaches as `model.sinkbench`).

        >>> model.sinkbench = describe_toy(model.cfg, "toy:untrained", workbench.toy.tasks.tokenizer())
    """
    from workbench.core.modelinfo import ModelInfo

    return ModelInfo(
        name=name,
        family="causal-lm",
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_heads,
        d_head=cfg.d_head,
        d_model=cfg.d_model,
        n_ctx=cfg.n_ctx,
        vocab_size=cfg.d_vocab,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=None,
        cls_token_id=None,
        sep_token_id=None,
        positional=cfg.positional,
        layer_types=None,
        sliding_window=None,
        weights_sha256=weights_sha256,
        source=source,
        tokenizer=tokenizer,
        n_experts=cfg.n_experts,
        top_k=cfg.top_k if cfg.n_experts else 0,
    )
