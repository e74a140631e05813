"""Generated scenes and questions about them: what the small multimodal model of the zoo learns to answer.

    >>> scene = scenes(8, size=32, seed=0)         # 1 or 2 copies of one coloured shape on a dark background
    >>> scene.pixels.shape, scene.masks.shape      # (8, 32, 32, 3) in [0, 1], (8, 32, 32) bool: the object mask
    >>> QUESTIONS["colour"].answer(scene, 0)        # 'red'

Every image carries its object mask (the pixels of its shapes), so the visual tokens of a mixed sequence
split into background and object exactly as the patches of an image model do (`workbench.vision.shapes`).
Four question types, each with a fixed answer set whose first characters differ, so the first answer token
decides the answer (accuracy = the right candidate has the largest first-token logit among the candidates):
shape (square / circle / triangle / diamond), colour (red / green / blue / yellow), position (left / right:
the side of the image the shapes' centre lies on) and count (1 / 2). Generation is numpy, fully determined
by the seed; this module imports no torch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from workbench.core.errors import InputError, check_range
from workbench.vision.shapes import SHAPES, _inside

SCENE_SHAPES = ("square", "circle", "triangle", "diamond")
COLOURS = {"red": (0.9, 0.15, 0.15), "green": (0.15, 0.85, 0.2), "blue": (0.2, 0.35, 0.95), "yellow": (0.95, 0.9, 0.2)}
SIDES = ("left", "right")
COUNTS = ("1", "2")


@dataclasses.dataclass(frozen=True)
class Scenes:
    """A batch of scenes: pixels [n, H, W, 3] float32 in [0, 1], object masks [n, H, W] bool, and per image the
    shape (index into SCENE_SHAPES), colour (index into COLOURS), side (index into SIDES) and count (1 or 2)."""

    pixels: np.ndarray
    masks: np.ndarray
    shape: np.ndarray
    colour: np.ndarray
    side: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.pixels)


@dataclasses.dataclass(frozen=True)
class Question:
    """One question type: its text and its answer set (first characters distinct)."""

    name: str
    text: str
    answers: tuple[str, ...]

    def answer(self, scene: Scenes, i: int) -> str:
        if self.name == "shape":
            return SCENE_SHAPES[scene.shape[i]]
        if self.name == "colour":
            return list(COLOURS)[scene.colour[i]]
        if self.name == "position":
            return SIDES[scene.side[i]]
        return COUNTS[scene.count[i] - 1]


QUESTIONS = {q.name: q for q in [
    Question("shape", "shape?", SCENE_SHAPES),
    Question("colour", "color?", tuple(COLOURS)),  # six characters, like the other three questions
    Question("position", "where?", SIDES),
    Question("count", "count?", COUNTS),
]}


def scenes(n: int, size: int = 32, seed: int | tuple[int, ...] = 0) -> Scenes:
    """`n` scenes: one or two copies (same shape, same colour, radius size/6..size/4.5, apart) on a dark grey
    background; the shapes' mean centre is at least size/10 from the vertical midline, so left/right is clear."""
    check_range("number of scenes", n, 1, 1 << 22)
    check_range("scene size", size, 16, 1024)
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, len(SCENE_SHAPES), size=n)
    colour = rng.integers(0, len(COLOURS), size=n)
    count = rng.integers(1, 3, size=n)
    radius = rng.uniform(size / 6, size / 4.5, size=n)
    grey = rng.uniform(0.0, 0.25, size=n)
    palette = np.array(list(COLOURS.values()), dtype=np.float64)
    grid = np.arange(size) + 0.5
    masks = np.zeros((n, size, size), dtype=bool)
    side = np.zeros(n, dtype=np.int64)
    for i in range(n):
        r = radius[i]
        for _ in range(1000):  # rejection: copies apart, the centre off the midline
            centres = rng.uniform(r, size - r, size=(count[i], 2))
            apart = count[i] == 1 or np.linalg.norm(centres[0] - centres[1]) > 2 * r + 1
            if apart and abs(centres[:, 0].mean() - size / 2) >= size / 10:
                break
        else:  # pragma: no cover - the box is large enough for every radius drawn
            raise InputError(f"could not place {count[i]} shapes of radius {r:.1f} in a {size} x {size} image")
        kind = SHAPES.index(SCENE_SHAPES[shape[i]])
        for cx, cy in centres:
            dx = grid[None, None, :] - cx
            dy = grid[None, :, None] - cy
            masks[i] |= _inside(kind, dx, dy, np.array([[[r]]]))[0]
        side[i] = int(centres[:, 0].mean() >= size / 2)
    background = np.repeat(grey[:, None], 3, axis=1)
    pixels = np.where(masks[..., None], palette[colour][:, None, None, :], background[:, None, None, :])
    return Scenes(pixels.astype(np.float32), masks, shape.astype(np.int64), colour.astype(np.int64), side,
                  count.astype(np.int64))


def check_question(name: str) -> Question:
    if name not in QUESTIONS:
        raise InputError(f"unknown question type {name!r}: use one of {', '.join(QUESTIONS)}")
    return QUESTIONS[name]
