"""Train a toy transformer on CPU and log, step by step, whether an attention sink forms.

    >>> model_cfg, train_cfg = preset("default", attention="softmax", steps=1000, seed=0)
    >>> results = train("runs/bb-softmax", model_cfg, train_cfg)       # what `sinkbench train` runs
    >>> results.filter(metric="bos_attention", layer=None).df         # the emergence curve

The question: which attention variants develop a sink on Guo et al. 2024's Bigram-Backcopy task, where
a 1-layer softmax model's head learns to copy after triggers and to park its attention on `<s>` everywhere
else ("dormant"): Attn_<s> ~ 50 % at ~200-250 steps and ~90 % by 1k steps in their runs.

Metrics, logged every `log_every` steps (and at step 0, before any update) on a fixed evaluation batch
of `eval_size` sequences; A is `hook_pattern` [batch, head, q, k], "bigram positions" are the task's
`query_mask` (BB: queries t >= 1 whose token is not a trigger; char-lm: every t >= 1):
- `bos_attention` (per layer/head): mean over bigram positions of A[t, 0], the weight that actually
  multiplies v_<s> (Guo et al.'s Attn_<s>). Unnormalised variants (sigmoid, relu) report the raw weight;
- `bos_share` (per layer/head): mean over bigram positions of A[t, 0] / sum_k A[t, k] (0 for an all-zero
  row), the share of the row's weight on `<s>`; equals `bos_attention` for softmax and gated;
  for sigmoid and relu it is Gu et al.'s "*" proxy (sim / sum sim);
- `sink_slot` (per layer/head; softmax1, sink-logit, kv-bias): mean over bigram positions of the weight
  taken by the extra zero-value slot (`hook_sink`), Gu et al.'s Sink_*;
- `gate` (per layer/head; gated): mean gate value sigmoid(x W_G + b_G) at bigram positions;
- `v_bos_norm`, `v_other_norm` (per layer/head): ||v|| (`hook_v`) at `<s>`, and its mean over t >= 1;
- `resid_bos_norm`, `resid_other_norm` (per layer): ||resid_post|| at `<s>`, and its mean over t >= 1;
- task metrics (`workbench.toy.tasks`): `loss`, `backcopy_risk`, `bigram_risk`, `bigram_loss`;
  `train_loss` is the loss of the minibatch of the last update (MoE toys: with `router_aux_coef` x the
  load-balancing loss of every MoE layer added, Fedus et al. 2021).
Rows without a layer/head summarise: `bos_attention`, `bos_share`, `sink_slot`, `gate`, `v_bos_norm`
average over all heads; `resid_bos_norm`, `resid_other_norm` are those of the last layer and
`resid_ratio` = resid_bos_norm / resid_other_norm (Gu et al.'s massive-activation proxy).

Optimisation follows Guo et al.'s scripts (AdamW, betas (0.9, 0.99), eps 1e-8, weight decay 1e-4, constant
learning rate, cross-entropy over every position, 1 layer x 1 head, d_model 256, learned absolute
positions) except for the batch (32 x 64 tokens instead of 512 x 256) and the learning rate (1e-3 instead
of 3e-4), so that a default run fits a few CPU minutes (`TOY_PRESETS`; run times in the README, "Mitigation lab").

Determinism: the initial weights come from `torch.manual_seed(seed)`; the batch of update s from
`np.random.default_rng([seed, 1, s])` and the evaluation batch from `np.random.default_rng([seed, 2])`,
so a run is a function of its configuration (for a fixed torch build and thread count), and `resume`
continues bit-identically from the last checkpoint (weights, AdamW moments and step are all saved).

A run directory holds: run.json (configuration, identity, progress), task.json (the task, whole for
Bigram-Backcopy), tokenizer/, model.safetensors + optimizer.safetensors (the latest checkpoint),
checkpoints/step_NNNNNN.safetensors (snapshots), curves.jsonl (one line per logged step), curves.csv
(the same, wide) and results.json (tidy Results with provenance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from workbench.core.cache import atomic_write_text
from workbench.core.errors import InputError, check_number, check_range
from workbench.core.results import Results, identity_hash, provenance
from workbench.core.threads import torch_threads
from workbench.toy import checkpoint as ckpt
from workbench.toy.model import ToyConfig, ToyTransformer, check_variant
from workbench.toy.presets import TOY_PRESETS, check_preset  # noqa: F401 (TOY_PRESETS re-exported)
from workbench.toy.tasks import (
    DEFAULT_CORPUS,
    TASK_FILE,
    VOCAB_SIZE,
    Task,
    check_task,
    load_task,
    make_task,
    tokenizer,
)

RUN_KIND = "sinkbench-toy-run"
OWNED = (ckpt.RUN_FILE, TASK_FILE, ckpt.WEIGHTS, ckpt.OPTIMIZER, ckpt.SNAPSHOTS, ckpt.TOKENIZER_DIR,
         "curves.jsonl", "curves.csv", "results.json")


@dataclasses.dataclass
class ToyTrainConfig:
    """How to train (the architecture is a `ToyConfig`)."""

    task: str = "bigram-backcopy"
    corpus: str = DEFAULT_CORPUS
    steps: int = 1000
    seed: int = 0
    batch_size: int = 32
    seq_len: int = 64  # tokens per sequence, <s> included; the model's n_ctx
    n_triggers: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.99
    adam_eps: float = 1e-8
    log_every: int = 10
    eval_size: int = 64
    checkpoint_every: int = 250  # latest checkpoint + snapshot every this many steps (and at the end)
    router_aux_coef: float = 0.0  # MoE toys: weight of the load-balancing loss (Fedus et al. 2021 use 0.01)

    def __post_init__(self) -> None:
        check_task(self.task)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps <= 0:
            raise InputError(f"steps must be a positive integer, got {self.steps!r}")
        check_range("seed", self.seed, 0, 2**63 - 1)
        check_range("batch size", self.batch_size, 1, 1 << 16)
        check_range("sequence length", self.seq_len, 4, 4096)
        check_range("log_every", self.log_every, 1, 1 << 30)
        check_range("eval_size", self.eval_size, 1, 1 << 16)
        check_range("checkpoint_every", self.checkpoint_every, 1, 1 << 30)
        check_number("learning rate", self.lr, low=0.0, low_open=True)
        check_number("weight decay", self.weight_decay, low=0.0)
        check_number("AdamW beta1", self.beta1, low=0.0, high=1.0, high_open=True)
        check_number("AdamW beta2", self.beta2, low=0.0, high=1.0, high_open=True)
        check_number("AdamW eps", self.adam_eps, low=0.0, low_open=True)
        check_number("router_aux_coef", self.router_aux_coef, low=0.0)

    def identity(self) -> dict:
        """What determines the trajectory; `steps` and `checkpoint_every` only say how far and how often to save."""
        blob = dataclasses.asdict(self)
        blob.pop("steps")
        blob.pop("checkpoint_every")
        if not blob["router_aux_coef"]:  # runs from before MoE keep their identity
            blob.pop("router_aux_coef")
        return blob


def preset(name: str = "default", **overrides: Any) -> tuple[ToyConfig, ToyTrainConfig]:
    """A (ToyConfig, ToyTrainConfig) pair from a preset; keyword overrides go to whichever config has the field.

        >>> model_cfg, train_cfg = preset("tiny", attention="relu", seed=3)
    """
    model_kw, train_kw = (dict(part) for part in check_preset(name))
    model_fields = {f.name for f in dataclasses.fields(ToyConfig)}
    train_fields = {f.name for f in dataclasses.fields(ToyTrainConfig)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in model_fields:
            model_kw[key] = value
        elif key in train_fields:
            train_kw[key] = value
        else:
            raise InputError(f"unknown toy setting {key!r}")
    train_cfg = ToyTrainConfig(**train_kw)
    model_cfg = ToyConfig(**{**model_kw, "d_vocab": VOCAB_SIZE, "n_ctx": train_cfg.seq_len})
    return model_cfg, train_cfg


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def _hook_names(model: ToyTransformer) -> set[str]:
    wanted = ("attn.hook_pattern", "attn.hook_v", "attn.hook_sink", "attn.hook_gate", "hook_resid_post")
    return {name for name in model.hook_dict if name.endswith(wanted)}


@torch.no_grad()
def sink_metrics(model: ToyTransformer, inputs: torch.Tensor, query_mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(logits, metrics) for one batch: the sink metrics of the module docstring, flat keys
    `name.L{l}H{h}` (per head), `name.L{l}` (per layer) and `name` (summary)."""
    names = _hook_names(model)
    logits, cache = model.run_with_cache(inputs, names_filter=lambda n: n in names)
    mask = query_mask.to(inputs.device)
    n_rows = mask.sum().clamp_min(1)
    out: dict[str, float] = {}
    per_head: dict[str, list[float]] = {}

    def masked_mean(values: torch.Tensor) -> float:  # values [batch, pos]
        return float((values * mask).sum() / n_rows)

    cfg = model.cfg
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}.attn."
        pattern = cache[prefix + "hook_pattern"]  # [B, nh, T, T]
        v = cache[prefix + "hook_v"]  # [B, T, nh, hs]
        rows = pattern.sum(-1)  # [B, nh, T]
        share = torch.where(rows > 0, pattern[..., 0] / rows.clamp_min(1e-30), torch.zeros_like(rows))
        for head in range(cfg.n_heads):
            key = f"L{layer}H{head}"
            values = {
                "bos_attention": masked_mean(pattern[:, head, :, 0]),
                "bos_share": masked_mean(share[:, head]),
                "v_bos_norm": float(v[:, 0, head].norm(dim=-1).mean()),
                "v_other_norm": float(v[:, 1:, head].norm(dim=-1).mean()),
            }
            if prefix + "hook_sink" in cache:
                values["sink_slot"] = masked_mean(cache[prefix + "hook_sink"][:, head])
            if prefix + "hook_gate" in cache:
                values["gate"] = masked_mean(cache[prefix + "hook_gate"][:, :, head].mean(-1))
            for name, value in values.items():
                out[f"{name}.{key}"] = value
                per_head.setdefault(name, []).append(value)
        resid = cache[f"blocks.{layer}.hook_resid_post"]  # [B, T, d_model]
        out[f"resid_bos_norm.L{layer}"] = float(resid[:, 0].norm(dim=-1).mean())
        out[f"resid_other_norm.L{layer}"] = float(resid[:, 1:].norm(dim=-1).mean())
    for name, values in per_head.items():
        out[name] = float(np.mean(values))
    last = cfg.n_layers - 1
    out["resid_bos_norm"] = out[f"resid_bos_norm.L{last}"]
    out["resid_other_norm"] = out[f"resid_other_norm.L{last}"]
    out["resid_ratio"] = out["resid_bos_norm"] / max(out["resid_other_norm"], 1e-30)
    return logits, out


def evaluate_step(model: ToyTransformer, task: Task, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Task metrics and sink metrics on the evaluation batch."""
    was_training = model.training
    model.eval()
    logits, metrics = sink_metrics(model, inputs, task.query_mask(inputs))
    model.train(was_training)
    return {**task.evaluate(logits, inputs, targets.to(logits.device)), **metrics}


# --------------------------------------------------------------------------------------------------
# The run directory
# --------------------------------------------------------------------------------------------------


def _describe(identity: dict) -> str:
    m, t = identity["model"], identity["train"]
    return (f"{t['task']} on {t['corpus']}, attention {m['attention']}, seed {t['seed']}, "
            f"{m['n_layers']}L x {m['n_heads']}H d_model {m['d_model']}, batch {t['batch_size']} x {t['seq_len']}")


def _differences(old: dict, new: dict) -> str:
    diffs = []
    for part in ("model", "train"):
        for key in sorted(set(old.get(part, {})) | set(new.get(part, {}))):
            a, b = old.get(part, {}).get(key), new.get(part, {}).get(key)
            if a != b:
                diffs.append(f"{key}: {a!r} there, {b!r} asked")
    return "; ".join(diffs) or "format version"


def _prepare(out: Path, identity: dict, steps: int, resume: bool, force: bool) -> int:
    """Check the output directory against this run; return the step to start from (0 = fresh)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory")
    run_file = out / ckpt.RUN_FILE
    if not run_file.is_file():
        if out.is_dir() and any(out.iterdir()):
            leftovers = sorted(p.name for p in out.iterdir() if p.name in OWNED)
            if not leftovers or not force:
                raise InputError(f"--out {out} is not empty and holds no toy run; choose a new or empty directory"
                                 + (" (or --force to clear the partial run files)" if leftovers else ""))
            _clear(out)
        return 0
    try:
        run = json.loads(run_file.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{run_file} is corrupt ({exc.msg}); use --force to start over") from exc
    same = run.get("identity_hash") == identity_hash(identity)
    if force:
        _clear(out)
        return 0
    if not same:
        raise InputError(f"--out {out} holds a different run ({_describe(run['identity'])}); differences: "
                         f"{_differences(run['identity'], identity)}. Use another --out, or --force to replace it")
    done = int(run.get("steps_done", 0))
    if not resume:
        raise InputError(f"--out {out} already holds this run ({done}/{run['train']['steps']} steps done); "
                         "pass --resume to continue it or --force to start over")
    if done > steps:
        raise InputError(f"the run in {out} is already at step {done}, past --steps {steps}; "
                         f"ask for --steps >= {done} or use --force to start over")
    if done and not (out / ckpt.WEIGHTS).is_file():
        raise InputError(f"{out} records {done} steps but has no {ckpt.WEIGHTS}; use --force to start over")
    return done


def holds_run(directory: str | Path) -> bool:
    """Whether `directory` holds a toy run (its run.json), i.e. whether there is anything to resume."""
    return (Path(directory).expanduser() / ckpt.RUN_FILE).is_file()


def _clear(out: Path) -> None:
    """Remove the files a toy run owns (nothing else in the directory)."""
    for name in OWNED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _write_run(out: Path, identity: dict, model_cfg: ToyConfig, train_cfg: ToyTrainConfig, done: int,
               status: str, created: str) -> None:
    blob = {"kind": RUN_KIND, "identity_hash": identity_hash(identity), "identity": identity,
            "model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg), "variant": model_cfg.attention,
            "steps_done": done, "status": status, "created": created,
            "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    atomic_write_text(out / ckpt.RUN_FILE, json.dumps(blob, indent=1))


def read_curves(directory: str | Path) -> pd.DataFrame:
    """The logged curves of a run directory, one row per logged step (wide: `name.L0H0` columns)."""
    path = Path(directory) / "curves.jsonl"
    if not path.is_file():
        raise InputError(f"{path} does not exist: not a toy run directory, or nothing logged yet")
    rows = []
    with open(path) as handle:
        for line in handle:
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a crash
                rows.append(json.loads(line))
    return pd.DataFrame(rows)


def _keep_curves_until(out: Path, step: int) -> None:
    """On resume, drop the lines logged after the checkpoint we restart from."""
    path = out / "curves.jsonl"
    if not path.is_file():
        return
    kept = []
    with open(path) as handle:
        for line in handle:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (json.JSONDecodeError, KeyError):
                break
    atomic_write_text(path, "".join(kept))


def summarize(curves: pd.DataFrame, threshold: float = 0.5, at: int = 1000) -> dict[str, Any]:
    """Headline numbers of a run's curves: final values, the first logged step where `bos_attention`
    reaches `threshold`, its value at step `at`, and the extremes of the norms."""
    curves = curves.sort_values("step")
    final = curves.iloc[-1]
    near = curves.iloc[(curves["step"] - at).abs().argsort()[:1]]
    summary: dict[str, Any] = {"steps": int(final["step"])}
    for name in ("bos_attention", "bos_share"):  # sigmoid's raw weights start near sigmoid(0) = 0.5: see the share
        crossed = curves[curves[name] >= threshold]
        summary[f"first_step_{name}_ge_{threshold:g}"] = int(crossed["step"].iloc[0]) if len(crossed) else None
    summary[f"bos_attention_at_{at}"] = float(near["bos_attention"].iloc[0]) if int(near["step"].iloc[0]) == at else None
    for name in ("loss", "backcopy_risk", "bigram_risk", "bos_attention", "bos_share", "sink_slot", "gate",
                 "v_bos_norm", "v_other_norm", "resid_bos_norm", "resid_other_norm", "resid_ratio"):
        if name in curves:
            summary[f"final_{name}"] = float(final[name])
    for name in ("v_bos_norm", "resid_bos_norm"):
        summary[f"initial_{name}"] = float(curves[name].iloc[0])
        summary[f"max_{name}"] = float(curves[name].max())
        summary[f"step_of_max_{name}"] = int(curves["step"].iloc[int(curves[name].to_numpy().argmax())])
    return summary


def curves_to_results(curves: pd.DataFrame, run: dict, header: dict) -> Results:
    """Tidy rows (one per step x metric x layer/head) from the wide curves."""
    rows = []
    base = {"experiment": "toy-train", "model": header.get("model"), "intervention": "none",
            "variant": run["variant"], "task": run["train"]["task"], "seed": run["train"]["seed"]}
    for record in curves.to_dict("records"):
        step = int(record.pop("step"))
        for column, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            name, _, where = column.partition(".")
            layer = head = None
            if where:
                layer_part, _, head_part = where[1:].partition("H")
                layer, head = int(layer_part), (int(head_part) if head_part else None)
            rows.append({**base, "layer": layer, "head": head, "metric": name, "value": value, "step": step})
    return Results(rows, header)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def _progress(total: int, initial: int, enabled: bool):
    if not enabled or os.environ.get("SINKBENCH_PROGRESS") == "0":
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True, leave=False)


def train(out: str | Path, model_cfg: ToyConfig, train_cfg: ToyTrainConfig, *, resume: bool = False,
          force: bool = False, threads: int | None = 1, device: str = "cpu", progress: bool = True,
          log: Callable[[str], None] = print) -> Results:
    """Train a toy on its task, logging curves and saving checkpoints in `out`; returns the curves as Results.

        >>> results = train("runs/bb-relu", *preset("default", attention="relu"))
        >>> summarize(read_curves("runs/bb-relu"))["final_bos_attention"]

    Refuses an `out` that holds a different run, or this run without `resume` (continue it) or `force`
    (start over). With `resume` and no run in `out` the run starts, and says so (what a figure recipe wants;
    `sinkbench train --resume` refuses instead: `holds_run`). `device` and `threads` are checked before anything
    is written. `threads` sets torch's CPU threads for the run (None: leave them as they are). The default is 1:
    on a busy machine OpenMP threads wait on each other, and these small matrices gain little from more threads
    (measured in the README, "Mitigation lab").
    """
    from workbench.zoo.load import check_device

    out = Path(out).expanduser()
    check_variant(model_cfg.attention)
    if model_cfg.n_ctx != train_cfg.seq_len or model_cfg.d_vocab != VOCAB_SIZE:
        raise InputError(f"the model's n_ctx/d_vocab ({model_cfg.n_ctx}/{model_cfg.d_vocab}) must equal the task's "
                         f"seq_len/vocabulary ({train_cfg.seq_len}/{VOCAB_SIZE}); build both with `preset`")
    device = check_device(device)  # before anything is written: a bad device leaves no half-made run
    if threads is not None:
        check_range("threads", threads, 1, os.cpu_count() or 1)
    identity = {"kind": RUN_KIND, "model": model_cfg.to_dict(), "train": train_cfg.identity()}
    if resume and not holds_run(out):
        log(f"nothing to resume in {out}: starting the run")
    start = _prepare(out, identity, train_cfg.steps, resume, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the run directory {out}: {exc.strerror}") from exc
    started = time.perf_counter()
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if start:
        created = json.loads((out / ckpt.RUN_FILE).read_text()).get("created", created)
        task = load_task(out)
    else:
        task = make_task(train_cfg.task, train_cfg.corpus, train_cfg.seq_len, train_cfg.n_triggers)
        task.save(out)
        tokenizer().save_pretrained(out / ckpt.TOKENIZER_DIR)

    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_cfg.seed)
        model = ToyTransformer(model_cfg).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, betas=(train_cfg.beta1, train_cfg.beta2),
                                      eps=train_cfg.adam_eps, weight_decay=train_cfg.weight_decay)
        if start:
            ckpt.load_weights(model, out / ckpt.WEIGHTS)
            ckpt.load_optimizer(optimizer, out / ckpt.OPTIMIZER)
            _keep_curves_until(out, start)
            log(f"resuming {out} at step {start}")
        else:
            (out / "curves.jsonl").unlink(missing_ok=True)
        _write_run(out, identity, model_cfg, train_cfg, start, "running", created)
        eval_inputs, eval_targets = task.batch(np.random.default_rng([train_cfg.seed, 2]), train_cfg.eval_size,
                                               split="eval")
        eval_inputs, eval_targets = eval_inputs.to(device), eval_targets.to(device)

        def log_point(step: int, train_loss: float) -> dict:
            row = {"step": step, "train_loss": train_loss,
                   **evaluate_step(model, task, eval_inputs, eval_targets)}
            with open(out / "curves.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            return row

        def save(step: int) -> None:
            extra = {"step": step, "task": train_cfg.task, "seed": train_cfg.seed}
            ckpt.save_weights(model, ckpt.snapshot_path(out, step), **extra)
            ckpt.save_weights(model, out / ckpt.WEIGHTS, **extra)
            ckpt.save_optimizer(optimizer, out / ckpt.OPTIMIZER)
            _write_run(out, identity, model_cfg, train_cfg, step, "running", created)

        if start == 0:
            log_point(0, float("nan"))  # the initial model, before any update
            save(0)
        bar = _progress(train_cfg.steps, start, progress)
        model.train()
        try:
            for step in range(start, train_cfg.steps):
                inputs, targets = task.batch(np.random.default_rng([train_cfg.seed, 1, step]), train_cfg.batch_size)
                logits = model(inputs.to(device))
                loss = F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten())
                if train_cfg.router_aux_coef and model_cfg.n_experts:
                    loss = loss + train_cfg.router_aux_coef * sum(block.mlp.aux_loss for block in model.blocks)
                if not torch.isfinite(loss):
                    raise InputError(f"training diverged at step {step + 1} (loss {loss.item()}); "
                                     "lower --lr or change the configuration")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done = step + 1
                if done % train_cfg.log_every == 0 or done == train_cfg.steps:
                    row = log_point(done, loss.item())
                    if bar is not None:
                        bar.set_postfix(loss=f"{row['loss']:.3f}", bos=f"{row['bos_attention']:.2f}")
                if done % train_cfg.checkpoint_every == 0 or done == train_cfg.steps:
                    save(done)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        _write_run(out, identity, model_cfg, train_cfg, train_cfg.steps, "complete", created)
        curves = read_curves(out)
        curves.to_csv(out / "curves.csv", index=False)
        trained = ckpt.load_toy(out, device=device)
        run = json.loads((out / ckpt.RUN_FILE).read_text())
        header = provenance("toy-train", model=trained, seed=train_cfg.seed, variant=model_cfg.attention,
                            task={k: v for k, v in task.to_dict().items() if k not in ("transitions", "marginal")},
                            toy_config=model_cfg.to_dict(), train_config=dataclasses.asdict(train_cfg),
                            identity_hash=identity_hash(identity), threads=torch.get_num_threads(),
                            resumed_from_step=start or None, summary=summarize(curves),
                            wall_seconds=round(time.perf_counter() - started, 2))
        results = curves_to_results(curves, run, header)
        results.save(out / "results.json")
    return results


def emergence_results(runs: dict[str, str | Path]) -> Results:
    """The summary curves (rows without layer/head) of finished toy runs, one per variant, as one Results;
    what the figure plots. Also for runs trained elsewhere:

        >>> res = emergence_results({v: f"runs/bb-{v}-s0" for v in ("softmax", "relu")})
    """
    rows, described = [], {}
    header: dict = {}
    for variant, directory in runs.items():
        results = Results.load(Path(directory) / "results.json")
        rows += [r for r in results if r["layer"] is None]
        prov = results.provenance
        described[variant] = {"directory": str(directory), "weights_sha256": prov.get("model_weights_sha256"),
                              "variant": prov.get("variant")}
        header = {k: prov.get(k) for k in ("packages", "python", "git_commit", "git_dirty", "seed")}
        header.update(toy_config={k: v for k, v in prov["toy_config"].items() if k != "attention"},
                      train_config=prov["train_config"])
    header.update(experiment="toy-emergence", model="toy", runs=described)
    return Results(rows, header)
