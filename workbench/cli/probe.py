"""`sinkbench probe NAME`: one read-only measurement of attention sinks (workbench.probes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import (
    add_attention_arg,
    add_data_args,
    add_model_arg,
    check_outputs,
    integer,
    load_data,
    load_model,
    number,
    save_results,
)
from workbench.core.errors import InputError

NAME = "probe"
SUMMARY = "read-only measurements of attention sinks (hook only what is read)"
EXAMPLE = (
    "  sinkbench probe sinks --model smollm2-135m --window 64 --n-windows 32 --eps 0.3 0.5 --json out/sinks.json\n"
    "  sinkbench probe sinks --prompts repeated --window 64      # Gu et al. Table 1 control\n"
    "  sinkbench probe sink-tokens --window 256 --top 15\n"
    "  sinkbench probe massive-activations --rule ratio --ratio-threshold 500\n"
    "  sinkbench probe implicit-bias --model gemma3-270m --layers 5,11,17\n"
    "  sinkbench probe sinks --model minilm-l6 --sink sep          # encoder: [SEP] as the sink\n"
    "  sinkbench probe image-attention --model shapes-vit-reg4 --n-images 128   # ViT: [CLS], registers, "
    "background\n"
    "  sinkbench probe patch-norms --model shapes-vit --norm-rule ratio:2 --under test-time-register")


def listing() -> str:
    from workbench.probes import PROBES

    names = "\n".join(f"  {name:<20} {probe.summary}" for name, probe in PROBES.items())
    return ("\n\nprobes:\n" + names +
            "\n\nmetric names per probe: see `python -c 'import workbench.probes as p; help(p)'`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workbench.probes import PROBES

    parser.add_argument("name", choices=list(PROBES), help="which probe")
    add_model_arg(parser)
    add_data_args(parser, window=64, n_windows=16)
    add_attention_arg(parser)
    parser.add_argument("--sink", default="bos",
                        help="the sink: bos (position 0; [CLS] on encoders), a position (0 or 0,5), tok:TOKEN "
                             "(tok:. tok:\\n), cls, sep, or auto:EPS (default bos)")
    parser.add_argument("--eps", type=number(0.0, 1.0), nargs="+", default=None, help="sink-ratio thresholds (default 0.3 0.5 0.8)")
    parser.add_argument("--layers", default=None, help="layers to hook: all (default), 5, 3-10 or 1,4,7")
    parser.add_argument("--heads", default=None, help="heads (attention-maps only): all, 2 or 0-3")
    parser.add_argument("--top", type=integer(1), default=None, help="sink-tokens: tokens to rank; massive-activations: top-k")
    parser.add_argument("--rule", choices=["sun", "ratio"], default="sun",
                        help="massive-activations: sun = |a| > 100 and >= ratio x median; ratio = the ratio alone")
    parser.add_argument("--abs-threshold", type=number(0.0), default=100.0, help="massive-activations |a| floor (default 100)")
    parser.add_argument("--ratio-threshold", type=number(0.0, low_open=True), default=1000.0,
                        help="massive-activations |a| / median (default 1000)")
    parser.add_argument("--norm-rule", default="ratio:2",
                        help="patch-norms: the high-norm rule top:K, abs:X or ratio:R (default ratio:2)")
    parser.add_argument("--under", default=None, metavar="INTERVENTION",
                        help="image-attention / patch-norms: measure under a batch-independent intervention "
                             "(test-time-register)")
    parser.add_argument("--json", type=Path, default=None, help="write the Results here (.json/.csv)")
    parser.set_defaults(func=execute)


def probe_options(args: argparse.Namespace) -> dict:
    """The keyword arguments that the probe `args.name` takes, from the command line."""
    options: dict = {"batch_size": args.batch_size}
    if args.name not in ("massive-activations",):
        options["layers"] = args.layers
    if args.name in ("sinks", "norms", "implicit-bias", "heads", "routing", "super-experts"):
        options["sink"] = args.sink
    if args.name == "sinks" and args.eps:
        options["eps"] = args.eps
    if args.name == "heads" and args.eps:
        options["eps"] = args.eps[0]
    if args.name == "sink-tokens" and args.top is not None:
        options["top"] = args.top
    if args.name in ("attention-maps", "image-attention"):
        options["heads"] = args.heads
    if args.name == "patch-norms":
        options["rule"] = args.norm_rule
    if args.under and args.name not in ("image-attention", "patch-norms"):
        raise InputError(f"--under applies to image-attention and patch-norms, not {args.name}")
    if args.name == "massive-activations":
        options.update(layers=args.layers, rule=args.rule, abs_threshold=args.abs_threshold,
                       ratio_threshold=args.ratio_threshold, top_k=args.top or 3)
    return options


def execute(args: argparse.Namespace) -> int:
    from workbench import probes
    from workbench.core.data import describe

    options = probe_options(args)  # before the model loads: a misplaced option or a malformed sink answers at once
    if "sink" in options:
        from workbench.core.sites import SinkSpec

        SinkSpec.parse(options["sink"])
    check_outputs(args.json)
    model = load_model(args)
    dataset = load_data(args, model)
    print(describe(dataset))
    if args.under:  # the probe measures the edited model: the intervention's hooks run in its passes
        from workbench.experiment import batch_hooks

        options["hooks"], options["hooks_spec"] = batch_hooks(model, args.under, dataset, args.batch_size)
    results = probes.by_name(args.name, model, dataset, **options)
    summarize = probes.PROBES[args.name].summarize
    if summarize:
        print(summarize(results))
    save_results(results, args.json)
    return 0
