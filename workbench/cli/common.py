"""What several subcommands share: the model and data options, loading them, writing Results.

Everything heavy (torch, transformers, pandas) is imported inside the functions that run a command, never
while the parser is built, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from workbench.core.errors import InputError, check_number


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line on stderr (`sinkbench eval: error: argument --window: ...`), exit 2,
    like every other error the user can fix; argparse's default prints the whole usage first."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def integer(low: int = 0) -> Callable[[str], int]:
    """An argparse type: an integer >= low (`--window 1.5`, `--top -1`, `--steps nan`: one line naming it)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (allowed: >= {low})") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is out of range: allowed >= {low}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval (NaN and inf are refused: `--lr nan` would train
    nothing, `--abs-threshold nan` flag nothing, silently)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        try:
            return check_number("value", value, low, high, low_open=low_open)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value = ")) from None
    parse.__name__ = "number"
    return parse


def attention_block(text: str):
    """An argparse type for --attention-block: auto (-> None), full, or B >= 1 query rows per block (the rule of
    workbench.attention.parse_block, without importing torch while arguments are parsed)."""
    value = text.strip().lower()
    if value in ("auto", "full"):
        return None if value == "auto" else "full"
    try:
        block = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer, full or auto (allowed: B >= 1 query rows "
                                         "per block, full, auto)") from None
    if block < 1:
        raise argparse.ArgumentTypeError(f"{block} is out of range: allowed B >= 1 query rows per block, full or "
                                         "auto")
    return block


attention_block.__name__ = "attention block"


def add_attention_arg(parser: argparse.ArgumentParser) -> None:
    """--attention-block B|full|auto: how every attention of the command's passes runs (workbench.attention)."""
    parser.add_argument("--attention-block", type=attention_block, default=None, metavar="B|full|auto",
                        help="attention of every pass: auto (default: the full pattern while it fits the memory "
                             "budget, $SINKBENCH_ATTENTION_BUDGET, 1G per layer; blockwise otherwise), full (refused "
                             "when it would not fit) or B: blockwise, B query rows at a time (B >= 1)")


def attention_policy(args: argparse.Namespace):
    """The context in which a command's passes run under its --attention-block (every model it loads; nothing,
    and no torch import, when the option is unset or the command has none)."""
    block = getattr(args, "attention_block", None)
    if block is None:
        return contextlib.nullcontext()
    from workbench import attention

    return attention.policy(None, block)


def check_output_dir(path: Path, what: str = "--out") -> Path:
    """Refuse a directory that cannot be written before any work is done: `path` a file, or its nearest
    existing ancestor a file or not writable (a read-only mount refuses even root). Creates nothing."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{what} {path} cannot be created: {existing} is a file")
    for directory in {existing, path.parent if path.exists() else existing}:
        if directory.exists() and not os.access(directory, os.W_OK | os.X_OK):
            raise InputError(f"{what} {path} is not writable ({directory} is read-only); choose another directory")
    return path


def check_outputs(*paths: Path | None) -> None:
    """Check every given Results output path (format, directory, writable) before the model is loaded."""
    from workbench.core.results import check_output_path

    for path in paths:
        if path is not None:
            check_output_path(path)


def interval(low: float | None, high: float | None, sep: str = "..") -> str:
    """'0.1234..0.5678', or 'n/a' when there is no interval (one sequence: nothing to bootstrap)."""
    if low is None or high is None or low != low or high != high:
        return "n/a"
    return f"{low:.4f}{sep}{high:.4f}"


def add_model_arg(parser: argparse.ArgumentParser) -> None:
    """--model (default zoo.cards.DEFAULT_MODEL) and --device."""
    from workbench.zoo.cards import DEFAULT_MODEL

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"zoo name, local model directory or cached HF id (default {DEFAULT_MODEL}; "
                             "`sinkbench models` lists them)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def add_data_args(parser: argparse.ArgumentParser, window: int = 128, n_windows: int = 8) -> None:
    """Where the sequences come from (text file, JSONL, control prompts, a bundled corpus) or the images."""
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
    group.add_argument("--window", type=integer(1), default=window, help=f"tokens per sequence T (default {window})")
    group.add_argument("--n-windows", type=integer(0), default=n_windows,
                       help=f"number of sequences (default {n_windows}; for files: at most this many, 0 = all)")
    group.add_argument("--prepend-bos", action=argparse.BooleanOptionalAction, default=None,
                       help="start each window with BOS ([CLS] ... [SEP] on encoders); default: the model's policy "
                            "(on for every model but qwen2.5-0.5b); recorded in provenance")
    group.add_argument("--seed", type=integer(0), default=0, help="seed for random prompt sets and bootstrap (default 0)")
    group.add_argument("--batch-size", type=integer(1), default=8, help="sequences per forward pass (default 8)")
    images = parser.add_argument_group("images (image models: ViT / DeiT)")
    images.add_argument("--images", default=None,
                        help="shapes (generated at the model's size, the default), photos (14 registry photographs; "
                             "`sinkbench data fetch photos`) or a .npz (images [n, H, W, C], optional labels) / .npy file")
    images.add_argument("--n-images", type=integer(1), default=64, help="generated images (default 64; seeded by --seed)")
    images.add_argument("--high-norm", default=None, metavar="RULE",
                        help="flag high-norm patches for sink top-norm: top:K, abs:X or ratio:R, optionally @LAYER "
                             "(e.g. top:1, abs:150@11)")


def load_model(args: argparse.Namespace):
    """The model named by --model, on --device."""
    from workbench import zoo

    return zoo.load(args.model, device=args.device)


def load_data(args: argparse.Namespace, model):
    """The Dataset (or, for image models, the ImageSet) that the data options describe."""
    from workbench import zoo
    from workbench.core import data

    if zoo.info(model).is_image:
        from workbench.vision import image_set

        images = image_set(model, args.images or "shapes", n=args.n_images, seed=args.seed)
        if args.high_norm is None:
            return images
        from workbench.probes.high_norm import mark_high_norm

        return mark_high_norm(model, images, args.high_norm)
    if zoo.info(model).is_multimodal:  # image + text: generated scenes and their questions (workbench.multimodal)
        if not getattr(getattr(args, "func", None), "__module__", "").endswith(".probe"):
            raise InputError(f"{args.model} is a multimodal LM: `sinkbench probe mixed-attention` / `visual-sinks` "
                             "(and the other probes) measure it; the runner scores text loss only, so measure the "
                             "visual-sink edits' answer accuracy with interventions.multimodal.answer_accuracy")
        from workbench.multimodal import mixed_set

        return mixed_set(model, n=args.n_images, seed=args.seed)
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


def save_results(results, path: Path | None) -> None:
    """Write `results` to `path` (.json/.csv) and say so; nothing when no path was given."""
    if path is not None:
        results.save(path)
        print(f"wrote {len(results)} rows to {path}")


def fetch_each(args: argparse.Namespace, known: list[str], fetch: Callable[..., object], what: str) -> int:
    """Fetch the named items (or every known one with --all)."""
    names = known if args.all else args.names
    if not names:
        raise InputError(f"name the {what} to fetch ({', '.join(known)}) or pass --all")
    for name in names:
        fetch(name, force=args.force)
    return 0
