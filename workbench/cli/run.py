"""`sinkbench run`: catalogue interventions (or a TOML spec) and what they do (workbench.experiment)."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.common import add_attention_arg, add_data_args, add_model_arg, check_outputs, interval
from workbench.core.errors import InputError

NAME = "run"
SUMMARY = "run catalogue interventions (or a TOML spec) and measure what they do"
EXAMPLE = (
    "  sinkbench run --model smollm2-135m -i zero-implicit-bias -i mean-implicit-bias --json out/bias.json\n"
    "  sinkbench run -i mask-sink -i \"scale-sink:gamma=0.5,layers=3-10\" --window 128 --n-windows 16\n"
    "  sinkbench run -i \"mask-sink:layers=0-5 + zero-sink-value:layers=6-10\"     # composition\n"
    "  sinkbench run --sweep head -i zero-implicit-bias --attribution --json out/sweep.json   # resumable\n"
    "  sinkbench run --sweep head -i mask-sink --attribution ig       # estimate modes: atp (default), atp*, ig\n"
    "  sinkbench run --sweep head -i mask-sink --attribution ig --attribution-groups 27   # 28 passes, closer ranks\n"
    "  sinkbench run --sweep head -i zero-head --json out/s.json --executor ray --address auto --workers 8\n"
    "  sinkbench run --model minilm-l6 --sink sep -i mask-sink                     # encoder metrics\n"
    "  sinkbench run --model shapes-vit-reg4 --high-norm top:1 -i mask-sink:sink=reg -i mask-sink:sink=top-norm "
    "-i test-time-register   # ViT: accuracy, logit change, KL\n"
    "  sinkbench run docs/specs/implicit-bias.toml --explain")
# the rows `sinkbench run` prints (a saved file has them all)
SUMMARY_METRICS = ["loss", "delta_loss", "kl", "top1_agreement", "embedding_cosine", "embedding_change",
                   "delta_logit_diff", "attribution_delta_loss", "accuracy", "delta_accuracy", "logit_change"]


def listing() -> str:
    import interventions

    names = "\n".join(f"  {name:<20} {summary}" for name, summary in interventions.catalogue().items())
    return ("\n\nintervention syntax: NAME or NAME:key=value,key=value (layers=3-10, heads=0,4, "
            "sink=bos|5|tok:.|cls|sep;\nimages: sink=cls|reg|reg:K|bg|obj|top-norm|patch:R,C);\n"
            "A + B composes. The catalogue:\n" + names)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", type=Path, help="a TOML experiment spec (see workbench/experiment/spec.py)")
    parser.add_argument("--explain", action="store_true", help="print what would run, and stop")
    add_model_arg(parser)
    add_data_args(parser, window=128, n_windows=8)
    add_attention_arg(parser)
    parser.add_argument("-i", "--intervention", action="append", default=[], help="an intervention (repeatable)")
    parser.add_argument("--metric", action="append", default=None,
                        help="metrics (repeatable; default loss, delta_loss, kl, top1_agreement on causal LMs, "
                             "embedding_cosine, embedding_change on encoders)")
    parser.add_argument("--logit-pair", nargs=2, metavar=("A", "B"), default=None,
                        help="also the logit difference A - B at the last position (tokens or ids)")
    parser.add_argument("--sink", default=None, help="default sink for every -i that does not set sink=")
    parser.add_argument("--sweep", choices=["layer", "head"], default=None,
                        help="run the (single) -i intervention on each layer or each (layer, head)")
    parser.add_argument("--layers", default=None, help="with --sweep: the layers to sweep")
    parser.add_argument("--attribution", nargs="?", const="atp", default=None, metavar="MODE",
                        choices=["atp", "atp*", "ig"],  # workbench.experiment.attribution.MODES (not imported: --help)
                        help="with --sweep head: also the attribution-patching estimate and its Spearman rho; MODE "
                             "atp (gradient x difference, the default), atp* (+ GradDrop) or ig (integrated gradients)")
    parser.add_argument("--attribution-groups", type=int, default=None, metavar="G",
                        help="with --attribution ig: the paths the heads share (default 9, G + 1 passes; more groups "
                             "rank closer to the exact sweep: bench/attribution.py --tradeoff)")
    parser.add_argument("--no-resume", action="store_true", help="ignore a partial journal of an earlier run")
    parser.add_argument("--force", action="store_true",
                        help="recompute even when --json holds a finished run of the same spec and data")
    parser.add_argument("--json", type=Path, default=None, help="write the Results here (.json/.csv); journaled")
    add_executor_args(parser)
    parser.set_defaults(func=execute)


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    """--executor local|ray and the Ray options (workbench.experiment.executors; `run` and `figures`)."""
    group = parser.add_argument_group("where the passes run (docs/SCALE.md)")
    group.add_argument("--executor", choices=["local", "ray"], default=None,
                       help="local (this process, the default) or ray (the same rows, on Ray workers; needs the "
                            "[distributed] extra)")
    group.add_argument("--address", default=None,
                       help="with --executor ray: auto or HOST:PORT of a running cluster (default: start a local "
                            "Ray for this run and stop it after)")
    group.add_argument("--workers", type=int, default=None, help="with --executor ray: workers (default: as many "
                                                                 "as the cluster's CPUs or GPUs hold)")
    group.add_argument("--cpus-per-worker", type=int, default=None, help="with --executor ray: CPUs (torch threads) "
                                                                         "per worker (default 1)")
    group.add_argument("--gpus-per-worker", type=float, default=None, help="with --executor ray: GPUs per worker "
                                                                           "(default 0; fractions share a GPU)")


def executor_from_flags(args: argparse.Namespace) -> dict | None:
    """The executor the flags ask for, as spec options ({"kind": "ray", "workers": 4, ...}); None without flags."""
    options = {key: getattr(args, key) for key in ("address", "workers", "cpus_per_worker", "gpus_per_worker")
               if getattr(args, key, None) is not None}
    if args.executor != "ray" and options:
        flag = "--" + next(iter(options)).replace("_", "-")
        raise InputError(f"{flag} is an option of --executor ray; add --executor ray (or drop {flag})")
    return None if args.executor is None else {"kind": args.executor, **options}


def spec_from_flags(args: argparse.Namespace):
    """The RunSpec that the command-line flags describe (what a TOML spec would say)."""
    from workbench.experiment.spec import RunSpec

    data: dict = {"window": args.window, "n_windows": args.n_windows,
                  "seed": args.seed, "corpus": args.corpus, "n_images": args.n_images}
    if args.prepend_bos is not None:  # unset: the model's own policy (the spec's default too)
        data["prepend_bos"] = args.prepend_bos
    for key in ("text_file", "jsonl", "prompts", "document", "images", "high_norm"):
        if getattr(args, key, None):
            data[key] = str(getattr(args, key))
    items = args.intervention
    if args.sink:
        items = [i if "sink=" in i or "+" in i else (f"{i},sink={args.sink}" if ":" in i else f"{i}:sink={args.sink}")
                 for i in items]
    run: dict = {"batch_size": args.batch_size, "seed": args.seed, "resume": not args.no_resume}
    if args.metric:
        run["metrics"] = args.metric
    if args.logit_pair:
        run["logit_pair"] = list(args.logit_pair)
    if args.json:
        run["out"] = str(args.json)
    if getattr(args, "attention_block", None) is not None:  # --attention-block (auto: left out, the default)
        run["attention_block"] = args.attention_block
    sweep = None
    if args.sweep:
        if len(items) != 1:
            raise InputError(f"--sweep runs one intervention over layers or heads; got {len(items)} -i options")
        # a plain --attribution stays `attribution = true` (atp) in the spec; other modes are named
        sweep = {"intervention": items[0], "over": args.sweep,
                 "attribution": {None: False, "atp": True}.get(args.attribution, args.attribution)}
        if args.attribution_groups is not None:
            sweep["attribution_groups"] = args.attribution_groups
        if args.layers:
            sweep["layers"] = args.layers
    else:
        if args.attribution or args.attribution_groups is not None:
            raise InputError("--attribution needs --sweep head")
        run["interventions"] = items
    blob = {"model": args.model, "data": data, "run": run, **({"sweep": sweep} if sweep else {})}
    if args.device:
        blob["device"] = args.device
    if (executor := executor_from_flags(args)) is not None:
        blob["executor"] = executor
    return RunSpec.from_dict(blob, "<command line>")


def load_spec(path: Path):
    """The RunSpec in a TOML file; a file that is not text is one error, not a UnicodeDecodeError."""
    from workbench.experiment.spec import RunSpec

    try:
        return RunSpec.load(path)
    except UnicodeDecodeError as exc:
        raise InputError(f"spec {path} is not UTF-8 text (byte {exc.start}); a spec is a TOML file") from None


def execute(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec) if args.spec else spec_from_flags(args)
    if args.spec and args.json:
        spec.run["out"] = str(args.json)
    if args.spec and (executor := executor_from_flags(args)) is not None:  # the flags override the spec's
        from workbench.experiment.executors import check_options

        spec.executor = check_options(executor, "--executor")
    if args.explain:
        print(spec.explain())
        return 0
    if not spec.sweep and not spec.interventions():
        raise InputError("nothing to run: give -i INTERVENTION (see `sinkbench run --help`) or a spec file")
    check_outputs(Path(spec.run["out"]) if "out" in spec.run else None)  # before the model loads
    results = spec.execute(force=args.force)
    print(summarize_run(results))
    if "out" not in spec.run:
        return 0
    if results.provenance.get("reused"):
        print(f"kept {spec.run['out']}: it holds these {len(results)} rows already (--force recomputes)")
        return 0
    print(f"wrote {len(results)} rows to {spec.run['out']}")
    return 0


def summarize_run(results) -> str:
    """Interventions x metrics (delta_loss with its 95% CI), and attribution's Spearman rho after a sweep."""
    frame = results.df
    frame = frame[frame.metric.isin(SUMMARY_METRICS)]
    if frame.empty:
        return "(no rows)"
    cell = frame.apply(lambda r: f"{r.value:.4f}" + (f" [{interval(r.ci_low, r.ci_high, ', ')}]"
                                                     if r.metric == "delta_loss" else ""), axis=1)
    table = frame.assign(cell=cell).pivot_table(index="intervention", columns="metric", values="cell",
                                                aggfunc="first", sort=False)
    text = table.fillna("").to_string()
    rho = results.provenance.get("attribution_spearman")
    return text + (f"\nattribution patching vs exact sweep: Spearman rho = {rho:.3f}" if rho is not None else "")
