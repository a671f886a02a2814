"""The training loop's accelerate engine: DDP or FSDP over processes, mixed precision.

:func:`mirage.train.loop.train_loop` runs its step through an engine. :class:`AccelerateEngine`
hands the model and optimizer to ``accelerate`` (DDP or FSDP, as ``accelerate launch`` configures
it, or DDP under ``torchrun``), so gradients are averaged over processes, and keeps the loop's
bookkeeping consistent across processes: the logged loss is the mean over processes, the
time-budget decision is shared, and only the main process writes a checkpoint while the others
wait.

Launch with ``accelerate launch --config_file configs/accelerate/ddp.yaml -m mirage train …``
or ``torchrun --nproc_per_node N -m mirage train …`` (CPU processes use gloo).

FSDP: checkpoints gather the full (unsharded) trainable weights on the main process; the
sharded optimizer state is not written, so a resumed FSDP run restarts AdamW's moments
. DDP and single-process runs resume exactly.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["AccelerateEngine", "make_accelerator"]


def make_accelerator(mixed_precision: str = "auto", cpu: bool | None = None):
    """An ``accelerate.Accelerator``: bf16 autocast on GPU (``"auto"``), none on CPU.

    Under ``torchrun``/``accelerate launch`` it joins the process group those set up.
    """
    from accelerate import Accelerator

    if cpu is None:
        cpu = not torch.cuda.is_available()
    if mixed_precision == "auto":
        mixed_precision = "no" if cpu else "bf16"
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


class AccelerateEngine:
    """Run :func:`~mirage.train.loop.train_loop` steps through an ``accelerate.Accelerator``."""

    def __init__(self, accelerator) -> None:
        self.accelerator = accelerator
        self._model: nn.Module | None = None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self.accelerator.process_index

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def fsdp(self) -> bool:
        return "FSDP" in str(self.accelerator.distributed_type)

    @property
    def checkpoint_optimizer(self) -> bool:
        return not self.fsdp

    def prepare(self, model: nn.Module, optimizer):
        model, optimizer = self.accelerator.prepare(model, optimizer)
        self._model = model
        return model, optimizer

    def backward(self, loss: Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, params, max_norm: float) -> None:
        # accelerate unscales fp16 gradients first and uses FSDP's own clipping when sharded
        self.accelerator.clip_grad_norm_(params, max_norm)

    def mean(self, value: float) -> float:
        if self.num_processes == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        return float(self.accelerator.reduce(t, reduction="mean")[0])

    def any(self, flag: bool) -> bool:
        if self.num_processes == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(t, reduction="sum")[0] > 0)

    def _full_params(self):
        if not self.fsdp or self._model is None:
            return contextlib.nullcontext()
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.summon_full_params(self._model, writeback=False, rank0_only=True, offload_to_cpu=True)

    def save(self, write: Callable[[], None]) -> None:
        self.accelerator.wait_for_everyone()
        with self._full_params():
            if self.is_main:
                write()
        self.accelerator.wait_for_everyone()
