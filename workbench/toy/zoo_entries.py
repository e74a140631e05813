"""How the zoo learns about the toy transformers (a family entry point, see workbench.core.families):
`load("toy:DIR")` (or `toy:DIR@STEP`) loads a model trained by `sinkbench train`."""

from __future__ import annotations

from typing import Any


def _load(rest: str, device: Any = None):
    from workbench.toy.checkpoint import load_toy

    return load_toy(rest, device=device)


def register() -> None:
    from workbench.zoo.load import register_prefix

    register_prefix("toy:", _load)
