"""`sinkbench eval`: baseline next-token loss and perplexity (workbench.experiment.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import (
    add_attention_arg,
    add_data_args,
    add_model_arg,
    check_outputs,
    interval,
    load_data,
    load_model,
    save_results,
)

NAME = "eval"
SUMMARY = "baseline next-token loss and perplexity of a causal LM"
EXAMPLE = ("  sinkbench eval --model smollm2-135m --window 256 --n-windows 16 --json out/eval.json\n"
           "  sinkbench eval --text-file book.txt --window 512 --n-windows 0   # every window of a file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arg(parser)
    add_data_args(parser)
    add_attention_arg(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the Results here (.json/.csv)")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from workbench import experiment
    from workbench.core.data import describe

    check_outputs(args.json)
    model = load_model(args)
    dataset = load_data(args, model)
    print(describe(dataset))
    results = experiment.evaluate(model, dataset, batch_size=args.batch_size, seed=args.seed)
    unit = "images" if results.provenance.get("model_family") == "image-classifier" else "tokens"
    for row in results:
        print(f"{row['metric']:<11} {row['value']:.4f}  (95% CI {interval(row['ci_low'], row['ci_high'])}, "
              f"{row['n']} {unit})")
    save_results(results, args.json)
    return 0
