"""`sinkbench explore`: an offline attention-explorer page for one model run (workbench.gallery.explorer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import add_attention_arg, add_data_args, add_model_arg, load_data, load_model

# workbench.gallery.explorer's defaults (importing it here would import pandas while the parser is built;
# tests/unit/test_explorer.py checks that they agree)
MAX_SEQUENCES, MAX_POSITIONS, BUDGET_MB = 8, 128, 5.0
PAGE, DATA_DIR = "explorer.html", "explorer-data"

NAME = "explore"
SUMMARY = "write an offline attention-explorer page: sink grid, per-head heatmaps, an intervention's effect"
EXAMPLE = (
    "  sinkbench explore --model smollm2-135m --window 64 --n-windows 8 --out figures/explore/smollm2-135m\n"
    "  sinkbench explore --model smollm2-135m -i mask-sink:layers=3-10 --out figures/explore/smollm2-mask-sink\n"
    "  sinkbench explore --model shapes-vit-reg4 --n-images 8 --sink reg --out figures/explore/vit-reg4   # overlay\n"
    "  then open DIR/explorer.html in a browser (it works offline, from the file)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arg(parser)
    add_data_args(parser, window=64, n_windows=MAX_SEQUENCES)
    add_attention_arg(parser)
    parser.add_argument("-i", "--intervention", default=None,
                        help="also show every head after this intervention and the difference (e.g. mask-sink, "
                             "\"scale-sink:gamma=0.5,layers=3-10\"; `sinkbench run --help` lists the catalogue)")
    parser.add_argument("--sink", default=None,
                        help="the sink of the grid and the marked column: bos (default; cls on image models), a "
                             "position (0 or 0,5), tok:TOKEN, sep, reg, bg, ... or auto:EPS")
    parser.add_argument("--max-sequences", type=int, default=MAX_SEQUENCES,
                        help=f"sequences (images) shown, evenly spaced over the data (default {MAX_SEQUENCES})")
    parser.add_argument("--max-positions", type=int, default=MAX_POSITIONS,
                        help=f"text: positions shown (the first P; default {MAX_POSITIONS})")
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB,
                        help=f"size budget of the page and its data (default {BUDGET_MB:g} MB): "
                             "16-bit values if they fit, else 8-bit, else fewer sequences")
    parser.add_argument("--out", type=Path, required=True,
                        help=f"folder for {PAGE}, its {DATA_DIR}/ and the Results")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from workbench.core.data import describe
    from workbench.core.errors import InputError
    from workbench.gallery import explorer

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; give a folder for the page and its data")
    if not args.budget_mb > 0:
        raise InputError(f"--budget-mb {args.budget_mb:g} must be > 0 (the page's size budget in MB)")
    model = load_model(args)
    dataset = load_data(args, model)
    print(describe(dataset))
    page = explorer.write_explorer(model, dataset, args.out, intervention=args.intervention, sink=args.sink,
                                   max_sequences=args.max_sequences, max_positions=args.max_positions,
                                   budget_mb=args.budget_mb)
    summary = explorer.summary(args.out)
    print(f"wrote {page} ({summary['bytes'] / 1e6:.2f} MB with its data, {summary['bits']}-bit values, "
          f"{summary['sequences']} x {summary['positions']} positions); open it in a browser")
    return 0
