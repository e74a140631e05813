"""The positions of an image model and their kinds: what a token id is to text, a kind is to a patch.

    >>> kind_ids(info, "bg")            # [4, 6]: background patches, plain or high-norm
    >>> patch_position(info, 2, 3)      # sequence position of patch (row 2, column 3)

Positions of an image model (T = prefix + patches + registers):
    [CLS] ([DIST] on DeiT) | patches, row-major over the grid | [REG0] .. [REG(N-1)]
The `tokens` of an image batch are these kind codes, so sink specs (`cls`, `dist`, `reg`, `reg:K`,
`bg`, `obj`, `top-norm`, `patch:R,C`), the sink-tokens probe, `str_tokens` and every catalogue
intervention work on images with the machinery written for text. A patch's kind says whether it is
background (read from the image, `workbench.vision.shapes.background_patches`) and whether a high-norm
rule flagged it (`workbench.probes.high_norm.mark_high_norm`). This module imports no torch.
"""

from __future__ import annotations

from typing import Any

from workbench.core.errors import InputError

VISION_MODEL_TYPES = ("vit", "deit")  # transformers model types the TransformerLens ViT adapter boots

# Position kinds (the "token ids" of an image batch).
CLS, DIST, TEST_TIME_REGISTER = 0, 1, 2
BACKGROUND, OBJECT, BACKGROUND_HIGH, OBJECT_HIGH = 4, 5, 6, 7
REGISTER = 16  # register k has kind REGISTER + k
PATCH_KINDS = (BACKGROUND, OBJECT, BACKGROUND_HIGH, OBJECT_HIGH)
MAX_REGISTERS = 64


class PositionVocabulary:
    """The kinds of the positions of an image model, with the small part of a tokenizer's interface the
    workbench uses (`decode`, `get_vocab`, `convert_tokens_to_ids`): `str_tokens` names positions, and
    the sink-tokens probe ranks kinds ([CLS], registers, background, object patches) by attention."""

    def __init__(self, n_registers: int, has_distillation: bool):
        names = {CLS: "[CLS]", TEST_TIME_REGISTER: "[TTR]", BACKGROUND: "bg", OBJECT: "obj",
                 BACKGROUND_HIGH: "bg+high-norm", OBJECT_HIGH: "obj+high-norm"}
        if has_distillation:
            names[DIST] = "[DIST]"
        names.update({REGISTER + k: f"[REG{k}]" for k in range(n_registers)})
        self.names = names
        self.ids = {name: code for code, name in names.items()}
        self.unk_token_id = None
        self.all_special_ids = sorted(c for c in names if c not in PATCH_KINDS)

    def __len__(self) -> int:
        return len(self.names)

    def decode(self, ids: Any) -> str:
        return "".join(self.names.get(int(i), f"<kind {int(i)}>") for i in ids)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.ids)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.ids.get(token)

    def get_added_vocab(self) -> dict[str, int]:
        return {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.ids[text]] if text in self.ids else []}


def kind_ids(model_info: Any, sink: str) -> list[int]:
    """Kind codes a named image sink matches: cls, dist, reg (every register), reg:K, bg, obj, top-norm."""
    name = model_info.name
    if sink == "cls":
        return [CLS]
    if sink == "dist":
        if model_info.n_prefix < 2:
            raise InputError(f"sink 'dist': {name} has no distillation token (only DeiT has one)")
        return [DIST]
    if sink == "reg" or sink.startswith("reg:"):
        if not model_info.n_registers:
            raise InputError(f"sink {sink!r}: {name} has no register tokens (train one with "
                             "`sinkbench train-vit --registers 4`)")
        if sink == "reg":
            return [REGISTER + k for k in range(model_info.n_registers)]
        index = sink.split(":", 1)[1]
        if not index.isdigit() or int(index) >= model_info.n_registers:
            raise InputError(f"sink {sink!r}: {name} has {model_info.n_registers} register tokens: "
                             f"allowed reg:0..reg:{model_info.n_registers - 1}")
        return [REGISTER + int(index)]
    if sink == "bg":
        return [BACKGROUND, BACKGROUND_HIGH]
    if sink == "obj":
        return [OBJECT, OBJECT_HIGH]
    if sink == "top-norm":
        return [BACKGROUND_HIGH, OBJECT_HIGH]
    raise InputError(f"unknown image sink {sink!r}: use one of cls, dist, reg, reg:K, bg, obj, top-norm, patch:R,C")


def patch_position(model_info: Any, row: int, col: int) -> int:
    """The sequence position of patch (row, col); a clear error outside the grid."""
    rows, cols = model_info.grid
    if not (0 <= row < rows and 0 <= col < cols):
        raise InputError(f"sink patch ({row}, {col}) is outside the {rows} x {cols} patch grid of {model_info.name}: "
                         f"rows 0..{rows - 1}, columns 0..{cols - 1}")
    return model_info.n_prefix + row * cols + col


def is_vision_config(config: Any) -> bool:
    return getattr(config, "model_type", "") in VISION_MODEL_TYPES


def check_registers(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_REGISTERS:
        raise InputError(f"register count {n!r} is not allowed: use an integer in 0..{MAX_REGISTERS} "
                         "(Darcet et al. use 4; 0 = a plain ViT)")
    return n


def fixed_position_of(model_info: Any, sink: str) -> list[int]:
    """Sequence positions of [CLS] or of registers (the same in every image)."""
    if sink == "cls":
        return [0]
    codes = kind_ids(model_info, sink)  # validates the register index
    first = model_info.n_prefix + model_info.n_patches
    return [first + code - REGISTER for code in codes]


# --------------------------------------------------------------------------------------------------
# Mixed sequences of a multimodal LM (workbench.multimodal): S = [BOS] [V'] question answer
# --------------------------------------------------------------------------------------------------
# The tokens of a mixed batch are the model's input ids with each position's kind in the high bits:
# token = kind * KIND_STRIDE + id, so `mixed_ids` gives back what the model reads (visual positions hold the
# image placeholder id) and `mixed_kinds` what each position is. Plain text (BOS, question) has kind 0, so
# text-only tokens are unchanged. The object / background split of the visual tokens is read from the
# image's own mask (workbench.multimodal.scenes), like the patches of an image model.
KIND_STRIDE = 1 << 32
MIXED_TEXT, MIXED_ANSWER, MIXED_VISUAL_BG, MIXED_VISUAL_OBJ = 0, 1, 2, 3
MIXED_KIND_NAMES = {MIXED_TEXT: "text", MIXED_ANSWER: "answer", MIXED_VISUAL_BG: "visual-bg",
                    MIXED_VISUAL_OBJ: "visual-obj"}
# sink names over mixed sequences (besides bos, positions, tok:X): kind codes each matches
MIXED_SINKS = {"visual": (MIXED_VISUAL_BG, MIXED_VISUAL_OBJ), "bg": (MIXED_VISUAL_BG,), "obj": (MIXED_VISUAL_OBJ,),
               "question": (MIXED_TEXT,), "answer": (MIXED_ANSWER,), "text": (MIXED_TEXT, MIXED_ANSWER)}
MULTIMODAL_MODEL_TYPES = ("llava",)  # transformers model types of the multimodal family (workbench.multimodal)


def is_multimodal_config(config: Any) -> bool:
    return getattr(config, "model_type", "") in MULTIMODAL_MODEL_TYPES


def mixed_ids(tokens: Any) -> Any:
    """The input ids of mixed tokens (the kind bits removed); text tokens come back unchanged."""
    return tokens % KIND_STRIDE


def mixed_kinds(tokens: Any) -> Any:
    """The kind of every position of mixed tokens (MIXED_TEXT, MIXED_ANSWER, MIXED_VISUAL_BG / _OBJ)."""
    return tokens // KIND_STRIDE


def mixed_kind_mask(tokens: Any, sink: str) -> Any:
    """[b, T] bool: the positions of mixed tokens a mixed sink name matches (visual, bg, obj, question,
    answer, text). `question` is the text before the answer without position 0 (the text BOS, sink `bos`)."""
    if sink not in MIXED_SINKS:
        raise InputError(f"unknown sink {sink!r} for a mixed image+text sequence: use bos, visual, bg, obj, question, "
                         "answer, text, a position or tok:TOKEN")
    kinds = mixed_kinds(tokens)
    mask = kinds == MIXED_SINKS[sink][0]
    for code in MIXED_SINKS[sink][1:]:
        mask = mask | (kinds == code)
    if sink == "question":
        mask[:, 0] = False
    return mask
