"""Corpora and prompt sets become token sequences, with the BOS policy explicit.

    >>> data = corpus_windows(model, "austen", window=128, n_windows=8)        # natural text
    >>> data = control_prompts(model, "repeated", window=64, n=16, seed=0)     # Gu et al. 2025 Table 1
    >>> data = from_file(model, "my.jsonl", window=128)                        # {"text": ...} or {"tokens": [...]}

BOS is where sinks live, so nothing here relies on a tokenizer's implicit default (SmolLM2's own
tokenizer adds no BOS while the bridge's copy prepends `<|im_start|>`): text is tokenised without
special tokens and the policy adds them explicitly:
- `prepend_bos=True` on a causal LM: each window is [BOS] + (T - 1) text tokens;
- `prepend_bos=True` on an encoder: each window is [CLS] + (T - 2) text tokens + [SEP];
- `prepend_bos=False`: T text tokens, nothing added;
- `{"tokens": [...]}` JSONL: the ids exactly as given, never cut, nothing added;
- `prepend_bos=None` (the default): the model's own policy (`ModelInfo.default_prepend_bos`, from its zoo
  card): BOS for every model but `qwen2.5-0.5b`, whose tokenizer adds none and whose first-token sink forms
  on the text's own first token (its bos_token at position 0 removes it). Provenance records whether the
  policy was the model's default or the caller's choice.
The policy, the special ids and a hash of every token travel with the Dataset into result provenance.

Corpora (workbench.core.corpora) are fetched from package registries at setup and never committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.corpora import DEFAULT_CORPUS, Document, documents
from workbench.core.errors import InputError, check_range
from workbench.core.modelinfo import info

CONTROL_SETS = ("natural", "repeated", "random")


# --------------------------------------------------------------------------------------------------
# Datasets: token sequences + how they were made
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Dataset:
    """Token sequences for one experiment, with the provenance of how they were cut.

    Sequences may differ in length (token JSONL, a short tail); `batches` groups equal lengths.
    """

    sequences: list[np.ndarray]
    source: str
    bos_policy: str  # "bos", "none" or "as-given"
    special_ids: dict[str, int | None]
    window: int | None
    seed: int | None = None
    tokenizer_id: str | None = None  # ModelInfo.tokenizer_fingerprint() of the model the data was cut for
    prepared_for: str | None = None  # that model's name (for messages)
    bos_by_default: bool | None = None  # True: the model's default policy; False: the caller's; None: not known

    def __post_init__(self) -> None:
        if isinstance(self.sequences, (str, bytes)) or not hasattr(self.sequences, "__len__"):
            raise InputError(f"{self.source}: sequences must be a list of token-id arrays, got "
                             f"{type(self.sequences).__name__}")
        if not len(self.sequences):
            raise InputError(f"{self.source}: no token sequences to run on")

    def check_model(self, model: Any) -> None:
        """Refuse a model this data was not cut for: another tokenizer (the ids would mean other text), an id
        outside its vocabulary, a sequence longer than its context, or an image model."""
        model_info = info(model)
        if model_info.is_image:
            raise InputError(f"{self.source}: token data, but {model_info.name} is an image model; give it images "
                             "(workbench.vision.image_set)")
        theirs = model_info.tokenizer_fingerprint() if self.tokenizer_id is not None else None
        if theirs is not None and theirs != self.tokenizer_id:
            raise InputError(f"{self.source} was tokenised for {self.prepared_for or 'another model'} (tokenizer "
                             f"{self.tokenizer_id}); {model_info.name} has another tokenizer ({theirs}), so its ids "
                             f"would mean other text: prepare the data again with {model_info.name}")
        low = min(int(np.min(s)) for s in self.sequences if len(s))
        high = max(int(np.max(s)) for s in self.sequences if len(s))
        if low < 0 or high >= model_info.vocab_size:
            bad = low if low < 0 else high
            raise InputError(f"{self.source}: token id {bad} is outside the vocabulary of {model_info.name}: allowed "
                             f"0..{model_info.vocab_size - 1} (was the data prepared for another model?)")
        longest = max(self.lengths)
        if longest > model_info.n_ctx:
            raise InputError(f"{self.source}: a sequence of {longest} tokens exceeds the context of {model_info.name}: "
                             f"allowed up to {model_info.n_ctx}")

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def n_tokens(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.sequences]

    def hash(self) -> str:
        digest = hashlib.sha256()
        for seq in self.sequences:
            digest.update(struct.pack("<I", len(seq)))
            digest.update(np.asarray(seq, dtype="<i8").tobytes())
        return digest.hexdigest()

    def batches(self, batch_size: int) -> Iterator[tuple[list[int], Any]]:
        """Yield (sequence indices, LongTensor [b, T]) with equal-length sequences in each batch."""
        import torch

        check_range("batch size", batch_size, 1, 1 << 20)
        by_length: dict[int, list[int]] = {}
        for index, seq in enumerate(self.sequences):
            by_length.setdefault(len(seq), []).append(index)
        for _, indices in sorted(by_length.items()):
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                yield chunk, torch.from_numpy(np.stack([self.sequences[i] for i in chunk])).long()

    def model_inputs(self, index: Sequence[int], tokens: Any) -> Any:
        """What the model is called on for the rows `index` of a batch: for text, the tokens themselves.
        (An image set, workbench.vision.images.ImageSet, returns pixels here and position kinds as tokens.)"""
        return tokens

    def tensor(self):
        """All sequences as one LongTensor [n, T]; they must have equal length."""
        import torch

        if len(set(self.lengths)) != 1:
            raise InputError(f"{self.source}: sequences have different lengths {sorted(set(self.lengths))}")
        return torch.from_numpy(np.stack(self.sequences)).long()

    def subset(self, indices: Sequence[int]) -> Dataset:
        return dataclasses.replace(self, sequences=[self.sequences[i] for i in indices])

    def provenance(self) -> dict:
        return {"data_source": self.source, "data_sha256": self.hash(), "bos_policy": self.bos_policy,
                "bos_policy_from": {True: "model default", False: "caller"}.get(self.bos_by_default, "unknown"),
                "special_ids": self.special_ids, "window": self.window, "n_sequences": len(self),
                "n_tokens": self.n_tokens, "data_seed": self.seed, "tokenizer_fingerprint": self.tokenizer_id}


def _model_info(model: Any):
    return info(model)


def _made_for(model_info: Any) -> dict:
    """The Dataset fields that say which model (tokenizer) the data was cut for."""
    return {"tokenizer_id": model_info.tokenizer_fingerprint(), "prepared_for": model_info.name}


def _specials(model_info: Any, prepend_bos: bool) -> tuple[list[int], list[int], dict]:
    """Ids to put before and after each window under the BOS policy, and the record of them."""
    if not prepend_bos:
        return [], [], {}
    if model_info.causal:
        if model_info.bos_token_id is None:
            raise InputError(f"model {model_info.name} has no BOS token; use --no-prepend-bos")
        return [model_info.bos_token_id], [], {"bos": model_info.bos_token_id}
    if model_info.cls_token_id is None or model_info.sep_token_id is None:
        raise InputError(f"encoder {model_info.name} has no [CLS]/[SEP] tokens; use --no-prepend-bos")
    return [model_info.cls_token_id], [model_info.sep_token_id], {"cls": model_info.cls_token_id,
                                                                  "sep": model_info.sep_token_id}


def resolve_bos(model_info: Any, prepend_bos: bool | None) -> tuple[bool, bool]:
    """(the BOS policy to apply, whether it is the model's default): None means the model's default."""
    if prepend_bos is None:
        return bool(getattr(model_info, "default_prepend_bos", True)), True
    return bool(prepend_bos), False


def check_window(model_info: Any, window: int, prepend_bos: bool) -> int:
    """A window must fit the model's context and leave room for at least one text token."""
    minimum = 2 if not prepend_bos else (2 if model_info.causal else 3)
    return check_range(f"window T for {model_info.name}", window, minimum, model_info.n_ctx)


def tokenize(model_info: Any, text: str) -> np.ndarray:
    """Text to ids with no special tokens added (the BOS policy adds them)."""
    ids = model_info.tokenizer(text, add_special_tokens=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def _windows(ids: np.ndarray, body: int, max_windows: int | None, keep_tail: bool) -> list[np.ndarray]:
    out = [ids[i:i + body] for i in range(0, len(ids), body)]
    if out and len(out[-1]) < body and not keep_tail:
        out = out[:-1] if len(out) > 1 else out  # a text shorter than one window stays, as one short sequence
    out = [w for w in out if len(w) >= 1]
    return out[:max_windows] if max_windows else out


def _wrap(windows: list[np.ndarray], before: list[int], after: list[int]) -> list[np.ndarray]:
    return [np.concatenate([np.asarray(before, np.int64), w, np.asarray(after, np.int64)]) for w in windows]


def from_text(model: Any, text: str, window: int = 128, prepend_bos: bool | None = None,
              max_windows: int | None = None, keep_tail: bool = False, source: str = "text") -> Dataset:
    """Cut one text into windows of `window` tokens under the BOS policy.

        >>> data = from_text(model, open("book.txt").read(), window=128, max_windows=8)
    """
    model_info = _model_info(model)
    prepend_bos, by_default = resolve_bos(model_info, prepend_bos)
    check_window(model_info, window, prepend_bos)
    before, after, special = _specials(model_info, prepend_bos)
    if not isinstance(text, str):
        raise InputError(f"{source}: the text must be a str, got {type(text).__name__}"
                         + ("; decode it first (text.decode('utf-8'))" if isinstance(text, bytes) else ""))
    ids = tokenize(model_info, text)
    body = window - len(before) - len(after)
    sequences = _wrap(_windows(ids, body, max_windows, keep_tail), before, after)
    sequences = [s for s in sequences if len(s) >= 2]
    if not sequences:
        raise InputError(f"{source}: the text has {len(ids)} tokens after tokenisation; at least 2 are needed "
                         "(with BOS: 1 text token)")
    return Dataset(sequences, source, "bos" if prepend_bos else "none", special, window, bos_by_default=by_default,
                   **_made_for(model_info))


def from_file(model: Any, path: str | Path, window: int = 128, prepend_bos: bool | None = None,
              max_windows: int | None = None, keep_tail: bool = True) -> Dataset:
    """A text file, or JSONL of {"text": ...} (each cut into windows) or {"tokens": [ids]} (used exactly).

        >>> data = from_file(model, "prompts.jsonl", window=64)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    if path.suffix == ".jsonl":
        return from_jsonl(model, path, window, prepend_bos, max_windows, keep_tail)
    text = read_text_file(path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    return from_text(model, text, window, prepend_bos, max_windows, keep_tail, source=f"file:{path}")


def _decode(raw: bytes, where: str, offset: int = 0) -> str:
    """Strict UTF-8 (a leading byte-order mark dropped): binary or other encodings are refused, never replaced."""
    if b"\x00" in raw:
        at = offset + raw.index(b"\x00")
        raise InputError(f"{where}: not a text file (a NUL byte at offset {at}: binary data, or UTF-16/32 text); "
                         "give UTF-8 text")
    try:
        return raw.decode("utf-8-sig" if offset == 0 else "utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 4]
        raise InputError(f"{where}: not UTF-8 text (invalid byte {raw[exc.start:exc.start + 1]!r} at offset "
                         f"{offset + exc.start}, near {bad!r}); convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                         ) from None


def read_text_file(path: str | Path) -> str:
    """The text of a UTF-8 file; binary files and other encodings are one InputError (never decoded with
    replacement characters, which would then be tokenised and scored as if they were text)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    return _decode(raw, str(path))


def from_jsonl(model: Any, path: str | Path, window: int = 128, prepend_bos: bool | None = None,
               max_windows: int | None = None, keep_tail: bool = True) -> Dataset:
    model_info = _model_info(model)
    prepend_bos, by_default = resolve_bos(model_info, prepend_bos)
    check_window(model_info, window, prepend_bos)
    before, after, special = _specials(model_info, prepend_bos)
    body = window - len(before) - len(after)
    sequences: list[np.ndarray] = []
    kinds = set()
    for where, kind, value in jsonl_records(path):
        kinds.add(kind)
        if kind == "tokens":
            sequences.append(_checked_tokens(value, model_info, where))
        else:
            ids = tokenize(model_info, value)
            sequences.extend(s for s in _wrap(_windows(ids, body, None, keep_tail), before, after) if len(s) >= 2)
    if max_windows:
        sequences = sequences[:max_windows]
    if not sequences:
        raise InputError(f"{path}: no sequence of at least 2 tokens")
    policy = "as-given" if kinds == {"tokens"} else ("bos" if prepend_bos else "none")
    if kinds == {"tokens", "text"}:
        policy = f"mixed: text {'bos' if prepend_bos else 'none'}, tokens as-given"
    return Dataset(sequences, f"jsonl:{path}", policy, special if "text" in kinds else {}, window,
                   bos_by_default=by_default if "text" in kinds else None, **_made_for(model_info))


def jsonl_records(path: str | Path) -> Iterator[tuple[str, str, Any]]:
    """(where, "text" | "tokens", the text or the id list) for each non-blank line of a JSONL file of
    `{"text": ...}` / `{"tokens": [ids]}` records; anything else is one error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    with open(path, "rb") as handle:
        offset = 0
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            line = _decode(raw, where, offset)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
            if isinstance(record, dict) and isinstance(record.get("tokens"), list):
                yield where, "tokens", record["tokens"]
            elif isinstance(record, dict) and isinstance(record.get("text"), str):
                yield where, "text", record["text"]
            else:
                got = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise InputError(f'{where}: expected {{"text": "..."}} or {{"tokens": [int, ...]}}, got {got}')


def checked_ids(tokens: list, model_info: Any, where: str) -> np.ndarray:
    """Token ids given by the user: integers inside the model's vocabulary."""
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise InputError(f"{where}: token ids must be integers")
    bad = [t for t in tokens if not 0 <= t < model_info.vocab_size]
    if bad:
        raise InputError(f"{where}: token id {bad[0]} is outside the vocabulary of {model_info.name}: "
                         f"allowed 0..{model_info.vocab_size - 1}")
    return np.asarray(tokens, dtype=np.int64)


def _checked_tokens(tokens: list, model_info: Any, where: str) -> np.ndarray:
    """One sequence of given ids: valid ids, 2..n_ctx of them."""
    ids = checked_ids(tokens, model_info, where)
    if len(ids) < 2:
        raise InputError(f"{where}: a token sequence needs at least 2 ids, got {len(ids)}")
    if len(ids) > model_info.n_ctx:
        raise InputError(f"{where}: {len(ids)} tokens exceed the context of {model_info.name}: "
                         f"allowed 2..{model_info.n_ctx}")
    return ids


_TOKEN_CACHE: dict[tuple, tuple[np.ndarray, bool]] = {}  # (ids, whole document?)


def corpus_windows(model: Any, corpus: str = DEFAULT_CORPUS, window: int = 128, n_windows: int = 8,
                   prepend_bos: bool | None = None, document: str | int | None = None) -> Dataset:
    """`n_windows` consecutive windows of natural text, taken round-robin across the corpus documents
    (so even a few windows sample several books), or from one document by title or index.

        >>> data = corpus_windows(model, "austen", window=64, n_windows=32)
    """
    model_info = _model_info(model)
    prepend_bos, by_default = resolve_bos(model_info, prepend_bos)
    check_window(model_info, window, prepend_bos)
    check_range("number of windows", n_windows, 1, 1 << 20)
    docs = documents(corpus)
    if document is not None:
        docs = [_pick_document(docs, document, corpus)]
    before, after, special = _specials(model_info, prepend_bos)
    body = window - len(before) - len(after)
    per_doc = -(-n_windows // len(docs))
    per_doc_windows = [_windows(_doc_tokens(model_info, corpus, d, per_doc * body), body, per_doc, False)
                       for d in docs]
    picked = []
    for k in range(per_doc):
        picked.extend(ws[k] for ws in per_doc_windows if k < len(ws) and len(ws[k]) == body)
    if len(picked) < n_windows:
        raise InputError(f"corpus {corpus!r} has only {len(picked)} windows of {window} tokens, asked for {n_windows}")
    where = f"corpus:{corpus}" + (f"/{docs[0].title}" if document is not None else "")
    return Dataset(_wrap(picked[:n_windows], before, after), where, "bos" if prepend_bos else "none", special, window,
                   bos_by_default=by_default, **_made_for(model_info))


def corpus_tokens(model: Any, corpus: str = DEFAULT_CORPUS, document: str | int = 0,
                  max_tokens: int | None = None) -> np.ndarray:
    """The token ids of one whole corpus document (no special tokens), for long-context experiments."""
    model_info = _model_info(model)
    doc = _pick_document(documents(corpus), document, corpus)
    return _doc_tokens(model_info, corpus, doc, max_tokens)


def _pick_document(docs: list[Document], document: str | int, corpus: str) -> Document:
    if isinstance(document, int):
        check_range(f"document index in {corpus}", document, 0, len(docs) - 1)
        return docs[document]
    matches = [d for d in docs if document.lower() in d.title.lower()]
    if not matches:
        raise InputError(f"no document matching {document!r} in {corpus}: {[d.title for d in docs]}")
    return matches[0]


def _doc_tokens(model_info: Any, corpus: str, doc: Document, n_tokens: int | None) -> np.ndarray:
    """Tokenise (a prefix of) a document; the prefix doubles until it covers n_tokens."""
    key = (model_info.name, corpus, doc.title)
    hit = _TOKEN_CACHE.get(key)
    if hit is not None and (hit[1] or (n_tokens is not None and len(hit[0]) >= n_tokens)):
        return hit[0][:n_tokens] if n_tokens else hit[0]
    chars = len(doc.text) if n_tokens is None else min(len(doc.text), 8 * n_tokens + 256)
    while True:
        ids = tokenize(model_info, doc.text[:chars])
        complete = chars >= len(doc.text)
        if complete or len(ids) > n_tokens + 1:
            break
        chars = min(len(doc.text), chars * 2)
    if not complete:
        ids = ids[:-1]  # the last token of a cut prefix may be a fragment of a longer one
    _TOKEN_CACHE[key] = (ids, complete)
    return ids[:n_tokens] if n_tokens else ids


def control_prompts(model: Any, kind: str, window: int = 64, n: int = 16, seed: int = 0,
                    prepend_bos: bool | None = None, corpus: str = DEFAULT_CORPUS) -> Dataset:
    """The control prompt sets of Gu et al. 2025 (Table 1): natural text, one token repeated, random tokens.

    `repeated`: each sequence repeats one token (a different seeded random token per sequence);
    `random`: tokens drawn uniformly from the vocabulary, special and added tokens excluded.
    """
    if kind not in CONTROL_SETS:
        raise InputError(f"unknown prompt set {kind!r}: available {', '.join(CONTROL_SETS)}")
    if kind == "natural":
        return corpus_windows(model, corpus, window, n, prepend_bos)
    model_info = _model_info(model)
    prepend_bos, by_default = resolve_bos(model_info, prepend_bos)
    check_window(model_info, window, prepend_bos)
    check_range("number of prompts", n, 1, 1 << 20)
    before, after, special = _specials(model_info, prepend_bos)
    body = window - len(before) - len(after)
    pool = ordinary_token_ids(model_info)
    rng = np.random.default_rng(seed)
    if kind == "repeated":
        windows = [np.full(body, rng.choice(pool), dtype=np.int64) for _ in range(n)]
    else:
        windows = [rng.choice(pool, size=body).astype(np.int64) for _ in range(n)]
    return Dataset(_wrap(windows, before, after), f"control:{kind}", "bos" if prepend_bos else "none",
                   special, window, seed=seed, bos_by_default=by_default, **_made_for(model_info))


def ordinary_token_ids(model_info: Any) -> np.ndarray:
    """Vocabulary ids that are neither special nor added tokens (Gemma's <unused…>, chat markers)."""
    tokenizer = model_info.tokenizer
    excluded = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    vocab = min(model_info.vocab_size, len(tokenizer))
    return np.asarray([i for i in range(vocab) if i not in excluded], dtype=np.int64)


def str_tokens(model: Any, ids: Sequence[int]) -> list[str]:
    """Readable token strings for labels and tables."""
    tokenizer = _model_info(model).tokenizer
    return [tokenizer.decode([int(i)]) for i in ids]


def describe(data: Dataset) -> str:
    if not isinstance(data, Dataset):  # an image set describes itself
        return data.describe()
    lengths = sorted(set(data.lengths))
    shown = lengths[0] if len(lengths) == 1 else f"{lengths[0]}..{lengths[-1]}"
    return f"{data.source}: {len(data)} sequences x {shown} tokens, BOS policy {data.bos_policy}"
