"""`sinkbench train`: train a toy transformer (workbench.toy) and watch its attention sink form, or not."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.cli.common import check_output_dir, integer, number
from workbench.core.errors import InputError

NAME = "train"
SUMMARY = ("train a small transformer on CPU (Bigram-Backcopy of Guo et al. 2024, or character-level text) with one "
           "attention variant, logging first-token attention, ||v_BOS||, ||resid_BOS|| and the task risks")
EXAMPLE = (
    "  sinkbench train --task bigram-backcopy --attention softmax --steps 1000 --seed 0 --out runs/bb-softmax\n"
    "  sinkbench train --attention relu --steps 1000 --seed 0 --out runs/bb-relu      # ~3 min on 2 cores\n"
    "  sinkbench train --attention softmax --steps 2000 --seed 0 --out runs/bb-softmax --resume  # continue\n"
    "  sinkbench eval --model toy:runs/bb-softmax --corpus shakespeare --window 64      # the zoo loads it\n"
    "\n"
    "Writes run.json, task.json, tokenizer/, model.safetensors, optimizer.safetensors, checkpoints/,\n"
    "curves.jsonl + curves.csv (one row per logged step) and results.json (tidy Results + provenance).")


def listing() -> str:
    from workbench.toy.presets import TASKS, VARIANTS

    return f"\nAttention variants: {', '.join(VARIANTS)}.\nTasks: {', '.join(TASKS)}."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.toy.presets import TASKS, TOY_PRESETS, VARIANTS

    parser.add_argument("--task", default="bigram-backcopy", help=f"one of: {', '.join(TASKS)} (default bigram-backcopy)")
    parser.add_argument("--attention", default="softmax",
                        help="; ".join(f"{v.name}: {v.formula}" for v in VARIANTS.values()) + " (default softmax)")
    parser.add_argument("--steps", type=integer(1), default=None, help="optimizer updates (default: the preset's, 1000)")
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of the weights and of every batch (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="run directory (created; refused if it holds another run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="replace the run in --out (only its own files are removed)")
    size = parser.add_argument_group("size and optimisation (default: the preset)")
    size.add_argument("--preset", default="default", help=f"one of: {', '.join(TOY_PRESETS)} (default default)")
    size.add_argument("--corpus", default=None, help="corpus for the bigram statistics or the text (default shakespeare)")
    size.add_argument("--layers", dest="n_layers", type=integer(1), default=None, help="transformer blocks (default 1)")
    size.add_argument("--heads", dest="n_heads", type=integer(1), default=None, help="attention heads per block (default 1)")
    size.add_argument("--d-model", type=integer(1), default=None, help="residual width (default 256)")
    size.add_argument("--positional", default=None, help="absolute (learned, as Guo et al.; default) or rotary")
    size.add_argument("--gate", default=None, help="gated attention only: elementwise (default) or headwise")
    size.add_argument("--batch-size", type=integer(1), default=None, help="sequences per update (default 32)")
    size.add_argument("--seq-len", type=integer(1), default=None, help="tokens per sequence including <s> (default 64)")
    size.add_argument("--lr", type=number(0.0, low_open=True), default=None, help="AdamW learning rate (default 1e-3; Guo et al. use 3e-4 with 64x larger batches)")
    size.add_argument("--weight-decay", type=number(0.0), default=None, help="AdamW weight decay (default 1e-4)")
    size.add_argument("--log-every", type=integer(1), default=None, help="log the curves every k steps (default 10)")
    size.add_argument("--checkpoint-every", type=integer(1), default=None, help="checkpoint every k steps (default 250)")
    parser.add_argument("--threads", type=integer(1), default=1,
                        help="torch CPU threads (default 1; 2 helps only on an otherwise idle machine)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from workbench.toy.presets import check_preset, check_task, check_variant

    check_task(args.task)  # the names and the run directory first: they answer before torch is imported
    check_variant(args.attention)
    check_preset(args.preset)
    check_output_dir(args.out)

    from workbench.toy.train import holds_run, preset, read_curves, summarize, train

    if args.resume and not args.force and not holds_run(args.out):
        raise InputError(f"--resume: {args.out} holds no toy run to resume (no run.json); drop --resume to start one")
    model_cfg, train_cfg = preset(
        args.preset, attention=args.attention, task=args.task, steps=args.steps, seed=args.seed, corpus=args.corpus,
        n_layers=args.n_layers, n_heads=args.n_heads, d_model=args.d_model, positional=args.positional,
        gate=args.gate, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
        weight_decay=args.weight_decay, log_every=args.log_every, checkpoint_every=args.checkpoint_every)
    log = sys.stderr if args.json else sys.stdout  # --json: stdout is only the JSON summary
    print(f"training {args.attention} on {train_cfg.task} ({train_cfg.corpus}): {model_cfg.n_layers} layer(s) x "
          f"{model_cfg.n_heads} head(s), d_model {model_cfg.d_model}, batch {train_cfg.batch_size} x "
          f"{train_cfg.seq_len}, {train_cfg.steps} steps, seed {train_cfg.seed} -> {args.out}", file=log)
    train(args.out, model_cfg, train_cfg, resume=args.resume, force=args.force, threads=args.threads,
          device=args.device, log=lambda line: print(line, file=log))
    summary = summarize(read_curves(args.out))
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<36} {shown}")
    print(f"wrote {args.out}/results.json; load it with workbench.zoo.load('toy:{args.out}')")
    return 0
