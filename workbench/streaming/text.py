"""What long text does a streaming run read? One token stream, its BOS policy explicit.

    >>> text = long_text(model, corpus="austen", document="Emma", max_tokens=8192)   # BOS + 8191 tokens
    >>> text.sequences[0].shape, text.bos_policy                                      # (8192,), "bos"

A streaming run reads a `Dataset` holding one sequence (workbench.core.data), from a text file, a JSONL
file or a bundled corpus; its source, BOS policy and token hash travel into the result's provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench import zoo
from workbench.core import corpora
from workbench.core import data as _data
from workbench.core.errors import InputError, check_range


def long_text(model: Any, *, text_file: str | Path | None = None, jsonl: str | Path | None = None,
              corpus: str = corpora.DEFAULT_CORPUS, document: str | int | None = None, max_tokens: int | None = None,
              prepend_bos: bool | None = None) -> _data.Dataset:
    """One long token stream (a Dataset holding one sequence), BOS policy explicit as in workbench.core.data.

        >>> text = long_text(model, corpus="austen", document="Emma", max_tokens=8192)   # BOS + 8191 tokens
        >>> text = long_text(model, jsonl="books.jsonl")      # records concatenated in file order

    JSONL records ({"text": ...} or {"tokens": [...]}) are concatenated into one stream, as Xiao
    Table 2 concatenates PG19 books; `{"tokens"}` ids are used exactly, and BOS is added only when the
    file holds text. `max_tokens` counts every token fed, BOS included.
    """
    model_info = zoo.info(model)
    if max_tokens is not None:
        check_range("max tokens", max_tokens, 2, 1 << 31)
    before: list[int] = []
    special: dict = {}
    prepend_bos, _ = _data.resolve_bos(model_info, prepend_bos)  # None: the model's own policy
    if prepend_bos:
        if model_info.bos_token_id is None:
            raise InputError(f"model {model_info.name} has no BOS token; use --no-prepend-bos")
        before, special = [model_info.bos_token_id], {"bos": model_info.bos_token_id}
    budget = None if max_tokens is None else max_tokens - len(before)
    has_text = True
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise InputError(f"input file {path} does not exist")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise InputError(f"{path}: the file is empty")
        body, source = _data.tokenize(model_info, text), f"file:{path}"
    elif jsonl is not None:
        body, has_text = _jsonl_stream(model_info, Path(jsonl))
        source = f"jsonl:{jsonl}"
        if not has_text:
            before, special = [], {}
            budget = max_tokens
    else:
        if document is None:
            document = "Emma" if corpus == "austen" else 0
        body = _data.corpus_tokens(model, corpus, document, budget)
        title = _data._pick_document(corpora.documents(corpus), document, corpus).title
        source = f"corpus:{corpus}/{title}"
    ids = np.concatenate([np.asarray(before, np.int64), np.asarray(body[:budget], np.int64)])
    if len(ids) < 2:
        raise InputError(f"{source}: {len(ids)} token(s) after tokenisation; streaming needs at least 2")
    policy = "bos" if before else ("as-given" if jsonl is not None and not has_text else "none")
    return _data.Dataset([ids], source, policy, special, window=None)


def _jsonl_stream(model_info: Any, path: Path) -> tuple[np.ndarray, bool]:
    """Every record of a JSONL file, concatenated in file order: text tokenised, ids used as given."""
    pieces, has_text = [], False
    for where, kind, value in _data.jsonl_records(path):
        has_text |= kind == "text"
        pieces.append(_data.tokenize(model_info, value) if kind == "text" else _data.checked_ids(value, model_info, where))
    if not pieces:
        raise InputError(f"{path}: no records")
    return np.concatenate(pieces), has_text
