"""Progress bars that show only where they help: several batches, and a terminal or notebook."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """tqdm over `items` when there is more than one and SINKBENCH_PROGRESS is not 0."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    if not enabled or count <= 1 or os.environ.get("SINKBENCH_PROGRESS") == "0":
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=count, leave=False, dynamic_ncols=True)
