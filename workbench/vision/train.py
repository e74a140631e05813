"""Train a small ViT (with or without register tokens) on generated shapes, deterministically, on a CPU.

    >>> summary = train_vit(VIT_PRESETS["shapes-vit-reg4"], "out/shapes-vit-reg4")
    >>> model = zoo.load("out/shapes-vit-reg4")                                   # back through the zoo

No pretrained ViT weights are reachable from the package registries, so the zoo's image models are
trained here. Every step draws a fresh batch from `workbench.vision.shapes` with the seed sequence
(seed, step), the weights start from `torch.manual_seed(seed)`, there is no dropout, and AdamW on a
CPU is deterministic: the same config and thread count give bit-identical weights. Accuracy is
measured every `eval_every` steps on a fixed held-out set (`EVAL_SEED`, the same for every seed, so
models are compared on the same images).

The output directory is a Hugging Face model directory (config.json, model.safetensors,
preprocessor_config.json) plus `training.json` (config, loss and accuracy curve, wall time, threads)
and the zoo's manifest (weights SHA-256); with `checkpoint_every`, `checkpoints/step-NNNNNN/` hold the
weights along the way (each loadable through the zoo: norms vs training step, Darcet et al. Fig. 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.core.cache import make_parent, remove_stale_temporaries
from workbench.core.progress import progress_bar
from workbench.core.threads import torch_threads
from workbench.vision.images import to_model_input
from workbench.vision.presets import ViTTrainConfig
from workbench.vision.shapes import SHAPES, shapes
from workbench.vision.vit import ImagePreprocessing, build_classifier

EVAL_SEED = 20240917
PREPROCESSING = ImagePreprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
TRAINING_LOG = "training.json"


def vit_config(config: ViTTrainConfig):
    """The transformers ViTConfig of a ViTTrainConfig (eager attention, no dropout, `num_register_tokens`)."""
    from transformers import ViTConfig

    labels = {i: name for i, name in enumerate(SHAPES[:config.n_classes])}
    vit = ViTConfig(image_size=config.image_size, patch_size=config.patch_size, num_channels=3,
                    hidden_size=config.hidden_size, num_hidden_layers=config.layers,
                    num_attention_heads=config.heads, intermediate_size=config.mlp_ratio * config.hidden_size,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=config.n_classes,
                    id2label=labels, label2id={v: k for k, v in labels.items()}, attn_implementation="eager")
    vit.num_register_tokens = config.registers
    return vit


def eval_set(config: ViTTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    pixels, labels, _ = shapes(config.eval_images, config.image_size, EVAL_SEED, config.n_classes, config.noise)
    return to_model_input(pixels), torch.from_numpy(labels)


@torch.no_grad()
def accuracy(model: Any, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(pixel_values=inputs[start:start + batch_size]).logits
        correct += int((logits.argmax(-1) == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(labels)


def _schedule(config: ViTTrainConfig) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to 0."""
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def train_vit(config: ViTTrainConfig, out: str | Path, threads: int | None = 1, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Train, then write a zoo-loadable model directory at `out`; returns the training summary.

        >>> train_vit(dataclasses.replace(VIT_PRESETS["shapes-vit"], steps=50), "out/quick-vit")

    One thread by default: the weights are then bit-identical on any machine (the order of a parallel
    reduction depends on the thread count), and these small matrices gain little from more threads, while
    on a loaded machine OpenMP threads spin against other processes. `threads=None` keeps torch's setting.
    """
    from workbench.zoo import write_manifest

    config = config.validate()
    out = Path(out)
    make_parent(out)
    threads_in_use = contextlib.ExitStack()
    threads_in_use.enter_context(torch_threads(threads))  # restored in the `finally` below
    started = time.perf_counter()
    try:
        remove_stale_temporaries(out)  # the staging directory of a run that was killed
        with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(
                dir=out.parent, prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp") as tmp:
            staging = Path(tmp) / "model"
            torch.manual_seed(config.seed)
            model = build_classifier(vit_config(config)).train()
            optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                          betas=(0.9, 0.98))
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(config))
            held_out = eval_set(config)
            curve: list[dict] = []
            running = []
            for step in progress_bar(range(1, config.steps + 1), desc=f"train-vit ({config.registers} registers)",
                                     enabled=progress):
                pixels, labels, _ = shapes(config.batch_size, config.image_size, (config.seed, step),
                                           config.n_classes, config.noise)
                logits = model(pixel_values=to_model_input(pixels)).logits
                loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                scheduler.step()
                running.append(loss.item())
                if step % config.eval_every == 0 or step == config.steps:
                    entry = {"step": step, "loss": float(np.mean(running)), "accuracy": accuracy(model, *held_out),
                             "seconds": round(time.perf_counter() - started, 2)}
                    running = []
                    curve.append(entry)
                    log(f"  step {step:>6}: loss {entry['loss']:.4f}  held-out accuracy {entry['accuracy']:.3f}")
                if config.checkpoint_every and step % config.checkpoint_every == 0 and step != config.steps:
                    _save(model, staging / "checkpoints" / f"step-{step:06d}", config, None)
            seconds = time.perf_counter() - started
            summary = {"config": dataclasses.asdict(config), "curve": curve, "final_accuracy": curve[-1]["accuracy"],
                       "final_loss": curve[-1]["loss"], "train_seconds": round(seconds, 1),
                       "threads": torch.get_num_threads(), "eval_seed": EVAL_SEED, "eval_images": config.eval_images}
            _save(model, staging, config, summary)
            write_manifest(staging, name=out.name, source=f"trained here: {config.describe()}",
                           licence="MIT (weights trained by Sink Workbench)", extra={"training": summary})
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
    finally:
        threads_in_use.close()
    log(f"  trained in {summary['train_seconds']:.1f} s on {summary['threads']} threads: held-out accuracy "
        f"{summary['final_accuracy']:.3f}; saved to {out}")
    return summary


def _save(model: Any, directory: Path, config: ViTTrainConfig, summary: dict | None) -> None:
    model.save_pretrained(directory)  # config.json (with num_register_tokens) + model.safetensors
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSING.to_json(config.image_size), indent=2))
    if summary is not None:
        (directory / TRAINING_LOG).write_text(json.dumps(summary, indent=2))

