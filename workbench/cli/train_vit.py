"""`sinkbench train-vit`: train a small ViT (with or without register tokens) on generated shapes."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from workbench.cli.common import check_output_dir, integer, number
from workbench.core.errors import InputError

NAME = "train-vit"
SUMMARY = ("train a small ViT image classifier on generated shapes (no pretrained ViT is reachable "
           "offline); deterministic for a seed, safetensors, loadable through the zoo")
EXAMPLE = ("  sinkbench train-vit --preset shapes-vit-reg4                # the zoo model, into the cache\n"
           "  sinkbench train-vit --registers 4 --steps 4000 --out runs/vit-reg4 --checkpoint-every 500\n"
           "  sinkbench probe image-attention --model runs/vit-reg4       # then use it like any zoo model")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.vision.presets import VIT_PRESETS, ViTTrainConfig

    defaults = ViTTrainConfig()
    parser.add_argument("--preset", choices=list(VIT_PRESETS), default=None,
                        help="a zoo model's recipe; without --out it is trained into the cache under its name")
    parser.add_argument("--out", type=Path, default=None, help="output model directory (required without --preset)")
    for field in dataclasses.fields(ViTTrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = integer(0) if isinstance(field.default, int) else number(0.0)  # the config checks the ranges
        parser.add_argument(flag, type=kind, default=None, metavar=field.name.upper(),
                            help=f"{ViTTrainConfig.HELP[field.name]} (default {getattr(defaults, field.name)})")
    parser.add_argument("--threads", type=integer(1), default=1,
                        help="torch CPU threads (default 1: bit-identical weights on any machine)")
    parser.add_argument("--force", action="store_true", help="with --preset: retrain even if cached")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from workbench import zoo
    from workbench.vision.presets import VIT_PRESETS, ViTTrainConfig

    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(ViTTrainConfig)
               if getattr(args, f.name) is not None}
    if args.preset and args.out is None:
        if changes:
            raise InputError(f"--preset {args.preset} without --out builds the zoo model exactly; to change "
                             f"{', '.join(changes)}, give --out DIR")
        if zoo.is_cached(args.preset) and not args.force:
            print(f"{args.preset} is already trained: {zoo.model_dir(args.preset)} (--force retrains)")
            return 0
        if args.force and zoo.is_cached(args.preset):
            (zoo.model_dir(args.preset) / zoo.MANIFEST).unlink()
        zoo.fetch(args.preset)  # one thread, like every zoo build
        return 0
    if args.out is None:
        raise InputError("give --out DIR (or --preset NAME to train a zoo model into the cache)")
    config = dataclasses.replace(VIT_PRESETS[args.preset] if args.preset else ViTTrainConfig(), **changes).validate()
    check_output_dir(args.out)  # the configuration and the directory answer before torch is imported

    from workbench.vision.train import train_vit

    print(f"training {config.describe()} -> {args.out}")
    train_vit(config, args.out, threads=args.threads)
    return 0
