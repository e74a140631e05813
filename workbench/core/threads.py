"""The number of torch threads a training (or any long job) runs on, restored afterwards.

    >>> with torch_threads(1):          # None: leave the process's setting alone
    ...     train(...)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from workbench.core.errors import check_range


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on `n` torch threads (1..the CPU count; None: unchanged), then restore the old number."""
    import torch

    if n is None:
        yield
        return
    check_range("threads", n, 1, os.cpu_count() or 1)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
