"""Training tasks for the toy transformers: Bigram-Backcopy (Guo et al. 2024) and character-level text.

    >>> task = make_task("bigram-backcopy", corpus="shakespeare", seq_len=128)
    >>> inputs, targets = task.batch(np.random.default_rng(0), batch_size=64)     # LongTensor [64, 128] each

Vocabulary (both tasks): the 65 characters of Tiny Shakespeare (`ALPHABET`, the set Guo et al. use),
then `<s>` (BOS, id 65) and `<unk>` (id 66, never trained on), 67 tokens as in Guo et al. (whose 67th
is an unused delimiter). Corpus characters outside the alphabet (digits other than 3, brackets, quotes,
dashes, accents) are dropped before any statistic is taken.

**Bigram-Backcopy** (Guo et al. 2024, §2 and their `dormant_copy_2` generator):
- bigram transitions P(b | a) are counted on the corpus text (within documents; a character never seen
  followed by another gets the unigram marginal as its row);
- the triggers are the `n_triggers` (3) most frequent characters by unigram marginal (for Shakespeare:
  space, `e`, `t`);
- a sequence is `<s>`, a character drawn uniformly from the non-triggers, then for t >= 1: if x_t is a
  trigger, x_{t+1} = x_{t-1} (backcopy: the token before the trigger); otherwise x_{t+1} ~ P(. | x_t).
  Copies are never triggers, so every trigger is preceded by a non-trigger.
The model sees x_0..x_{T-1} and predicts x_1..x_T (T = `seq_len`, BOS included).

**char-lm**: windows of natural text. Each sequence is `<s>` + T - 1 consecutive characters from a
random offset of the corpus (documents joined by a blank line); training windows come from the first
95 % of the text, evaluation windows from the last 5 %.

Metrics on a fixed evaluation batch (`evaluate`); position t predicts x_{t+1}:
- `loss`: mean cross-entropy over all positions (BOS included), as Guo et al.'s overall loss;
- `backcopy_risk` (BB): mean cross-entropy at the trigger positions (the target is certain, so this is
  also the excess risk);
- `bigram_risk` (BB): mean over non-trigger positions t >= 1 of KL(P(. | x_t) || model), the exact excess
  risk of the bigram part (0 at the Bayes optimum); `bigram_loss` is the plain cross-entropy there;
- the sink metrics use the *bigram positions* (`query_mask`): BB, non-trigger queries t >= 1 (where
  Guo et al. measure Attn_<s>); char-lm, every query t >= 1. See `workbench.toy.train` for them.
"""

from __future__ import annotations

import abc
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workbench.core.cache import sha256_bytes
from workbench.core.errors import InputError, check_range
from workbench.toy.presets import TASKS, check_task  # noqa: F401 (re-exported)

# Tiny Shakespeare's character set (Karpathy's char-rnn data), Guo et al.'s BB vocabulary.
ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BOS_TOKEN, UNK_TOKEN = "<s>", "<unk>"
BOS_ID, UNK_ID = len(ALPHABET), len(ALPHABET) + 1
VOCAB_SIZE = len(ALPHABET) + 2
DEFAULT_CORPUS = "shakespeare"
TASK_FILE = "task.json"


def encode(text: str) -> np.ndarray:
    """Characters to ids; characters outside `ALPHABET` are dropped (not mapped to <unk>)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.full(max(int(codes.max(initial=0)), 127) + 1, -1, dtype=np.int64)
    table[[ord(c) for c in ALPHABET]] = np.arange(len(ALPHABET))
    ids = table[codes]
    return ids[ids >= 0]


def decode(ids) -> str:
    names = [*ALPHABET, BOS_TOKEN, UNK_TOKEN]
    return "".join(names[int(i)] for i in ids)


def tokenizer():
    """A `transformers` fast tokenizer for the character vocabulary, with `<s>` as BOS (built offline).

        >>> tok = tokenizer(); tok("to be", add_special_tokens=False)["input_ids"]     # [58, 53, 1, 40, 43]
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: index for index, char in enumerate(ALPHABET)}
    vocab[BOS_TOKEN], vocab[UNK_TOKEN] = BOS_ID, UNK_ID
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # every character is a token
    core.decoder = decoders.Fuse()  # and they join back without spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS_TOKEN, unk_token=UNK_TOKEN)


def _corpus_ids(corpus: str) -> tuple[list[np.ndarray], str]:
    """Each document of a fetched corpus as ids, and the corpus manifest's checksum."""
    from workbench.core import corpora

    manifest = corpora.corpus_manifest(corpus)
    docs = [encode(d.text) for d in corpora.documents(corpus)]
    docs = [d for d in docs if len(d)]
    if not docs:
        raise InputError(f"corpus {corpus!r} has no characters of the toy alphabet")
    return docs, str(manifest.get("sha256", ""))


class Task(abc.ABC):
    """What training needs from a task: batches, the bigram-position mask, and evaluation metrics."""

    name: str
    seq_len: int

    @abc.abstractmethod
    def batch(self, rng: np.random.Generator, batch_size: int, split: str = "train"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), LongTensors [batch, seq_len]; targets are the inputs shifted by one."""

    def query_mask(self, inputs: torch.Tensor) -> torch.Tensor:
        """Bool [batch, pos]: the queries whose attention to BOS is the sink metric."""
        mask = torch.ones_like(inputs, dtype=torch.bool)
        mask[:, 0] = False
        return mask

    def evaluate(self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"loss": F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()}

    def dataset(self, n: int = 64, seed: int = 0, split: str = "eval"):
        """`n` sequences of the task as a `workbench.core.data.Dataset` (each starts with <s>), so that the probes,
        the catalogue's interventions and the runner apply to a trained toy:

            >>> windows = load_task("runs/bb-softmax").dataset(64)
            >>> experiment.run(zoo.load("toy:runs/bb-softmax"), windows, ["mask-sink", "zero-sink-value"])
        """
        from workbench.core.data import Dataset

        check_range("number of sequences", n, 1, 1 << 16)
        inputs, _ = self.batch(np.random.default_rng([seed, 3]), n, split=split)
        return Dataset([row.astype(np.int64) for row in inputs.numpy()], source=f"{self.name} ({split}, seed {seed})",
                       bos_policy="bos", special_ids={"bos": BOS_ID}, window=self.seq_len, seed=seed)

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """Everything that defines the task, JSON-serialisable (written to the run directory)."""

    def save(self, directory: Path) -> None:
        from workbench.core.cache import atomic_write_text

        atomic_write_text(Path(directory) / TASK_FILE, json.dumps(self.to_dict()))


@dataclasses.dataclass
class BigramBackcopy(Task):
    """Guo et al. 2024's Bigram-Backcopy task on bigram statistics of a corpus (see the module docstring)."""

    transitions: np.ndarray  # [65, 65], rows sum to 1
    marginal: np.ndarray  # [65]
    triggers: tuple[int, ...]
    seq_len: int
    corpus: str
    corpus_sha256: str
    name: str = "bigram-backcopy"

    @classmethod
    def from_corpus(cls, corpus: str, seq_len: int, n_triggers: int = 3) -> BigramBackcopy:
        docs, sha = _corpus_ids(corpus)
        V = len(ALPHABET)
        counts = np.zeros((V, V), dtype=np.int64)
        for ids in docs:
            np.add.at(counts, (ids[:-1], ids[1:]), 1)
        unigram = np.bincount(np.concatenate(docs), minlength=V).astype(np.float64)
        marginal = unigram / unigram.sum()
        rows = counts.sum(1, keepdims=True)
        transitions = np.where(rows > 0, counts / np.maximum(rows, 1), marginal[None, :])
        # the most frequent characters; ties broken by id so the choice is deterministic
        order = sorted(range(V), key=lambda i: (-unigram[i], i))
        triggers = tuple(sorted(order[:n_triggers]))
        return cls(transitions, marginal, triggers, seq_len, corpus, sha)

    @property
    def non_triggers(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(ALPHABET)), self.triggers)

    def is_trigger(self, ids):
        if isinstance(ids, torch.Tensor):
            return torch.isin(ids, torch.tensor(self.triggers, device=ids.device))
        return np.isin(ids, self.triggers)

    def sample(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """[batch, seq_len + 1] sequences, generated position by position for the whole batch at once."""
        T = self.seq_len
        seq = np.empty((batch_size, T + 1), dtype=np.int64)
        seq[:, 0] = BOS_ID
        seq[:, 1] = rng.choice(self.non_triggers, size=batch_size)
        cdf = np.cumsum(self.transitions, axis=1)
        for t in range(1, T):
            current = seq[:, t]
            u = rng.random(batch_size)
            bigram = np.minimum((u[:, None] > cdf[current]).sum(1), len(ALPHABET) - 1)  # inverse-CDF draw
            seq[:, t + 1] = np.where(self.is_trigger(current), seq[:, t - 1], bigram)
        return seq

    def batch(self, rng: np.random.Generator, batch_size: int, split: str = "train"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.from_numpy(self.sample(rng, batch_size))  # every sample is fresh: no split needed
        return seq[:, :-1], seq[:, 1:]

    def query_mask(self, inputs: torch.Tensor) -> torch.Tensor:
        mask = ~self.is_trigger(inputs)
        mask[:, 0] = False  # BOS's own row
        return mask

    def evaluate(self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        logp = logits.float().log_softmax(-1)  # [B, T, vocab]
        nll = -logp.gather(-1, targets[..., None])[..., 0]
        trigger = self.is_trigger(inputs)
        bigram = self.query_mask(inputs)
        truth = torch.as_tensor(self.transitions, dtype=logp.dtype)[inputs[bigram]]  # [n, 65]
        model = logp[bigram][:, : len(ALPHABET)]
        kl = (truth * (truth.clamp_min(1e-30).log() - model)).sum(-1)
        return {
            "loss": nll.mean().item(),
            "backcopy_risk": nll[trigger].mean().item() if trigger.any() else float("nan"),
            "bigram_risk": kl.mean().item(),
            "bigram_loss": nll[bigram].mean().item(),
        }

    def to_dict(self) -> dict:
        return {"name": self.name, "seq_len": self.seq_len, "corpus": self.corpus,
                "corpus_sha256": self.corpus_sha256, "alphabet": ALPHABET, "triggers": list(self.triggers),
                "trigger_chars": [ALPHABET[i] for i in self.triggers], "marginal": self.marginal.tolist(),
                "transitions": self.transitions.tolist()}

    @classmethod
    def from_dict(cls, blob: dict) -> BigramBackcopy:
        return cls(np.asarray(blob["transitions"]), np.asarray(blob["marginal"]), tuple(blob["triggers"]),
                   blob["seq_len"], blob["corpus"], blob["corpus_sha256"])


@dataclasses.dataclass
class CharLM(Task):
    """Character-level language modelling on a bundled corpus (see the module docstring)."""

    text: np.ndarray  # the whole corpus as ids, documents joined by a blank line
    seq_len: int
    corpus: str
    corpus_sha256: str
    name: str = "char-lm"
    eval_fraction: float = 0.05

    @classmethod
    def from_corpus(cls, corpus: str, seq_len: int) -> CharLM:
        docs, sha = _corpus_ids(corpus)
        separator = encode("\n\n")
        text = np.concatenate([part for doc in docs for part in (doc, separator)][:-1])
        if len(text) < 40 * seq_len:
            raise InputError(f"corpus {corpus!r} has {len(text)} characters: too few for windows of {seq_len}")
        return cls(text, seq_len, corpus, sha)

    def _windows(self, rng: np.random.Generator, batch_size: int, split: str) -> np.ndarray:
        cut = int(len(self.text) * (1 - self.eval_fraction))
        low, high = (0, cut - self.seq_len) if split == "train" else (cut, len(self.text) - self.seq_len)
        starts = rng.integers(low, high, size=batch_size)
        body = self.text[starts[:, None] + np.arange(self.seq_len)]  # [B, seq_len]: T - 1 inputs + 1 target
        return np.concatenate([np.full((batch_size, 1), BOS_ID), body], axis=1)

    def batch(self, rng: np.random.Generator, batch_size: int, split: str = "train"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        seq = torch.from_numpy(self._windows(rng, batch_size, split))
        return seq[:, :-1], seq[:, 1:]

    def to_dict(self) -> dict:
        return {"name": self.name, "seq_len": self.seq_len, "corpus": self.corpus,
                "corpus_sha256": self.corpus_sha256, "alphabet": ALPHABET, "eval_fraction": self.eval_fraction,
                "characters": int(len(self.text)), "text_sha256": sha256_bytes(self.text.tobytes())}


def make_task(name: str, corpus: str = DEFAULT_CORPUS, seq_len: int = 128, n_triggers: int = 3) -> Task:
    """Build a task from a fetched corpus (`sinkbench data fetch shakespeare`)."""
    check_task(name)
    check_range("sequence length", seq_len, 4, 4096)
    if name == "bigram-backcopy":
        check_range("number of triggers", n_triggers, 1, len(ALPHABET) - 2)
        return BigramBackcopy.from_corpus(corpus, seq_len, n_triggers)
    return CharLM.from_corpus(corpus, seq_len)


def load_task(directory: str | Path) -> Task:
    """The task a run directory was trained on. Bigram-Backcopy is stored whole (no corpus needed);
    char-lm re-reads its corpus and checks that the text is unchanged."""
    path = Path(directory) / TASK_FILE
    if not path.is_file():
        raise InputError(f"{path} does not exist: not a toy run directory")
    blob: dict[str, Any] = json.loads(path.read_text())
    if blob.get("alphabet") != ALPHABET:
        raise InputError(f"{path} uses a different character alphabet than this version of workbench.toy")
    if blob["name"] == "bigram-backcopy":
        return BigramBackcopy.from_dict(blob)
    task = CharLM.from_corpus(blob["corpus"], blob["seq_len"])
    if sha256_bytes(task.text.tobytes()) != blob["text_sha256"]:
        raise InputError(f"corpus {blob['corpus']!r} changed since the run in {directory} was trained")
    return task
