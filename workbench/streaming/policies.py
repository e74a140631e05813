"""Which cached tokens stay? KV-cache policies as small value objects, and the grid the CLI runs.

    >>> policies = [Dense(), Window(256), Sinks(4, 256), Sinks(4, 256, "newline"), Recompute(256)]
    >>> policies = policy_grid(["sinks"], sinks=[0, 1, 2, 4, 8], windows=[256, 512])   # Xiao Table 2

The built-in policies (write your own: subclass `CachePolicy`, implement `keep`):
- `Dense()`: every token stays, up to the model's context;
- `Window(W)`: the last W tokens;
- `Sinks(S, W)`: the first S tokens and the last W - S (`Sinks(0, W)` is `Window(W)`);
  `replace_sinks="newline"` feeds S newline tokens instead of the first S tokens (Xiao Table 1);
- `Recompute(W, S=0)`: sliding window with re-computation, the quality reference: every prediction
  re-encodes its kept tokens from scratch through the model's ordinary forward pass.

W is the whole cache budget: S sinks + W - S recent tokens, the token being read among them, so a
query attends to at most W keys. Xiao's "4+1020" is `Sinks(4, 1024)`; their code prunes after each
step, so there a query sees one key more (W + 1). Every result row records the policy's `columns()`:
`policy`, `sinks`, `window`, `recent` = W - S and `replace_sinks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.core.errors import InputError

REPLACEMENTS = {"newline": "\n"}


@dataclasses.dataclass(frozen=True)
class CacheView:
    """What a policy sees when the cache is full: one entry per slot, in slot (= arrival) order."""

    step: int  # text index of the token about to be read
    positions: Int[Tensor, " n"]  # noqa: F722  text index of the token in each slot
    attention: Float[Tensor, " n"]  # noqa: F722  attention the last query paid each slot, mean over layers and heads
    attention_sum: Float[Tensor, " n"]  # noqa: F722  the same summed over every query since the slot was filled (H2O-style)

    @property
    def n(self) -> int:
        return len(self.positions)


class CachePolicy:
    """Decides which cached tokens stay. A new policy subclasses this and implements `keep`:

        >>> @dataclasses.dataclass(frozen=True)
        ... class KeepTopAttended(CachePolicy):          # keep the most-attended keys + the newest one
        ...     window: int = 64
        ...     name = "top-attended"
        ...     def keep(self, view):
        ...         top = view.attention_sum[:-1].topk(self.window - 2).indices
        ...         return torch.cat([top, torch.tensor([view.n - 1])])

    `keep(view)` is called whenever the cache holds `window` entries and a token is to be read; it
    returns the slot indices to keep (at most window - 1, any order; slot order is preserved). Kept
    tokens are renumbered 0..k-1: positions live inside the cache. Only the exact path runs custom
    policies; the fast path needs `band()`.
    """

    name: ClassVar[str] = "custom"
    recompute: ClassVar[bool] = False
    window: int | None = None  # cache budget in entries (the token being read included); None: unbounded
    sinks: int = 0
    replace_sinks: str | None = None

    def keep(self, view: CacheView) -> Int[Tensor, " k"]:  # noqa: F722
        raise NotImplementedError(f"{type(self).__name__} must implement keep(view)")

    def band(self) -> tuple[int, int | None] | None:
        """(S, W) if this policy always keeps exactly the first S and the last W - S tokens (the fast path's contract)."""
        return None

    def columns(self) -> dict:
        """The policy's columns in every result row."""
        recent = None if self.window is None else self.window - self.sinks
        return {"policy": self.name, "sinks": self.sinks, "window": self.window, "recent": recent,
                "replace_sinks": self.replace_sinks}

    def label(self) -> str:
        if self.window is None:
            return self.name
        extra = f", {self.sinks} x {self.replace_sinks}" if self.replace_sinks else ""
        return f"{self.name} {self.sinks}+{self.window - self.sinks}{extra}"


def _check_budget(sinks: int, window: int) -> None:
    for what, value in (("sinks S", sinks), ("window W", window)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{what} must be an integer, got {value!r}")
    if sinks < 0:
        raise InputError(f"sinks S = {sinks}: the number of kept first tokens cannot be negative (allowed S >= 0)")
    if window < 1:
        raise InputError(f"window W = {window}: the cache must hold at least the token being read (allowed W >= 1)")
    if window <= sinks:
        raise InputError(f"window W = {window} with sinks S = {sinks}: W is the whole cache (S sinks + W - S recent "
                         f"tokens, the token being read among them), so W must exceed S (allowed W >= {sinks + 1})")


def _first_and_last(n: int, first: int, last: int) -> Tensor:
    """Slot indices 0..first-1 and the last `last` slots of n."""
    return torch.cat([torch.arange(first), torch.arange(n - last, n)])


@dataclasses.dataclass(frozen=True)
class Dense(CachePolicy):
    """Keep every token; only defined up to the model's context."""

    name: ClassVar[str] = "dense"

    def keep(self, view: CacheView) -> Tensor:
        return torch.arange(view.n)  # never called: the cache of a dense run is sized to the text

    def band(self) -> tuple[int, int | None]:
        return (0, None)


@dataclasses.dataclass(frozen=True)
class Sinks(CachePolicy):
    """Keep the first `sinks` tokens and the last `window - sinks` (StreamingLLM, Xiao et al. 2024)."""

    sinks: int = 4
    window: int = 256
    replace_sinks: str | None = None  # "newline": the first S tokens read are "\n" instead (Xiao Table 1)
    name: ClassVar[str] = "sinks"

    def __post_init__(self) -> None:
        _check_budget(self.sinks, self.window)
        if self.replace_sinks is not None and self.replace_sinks not in REPLACEMENTS:
            raise InputError(f"replace_sinks = {self.replace_sinks!r}: allowed {', '.join(REPLACEMENTS)} or None")
        if self.replace_sinks is not None and self.sinks == 0:
            raise InputError("replace_sinks needs sinks S >= 1: there is nothing to replace with S = 0")

    def keep(self, view: CacheView) -> Tensor:
        return _first_and_last(view.n, self.sinks, self.window - self.sinks - 1)

    def band(self) -> tuple[int, int | None]:
        return (self.sinks, self.window)


@dataclasses.dataclass(frozen=True)
class Window(Sinks):
    """Keep the last `window` tokens (window attention: `Sinks(0, window)`)."""

    window: int = 256
    sinks: int = dataclasses.field(default=0, init=False)
    replace_sinks: str | None = dataclasses.field(default=None, init=False)
    name: ClassVar[str] = "window"


@dataclasses.dataclass(frozen=True)
class Recompute(CachePolicy):
    """Sliding window with re-computation (Xiao's reference): each prediction re-encodes the first
    `sinks` tokens and the last `window - sinks` from scratch, at positions 0..W-1, through the
    model's ordinary forward pass (so it runs on any causal LM)."""

    window: int = 256
    sinks: int = 0
    name: ClassVar[str] = "recompute"
    recompute: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_budget(self.sinks, self.window)

    def keep(self, view: CacheView) -> Tensor:
        return _first_and_last(view.n, self.sinks, self.window - self.sinks - 1)


POLICY_NAMES = ("dense", "window", "sinks", "recompute")


def policy_grid(names: Sequence[str], sinks: Sequence[int] | None = None, windows: Sequence[int] | None = None,
                replace_sinks: str | None = None) -> list[CachePolicy]:
    """The built-in policies the CLI runs: each name crossed with the cache sizes (and, for `sinks`,
    with the numbers of sinks; default 4). `dense` takes neither; `window` and `recompute` keep S = 0.

        >>> policy_grid(["sinks"], sinks=[0, 1, 2, 4, 8], windows=[256, 512])    # Xiao Table 2
    """
    windows = list(windows or [256])
    sinks = list(sinks if sinks is not None else [4])
    out: list[CachePolicy] = []
    for name in names:
        if name == "dense":
            out.append(Dense())
        elif name == "window":
            out += [Window(w) for w in windows]
        elif name == "sinks":
            out += [Sinks(s, w, replace_sinks) for w in windows for s in sinks]
        elif name == "recompute":
            out += [Recompute(w) for w in windows]
        else:
            raise InputError(f"unknown policy {name!r}: allowed {', '.join(POLICY_NAMES)}")
    if replace_sinks is not None and "sinks" not in names:
        raise InputError("--replace-sinks applies to the sinks policy: add --policy sinks")
    return list(dict.fromkeys(out))  # in order, without repeats
