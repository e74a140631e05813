"""Train a small LLaVA on generated scenes, on a CPU: the frozen shapes ViT, a trained projector and a tiny Llama.

    >>> summary = train_llava(LLAVA_PRESETS["shapes-llava"], "out/shapes-llava")
    >>> model = zoo.load("out/shapes-llava")                 # back through the zoo (TransformerLens LLaVA adapter)

No multimodal weights are reachable from the package registries, so the zoo's multimodal LM is trained here. It
is a real `LlavaForConditionalGeneration`: the vision tower is the zoo's `shapes-vit` (frozen; its last layer's
patch tokens, [CLS] dropped, are the 64 visual tokens), the projector (Linear-GELU-Linear) and the language model
(a Llama over the byte tokenizer plus `<image>`) start from `torch.manual_seed(seed)` and learn to answer the
four question types of `workbench.multimodal.scenes` (loss on the answer tokens and EOS only). Step t draws its
batch with the seed (seed, t), there is no dropout and AdamW on a CPU is deterministic, so the same config and
thread count give bit-identical weights. The tower is frozen, so its features of the `pool` training scenes
are computed once; each step draws scenes from the pool and a question type for each. Training is resumable: every `checkpoint_every` steps the trainable
weights, the optimiser, the scheduler and the curve go to `<out>.resume/` (atomically), and a run that finds a
checkpoint of the same config continues from it (the result is the same as an uninterrupted run).

The output is a Hugging Face model directory (config.json, model.safetensors, tokenizer) plus `training.json`
(config, loss curve, held-out accuracy per question type, wall time, threads) and the zoo's manifest.
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
from workbench.core.errors import InputError
from workbench.core.progress import progress_bar
from workbench.core.threads import torch_threads
from workbench.multimodal.llava import VIT_TOWER_ARCHITECTURE, image_tokenizer, llava_config
from workbench.multimodal.presets import LlavaTrainConfig
from workbench.multimodal.scenes import QUESTIONS, scenes
from workbench.vision.images import to_model_input

EVAL_SEED = 20261201
TRAINING_LOG = "training.json"
IMAGE_NORM = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}  # what shapes-vit was trained with




def build_model(config: LlavaTrainConfig, tower: Any, tokenizer: Any):
    """A fresh LLaVA (seeded by the caller) whose vision tower holds `tower`'s weights (a ViTModel), frozen."""
    from transformers import LlamaConfig, LlavaForConditionalGeneration

    grid = tower.config.image_size // tower.config.patch_size
    text = LlamaConfig(hidden_size=config.hidden_size, intermediate_size=config.mlp_ratio * config.hidden_size,
                       num_hidden_layers=config.layers, num_attention_heads=config.heads,
                       num_key_value_heads=config.kv_heads, max_position_embeddings=128, tie_word_embeddings=False,
                       vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = type(tower.config).from_dict(tower.config.to_dict())
    if -config.feature_layer > vision.num_hidden_layers:
        raise InputError(f"feature layer {config.feature_layer}: {config.vision} has {vision.num_hidden_layers} blocks, "
                         f"allowed -{vision.num_hidden_layers}..-1")
    llava = llava_config(vision, text, tokenizer.convert_tokens_to_ids("<image>"), grid * grid, config.feature_layer)
    llava.sinkbench_image_norm = IMAGE_NORM
    model = LlavaForConditionalGeneration(llava)
    missing, unexpected = model.model.vision_tower.load_state_dict(tower.state_dict(), strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        raise InputError(f"the {config.vision} weights do not fit the LLaVA vision tower: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    model.model.vision_tower.requires_grad_(False)
    model.config.architectures = [VIT_TOWER_ARCHITECTURE]
    return model


def encode_batch(tokenizer: Any, image_token_id: int, n_image_tokens: int, questions: list[str], answers: list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [b, T], labels [b, T]) of [BOS] [<image> x N] question answer EOS, right-padded; labels are
    -100 except on the answer and its EOS."""
    rows, targets = [], []
    for question, answer in zip(questions, answers):
        prompt = [tokenizer.bos_token_id] + [image_token_id] * n_image_tokens + \
            tokenizer(question, add_special_tokens=False)["input_ids"]
        reply = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(prompt + reply)
        targets.append([-100] * len(prompt) + reply)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, target) in enumerate(zip(rows, targets)):
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, :len(target)] = torch.tensor(target)
    return ids, labels


def draw(config: LlavaTrainConfig, pool: Any, step: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Step `step`'s batch: scene indices into the pool and a random question type (with its answer) for each,
    drawn with the seed (seed, step)."""
    rng = np.random.default_rng((config.seed, step))
    index = rng.integers(0, len(pool), size=config.batch_size)
    kinds = list(QUESTIONS.values())
    chosen = [kinds[k] for k in rng.integers(0, len(kinds), size=config.batch_size)]
    return index, [q.text for q in chosen], [q.answer(pool, int(i)) for i, q in zip(index, chosen)]


@torch.no_grad()
def tower_features(model: Any, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[n, N, d_vision]: what the frozen tower hands the projector (get_image_features before the projector:
    the selected layer's hidden states, [CLS] dropped)."""
    tower, cfg = model.model.vision_tower, model.config
    out = []
    for start in range(0, len(pixels), batch_size):
        hidden = tower(pixels[start:start + batch_size], output_hidden_states=True).hidden_states
        out.append(hidden[cfg.vision_feature_layer][:, 1:])
    return torch.cat(out)


def mixed_embeddings(model: Any, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The LM's input embeddings: token embeddings, projected tower features at the image slots (LlavaModel's
    own computation, with the frozen tower's features computed once)."""
    embeds = model.model.get_input_embeddings()(ids)
    projected = model.model.multi_modal_projector(features)
    slots = (ids == model.config.image_token_id)[..., None]
    return embeds.masked_scatter(slots, projected.to(embeds.dtype))


@torch.no_grad()
def accuracy_per_question(model: Any, tokenizer: Any, n: int, size: int) -> dict[str, float]:
    """Held-out accuracy per question type (EVAL_SEED scenes, the same for every seed): the right answer's first
    token has the largest logit among its question's candidates at the last question position."""
    was_training = model.training
    model.eval()
    out = {}
    image_token_id, n_image_tokens = model.config.image_token_id, model.config.image_seq_length
    scene = scenes(n, size=size, seed=EVAL_SEED)
    pixels = to_model_input(scene.pixels, IMAGE_NORM["mean"], IMAGE_NORM["std"])
    for q in QUESTIONS.values():
        answers = [q.answer(scene, i) for i in range(n)]
        ids, _ = encode_batch(tokenizer, image_token_id, n_image_tokens, [q.text] * n, answers)
        prompt_length = 1 + n_image_tokens + len(tokenizer(q.text, add_special_tokens=False)["input_ids"])
        logits = model(input_ids=ids[:, :prompt_length], pixel_values=pixels).logits[:, -1]
        candidates = [tokenizer(a, add_special_tokens=False)["input_ids"][0] for a in q.answers]
        chosen = logits[:, candidates].argmax(-1)
        right = torch.tensor([q.answers.index(a) for a in answers])
        out[q.name] = float((chosen == right).float().mean())
    model.train(was_training)
    return out


def _schedule(config: LlavaTrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("model.vision_tower.")}


def train_llava(config: LlavaTrainConfig, out: str | Path, threads: int | None = 1, progress: bool = True,
                log: Callable[[str], None] = print, stop_after: int | None = None) -> dict:
    """Train, then write a zoo-loadable model directory at `out`; returns the training summary.

        >>> train_llava(dataclasses.replace(LLAVA_PRESETS["shapes-llava"], steps=50), "out/quick-llava")

    One thread by default (bit-identical weights on any machine). `stop_after` ends the run after that many
    steps, leaving only the resume checkpoint (how the resume test interrupts a run)."""
    from workbench.zoo import write_manifest
    from workbench.zoo.cards import TRAINED
    from workbench.zoo.fetch import fetch
    from workbench.zoo.load import hf_reference
    from workbench.zoo.tiny import tiny_tokenizer

    config = config.validate()
    out = Path(out)
    resume_dir = out.with_name(out.name + ".resume")
    make_parent(out)
    threads_in_use = contextlib.ExitStack()
    threads_in_use.enter_context(torch_threads(threads))  # restored in the `finally` below
    started = time.perf_counter()
    try:
        remove_stale_temporaries(out)
        if config.vision in TRAINED:
            fetch(config.vision, log=log)  # trained first when missing (`sinkbench models fetch --all` order)
        tower = hf_reference(config.vision)[0].vit  # the frozen ViT (without its classifier head)
        size = tower.config.image_size
        tokenizer = image_tokenizer(tiny_tokenizer())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = build_model(config, tower, tokenizer).train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(config))
        curve: list[dict] = []
        first, spent = 1, 0.0
        state = _load_resume(resume_dir, config)
        if state is not None:
            model.load_state_dict(state["weights"], strict=False)
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            curve, first, spent = state["curve"], state["step"] + 1, state["seconds"]
            log(f"  resuming {out.name} from step {state['step']} ({resume_dir})")
        running: list[float] = []
        image_token_id, n_image_tokens = model.config.image_token_id, model.config.image_seq_length
        last = config.steps if stop_after is None else min(config.steps, stop_after)
        pool = scenes(config.pool, size=size, seed=(config.seed, 0))
        features = tower_features(model, to_model_input(pool.pixels, IMAGE_NORM["mean"], IMAGE_NORM["std"]))
        for step in progress_bar(range(first, last + 1), desc="train shapes-llava", enabled=progress):
            index, questions, answers = draw(config, pool, step)
            ids, labels = encode_batch(tokenizer, image_token_id, n_image_tokens, questions, answers)
            embeds = mixed_embeddings(model, ids, features[torch.from_numpy(index)])
            loss = model(inputs_embeds=embeds, labels=labels).loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            scheduler.step()
            running.append(loss.item())
            if step % config.eval_every == 0 or step == config.steps:
                entry = {"step": step, "loss": float(np.mean(running)),
                         "accuracy": accuracy_per_question(model, tokenizer, min(config.eval_images, 128), size),
                         "seconds": round(spent + time.perf_counter() - started, 2)}
                running = []
                curve.append(entry)
                log(f"  step {step:>6}: loss {entry['loss']:.4f}  held-out accuracy "
                    + " ".join(f"{k} {v:.2f}" for k, v in entry["accuracy"].items()))
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step != config.steps:
                _save_resume(resume_dir, config, model, optimiser, scheduler, curve, step,
                             spent + time.perf_counter() - started)
        if last < config.steps:
            return {"stopped_at": last}
        seconds = spent + time.perf_counter() - started
        final = accuracy_per_question(model, tokenizer, config.eval_images, size)
        summary = {"config": {k: v for k, v in dataclasses.asdict(config).items()}, "curve": curve,
                   "final_accuracy": final, "final_loss": curve[-1]["loss"], "train_seconds": round(seconds, 1),
                   "threads": torch.get_num_threads(), "eval_seed": EVAL_SEED, "eval_images": config.eval_images}
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp") as tmp:
            staging = Path(tmp) / "model"
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / TRAINING_LOG).write_text(json.dumps(summary, indent=2))
            write_manifest(staging, name=out.name, source=f"trained here: {config.describe()}",
                           licence="MIT (weights trained by Sink Workbench)", extra={"training": summary})
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
        shutil.rmtree(resume_dir, ignore_errors=True)
    finally:
        threads_in_use.close()
    log(f"  trained in {summary['train_seconds']:.1f} s on {summary['threads']} threads: held-out accuracy "
        + ", ".join(f"{k} {v:.3f}" for k, v in final.items()) + f"; saved to {out}")
    return summary


def _save_resume(directory: Path, config: LlavaTrainConfig, model: Any, optimiser: Any, scheduler: Any,
                 curve: list[dict], step: int, seconds: float) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(directory.name + f".{os.getpid()}.tmp")
    tmp.mkdir(exist_ok=True)
    torch.save({"config": dataclasses.asdict(config), "weights": _trainable(model), "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(), "curve": curve, "step": step, "seconds": seconds},
               tmp / "state.pt")
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def _load_resume(directory: Path, config: LlavaTrainConfig) -> dict | None:
    path = directory / "state.pt"
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    if state.get("config") != dataclasses.asdict(config):
        return None  # another config's checkpoint: start afresh
    return state
