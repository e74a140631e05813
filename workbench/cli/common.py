"""What several subcommands share: the model and data options, loading them, writing Results.

Everything heavy (torch, transformers, pandas) is imported inside the functions that run a command, never
while the parser is built, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from workbench.core.errors import InputError


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
    group.add_argument("--window", type=int, default=window, help=f"tokens per sequence T (default {window})")
    group.add_argument("--n-windows", type=int, default=n_windows,
                       help=f"number of sequences (default {n_windows}; for files: at most this many, 0 = all)")
    group.add_argument("--prepend-bos", action=argparse.BooleanOptionalAction, default=None,
                       help="start each window with BOS ([CLS] ... [SEP] on encoders); default: the model's policy "
                            "(on for every model but qwen2.5-0.5b); recorded in provenance")
    group.add_argument("--seed", type=int, default=0, help="seed for random prompt sets and bootstrap (default 0)")
    group.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    images = parser.add_argument_group("images (image models: ViT / DeiT)")
    images.add_argument("--images", default=None,
                        help="shapes (generated at the model's size, the default), photos (14 registry photographs; "
                             "`sinkbench data fetch photos`) or a .npz (images [n, H, W, C], optional labels) / .npy file")
    images.add_argument("--n-images", type=int, default=64, help="generated images (default 64; seeded by --seed)")
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
