"""Progress bars that show only where they help: several steps, and a terminal or notebook.

    >>> for batch in progress_bar(batches, desc="sinks"):
    ...     ...

On a terminal (or in a notebook) this is a tqdm bar. Anywhere else (a `make reproduce` log, CI, a pipe)
a bar would write one carriage-return frame per step, so it prints a plain line every few percent
instead, or after a long silence. SINKBENCH_PROGRESS=0 turns both off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

LOG_EVERY_PERCENT = 5  # one log line each time progress passes a multiple of this
LOG_SILENCE_S = 30.0  # ... or when a step finishes this long after the last line


def progress_bar(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterator[T]:
    """`items`, with progress shown on stderr when there is more than one and SINKBENCH_PROGRESS is not 0."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    count = total if total is not None else len(items)  # type: ignore[arg-type]
    if not enabled or count <= 1 or os.environ.get("SINKBENCH_PROGRESS") == "0":
        yield from items
        return
    if not _interactive(sys.stderr):
        yield from progress_lines(items, desc, count, sys.stderr)
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=desc, total=count, leave=False, dynamic_ncols=True)


def progress_lines(items: Iterable[T], desc: str, total: int, stream: TextIO) -> Iterator[T]:
    """`items`, writing `desc: done/total (pct%), elapsed` to `stream` every few percent (for logs).

        >>> list(progress_lines(range(100), "demo", 100, sys.stderr))    # 20 lines: 5%, 10%, ... 100%
    """
    start = last = time.monotonic()
    next_percent = LOG_EVERY_PERCENT
    for done, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        percent = done * 100 // total
        if percent >= next_percent or done == total or now - last >= LOG_SILENCE_S:
            print(f"{desc}: {done}/{total} ({percent}%), {now - start:.1f} s", file=stream, flush=True)
            last = now
            next_percent = (percent // LOG_EVERY_PERCENT + 1) * LOG_EVERY_PERCENT


def _interactive(stream: TextIO) -> bool:
    """A terminal, or a Jupyter kernel (whose stderr is no terminal but draws tqdm's widget)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    shell = sys.modules["IPython"].get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
