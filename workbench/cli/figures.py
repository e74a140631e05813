"""`sinkbench figures`: the survey's figures, PNG + PDF + CSV each, and a gallery page (workbench.gallery)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from workbench.cli.common import add_attention_arg, integer
from workbench.cli.run import add_executor_args, executor_from_flags
from workbench.core.errors import InputError

NAME = "figures"
SUMMARY = "reproduce the survey's figures: PNG + PDF + CSV per figure and a gallery"
EXAMPLE = ("  sinkbench figures --all --out figures/              # the main job (README)\n"
           "  sinkbench figures sink-grid depth-profile --model gemma3-270m --out figures-gemma/\n"
           "  sinkbench figures --all --executor ray --workers 4   # recipes computed in parallel on Ray\n"
           "  sinkbench figures --list\n\n"
           "Results are cached under OUT/data/: a rerun with nothing changed only redraws.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.zoo.cards import DEFAULT_MODEL

    parser.add_argument("names", nargs="*", help="figures to draw (default with --all: every registered one)")
    parser.add_argument("--all", action="store_true", help="every registered figure")
    parser.add_argument("--list", action="store_true", help="list the registered figures and what they reproduce")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model for the model-generic figures")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output directory (default figures/)")
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of the data and the bootstrap (default 0)")
    parser.add_argument("--quick", action="store_true", help="small data (for smoke tests; numbers are noisy)")
    parser.add_argument("--force", action="store_true", help="recompute even when cached Results match")
    add_attention_arg(parser)
    add_executor_args(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from workbench import gallery

    if args.list:
        for name, entry in gallery.recipes().items():
            fixed = f" [model {entry.model}]" if entry.model else ""
            print(f"{name:<28} {entry.title}{fixed}\n{'':<28} reproduces: {entry.reproduces}")
        return 0
    if not args.names and not args.all:
        raise InputError("name the figures to draw or pass --all (see `sinkbench figures --list`)")
    started = time.perf_counter()
    print(f"drawing into {args.out}/ (model {args.model})")
    done = gallery.build(args.names, args.out, args.model, all_=args.all, seed=args.seed, quick=args.quick,
                         force=args.force, executor=executor_from_flags(args))
    print(f"{len(done)} figures in {time.perf_counter() - started:.1f} s; gallery: {args.out / 'index.html'}")
    return 0
