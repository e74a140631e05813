"""Mixed image+text sequences as experiment data: S = [BOS] [V'] question answer, with the kind of every position.

    >>> data = mixed_set(model, n=64, seed=0)                   # generated scenes, every question type
    >>> probes.mixed_attention(model, data)                     # text queries' attention to each kind, per layer
    >>> PassContext.of(model, tokens, "bg")                     # sinks: bos, visual, bg, obj, question, answer

A `MixedSet` speaks the protocol of `workbench.core.data.Dataset` (`batches`, `model_inputs`, `check_model`), so
the hooked pass (`workbench.passes`), every probe and every catalogue entry run on it unchanged. Its tokens are the
model's input ids with the kind of each position in the high bits (`workbench.core.positions.KIND_STRIDE`):
visual tokens are background or object by the image's own mask (a visual token is object when its patch holds a
shape pixel), and the last position is the first answer token. `model_inputs` returns the input embeddings of S
(`workbench.multimodal.llava.visual_embeddings`), which the bridge runs as `inputs_embeds`.

Each sequence ends with the first token of the answer: the answer sets of `workbench.multimodal.scenes` differ in
their first character, so the logits at the last question position decide the answer (`answer_logits`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from workbench.core import positions
from workbench.core.errors import InputError, check_range
from workbench.multimodal.llava import require_multimodal, visual_embeddings
from workbench.multimodal.scenes import QUESTIONS, Scenes, check_question, scenes
from workbench.vision.images import to_model_input
from workbench.vision.shapes import object_patches


@dataclasses.dataclass
class MixedSet:
    """Mixed sequences for one multimodal model: tokens [n, T] (ids + kinds), the scenes' pixels and masks, the
    question type of each sequence and the candidate first-answer ids of each question type."""

    tokens: torch.Tensor
    scenes: Scenes
    question: list[str]
    candidates: dict[str, list[int]]
    answer_index: np.ndarray  # [n] index of the right answer in its question's candidates
    model: Any = dataclasses.field(repr=False, default=None)
    source: str = "generated scenes"
    seed: int = 0
    tokenizer_id: str | None = None
    prepared_for: str | None = None
    bos_by_default: bool | None = True

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def sequences(self) -> list[np.ndarray]:
        return [row.numpy() for row in self.tokens]

    @property
    def lengths(self) -> list[int]:
        return [self.tokens.shape[1]] * len(self)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.numel())

    def hash(self) -> str:
        digest = hashlib.sha256(self.tokens.numpy().astype("<i8").tobytes())
        digest.update(np.ascontiguousarray(self.scenes.pixels).tobytes())
        return digest.hexdigest()

    def check_model(self, model: Any) -> None:
        model_info = require_multimodal(model, f"{self.source} (mixed image+text sequences)")
        if self.tokenizer_id is not None and model_info.tokenizer_fingerprint() != self.tokenizer_id:
            raise InputError(f"{self.source} was built for {self.prepared_for}; {model_info.name} has another "
                             f"tokenizer: build the set again with mixed_set({model_info.name!r} model)")
        if self.model is not None and info_name(self.model) != model_info.name:
            raise InputError(f"{self.source} was built for {self.prepared_for}; it embeds its images with that model's "
                             f"vision tower, not {model_info.name}'s: build it again for {model_info.name}")

    def batches(self, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        check_range("batch size", batch_size, 1, 1 << 20)
        for start in range(0, len(self), batch_size):
            index = list(range(start, min(start + batch_size, len(self))))
            yield index, self.tokens[index]

    def model_inputs(self, index: Sequence[int], tokens: torch.Tensor) -> torch.Tensor:
        """The input embeddings [b, T, d] of these rows (visual features at the image slots)."""
        model_info = require_multimodal(self.model, "a mixed set's inputs")
        pixels = to_model_input(self.scenes.pixels[list(index)], model_info.image_mean, model_info.image_std)
        return visual_embeddings(self.model, positions.mixed_ids(tokens), pixels)

    def describe(self) -> str:
        counts = {q: self.question.count(q) for q in dict.fromkeys(self.question)}
        return (f"{self.source}: {len(self)} mixed sequences x {self.tokens.shape[1]} positions ([BOS] + "
                f"{int((self.kinds() >= positions.MIXED_VISUAL_BG).sum(1)[0])} visual tokens + question + first answer "
                f"token); questions " + ", ".join(f"{q} {c}" for q, c in counts.items()))

    def provenance(self) -> dict:
        return {"data_source": self.source, "data_sha256": self.hash(), "bos_policy": "bos", "n_sequences": len(self),
                "n_tokens": self.n_tokens, "data_seed": self.seed, "tokenizer_fingerprint": self.tokenizer_id,
                "questions": sorted(set(self.question))}

    def kinds(self) -> torch.Tensor:
        """[n, T] the kind of every position (positions.MIXED_*)."""
        return positions.mixed_kinds(self.tokens)

    def subset(self, index: Sequence[int]) -> MixedSet:
        index = list(index)
        picked = Scenes(*(getattr(self.scenes, f.name)[index] for f in dataclasses.fields(Scenes)))
        return dataclasses.replace(self, tokens=self.tokens[index], scenes=picked,
                                   question=[self.question[i] for i in index], answer_index=self.answer_index[index])


def info_name(model: Any) -> str:
    from workbench.core.modelinfo import info

    return info(model).name


def mixed_set(model: Any, n: int = 64, seed: int = 0, questions: Sequence[str] | str | None = None) -> MixedSet:
    """`n` mixed sequences for `model`: scenes at its tower's image size (seed `seed`), question types in turn
    (all four by default), each sequence [BOS] [V'] question first-answer-token."""
    model_info = require_multimodal(model, "a mixed image+text set")
    check_range("number of sequences", n, 1, 1 << 20)
    names = list(QUESTIONS) if questions is None else [questions] if isinstance(questions, str) else list(questions)
    if not names:
        raise InputError(f"no question types given: use some of {', '.join(QUESTIONS)}")
    chosen = [check_question(q) for q in names]
    size = model_info.image_size[0]
    scene = scenes(n, size=size, seed=seed)
    grid = size // model_info.patch_size
    if grid * grid != model_info.n_image_tokens:
        raise InputError(f"{model_info.name}: {model_info.n_image_tokens} visual tokens per image is not a {grid} x "
                         f"{grid} patch grid; mixed sets need one visual token per patch")
    objects = object_patches(scene.masks, model_info.patch_size).reshape(n, -1)  # [n, N] row-major, as the tower
    tokenizer = model_info.tokenizer
    candidates = {q.name: [first_id(tokenizer, answer) for answer in q.answers] for q in chosen}
    for q in chosen:
        if len(set(candidates[q.name])) != len(q.answers):
            raise InputError(f"question {q.name!r}: the answers {q.answers} share a first token under "
                             f"{model_info.name}'s tokenizer, so the first answer token cannot decide them")
    rows, question_of, answer_index = [], [], []
    for i in range(n):
        q = chosen[i % len(chosen)]
        answer = q.answer(scene, i)
        prompt = tokenizer(q.text, add_special_tokens=False)["input_ids"]
        visual = np.where(objects[i], positions.MIXED_VISUAL_OBJ, positions.MIXED_VISUAL_BG) * positions.KIND_STRIDE \
            + model_info.image_token_id
        answer_token = positions.MIXED_ANSWER * positions.KIND_STRIDE + first_id(tokenizer, answer)
        rows.append(np.concatenate([[model_info.bos_token_id], visual, prompt, [answer_token]]).astype(np.int64))
        question_of.append(q.name)
        answer_index.append(q.answers.index(answer))
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise InputError(f"question texts of different token lengths {sorted(lengths)} under {model_info.name}'s "
                         "tokenizer: ask one question type per set (questions='shape')")
    return MixedSet(torch.from_numpy(np.stack(rows)), scene, question_of, candidates, np.array(answer_index),
                    model=model, source=f"scenes(n={n}, seed={seed}, questions={'+'.join(names)})", seed=seed,
                    tokenizer_id=model_info.tokenizer_fingerprint(), prepared_for=model_info.name)


def first_id(tokenizer: Any, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InputError(f"{text!r} encodes to no token")
    return int(ids[0])


def answer_logits(logits: torch.Tensor, data: MixedSet, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct [b] bool, margin [b]): whether the right answer's first token has the largest logit among its
    question's candidates at the last question position, and its logit minus the best wrong candidate's."""
    correct, margin = [], []
    for row, i in enumerate(index):
        ids = data.candidates[data.question[i]]
        scores = logits[row, -2, ids].float()
        right = int(data.answer_index[i])
        wrong = torch.cat([scores[:right], scores[right + 1:]])
        correct.append(bool(scores.argmax() == right))
        margin.append(float(scores[right] - wrong.max()))
    return torch.tensor(correct), torch.tensor(margin)
