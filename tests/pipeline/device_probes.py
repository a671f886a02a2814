"""Two probes of device discipline that run on a CPU-only machine (docs/design.md §3.10).

On a GPU two mistakes slow or break a session: moving a large tensor back to the host, and
creating a tensor without a device (it lands on the host, the default device, and then meets a
GPU tensor). A CPU-only machine has no second device to show either, so:

- :class:`HostRequests` counts every ``.cpu()``, ``.numpy()``, ``.tolist()`` and ``.item()``
  and where in mirage it was asked (file:line): code that keeps its work on the device asks
  for nothing the size of a frame;
- :class:`BareFactoriesOnMeta` puts every tensor that mirage's pipeline, memory or backbone
  code creates without a ``device`` on the "meta" device (shapes, no data), as if the default
  device were another one: mixing it with a real tensor, or reading its values, raises. Host
  tensors made on purpose (the sampling noise of the CPU generator, a schedule read as numbers)
  say ``device="cpu"``.
"""

from __future__ import annotations

import collections
import sys
import traceback

import torch
from torch.overrides import TorchFunctionMode

HOST_REQUESTS = ("cpu", "numpy", "tolist", "item")
FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace, torch.logspace,
             torch.tensor, torch.as_tensor, torch.scalar_tensor, torch.randn, torch.rand, torch.randint, torch.eye}
SCOPE = tuple(f"/src/mirage/{package}/" for package in ("pipeline", "memory", "backbones"))


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


class BareFactoriesOnMeta(TorchFunctionMode):
    """While active, a factory call without ``device`` made directly by code in ``scope`` (path
    fragments) creates its tensor on "meta". ``torch.as_tensor`` of a tensor keeps its device,
    as it does without this mode. ``created`` counts the calls moved by where they were made."""

    def __init__(self, scope: tuple[str, ...] = SCOPE) -> None:
        super().__init__()
        self.scope = scope
        self.created: collections.Counter = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in FACTORIES and kwargs.get("device") is None and not (
                func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)):
            caller = sys._getframe(1)
            if any(part in caller.f_code.co_filename for part in self.scope):
                kwargs["device"] = "meta"
                self.created[f"{caller.f_code.co_filename.rsplit('/mirage/', 1)[-1]}:{caller.f_lineno}"] += 1
        return func(*args, **kwargs)
