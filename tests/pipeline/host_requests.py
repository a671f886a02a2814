"""A probe of what a piece of code asks the host for: every ``.cpu()``, ``.numpy()``, ``.tolist()``
and ``.item()`` on a tensor, and where in mirage it was asked (file:line).

On a CPU-only machine a tensor cannot be seen leaving a device, but the request can: code that
keeps its work on the backbone's device makes no such request of a tensor the size of a frame.
"""

from __future__ import annotations

import collections
import traceback

from torch.overrides import TorchFunctionMode

HOST_REQUESTS = ("cpu", "numpy", "tolist", "item")


class HostRequests(TorchFunctionMode):
    """While active, counts host requests by (name, elements, where)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_REQUESTS and args:
            frames = [f for f in traceback.extract_stack()[:-1] if "/mirage/" in f.filename]
            where = f"{frames[-1].filename.rsplit('/mirage/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
            self.calls[(name, args[0].numel(), where)] += 1
        return func(*args, **(kwargs or {}))

    def larger_than(self, elements: int) -> list[tuple]:
        """The requests of tensors with more than ``elements`` elements."""
        return sorted(k for k in self.calls if k[1] > elements)
