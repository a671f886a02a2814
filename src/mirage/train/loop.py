"""A generic training loop: a model, a batch function, a loss, AdamW, checkpoints and resume.

It knows nothing about what it trains, so the tiny model's stages and (later) the Wan2.2
control-branch/LoRA stages share it. Determinism: batch ``i`` is built by ``make_batch(i)``
(which seeds its own generator from the step), so a resumed run sees the same batches as an
uninterrupted one.

Where it runs is an *engine*: :class:`LocalEngine` (plain PyTorch in this process, the default,
what ``mirage train tiny`` uses) or :class:`mirage.train.distributed.AccelerateEngine`
(accelerate: DDP/FSDP over processes, mixed precision), which ``mirage train wan`` uses. The
step (batch, loss, backward, clipping, AdamW, checkpoints) is the same code for both; with one
process and no mixed precision the two engines give the same numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from mirage.errors import ConfigError
from mirage.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["LoopConfig", "LocalEngine", "train_loop", "cosine_lr"]


@dataclass(frozen=True)
class LoopConfig:
    """``steps`` optimizer steps at peak ``lr`` (linear warm-up, cosine decay to ``min_lr_ratio``).

    ``max_seconds`` stops early (recorded in the returned state) when the wall-clock budget is
    spent; 0 means no limit. With a budget, the cosine follows whichever is further along: the
    step, or the step the clock implies (``seconds / max_seconds · steps``, the budget's even
    pace). So a run the budget cuts short still ends at ``min_lr_ratio``, and a run that stays
    ahead of that pace follows its steps alone and is reproducible bit for bit. A checkpoint is
    written every ``checkpoint_every`` steps and at the end.
    """

    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    max_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.lr <= 0 or self.checkpoint_every < 1:
            raise ConfigError(
                f"`steps` ≥ 0, `lr` > 0 and `checkpoint_every` ≥ 1 required but got "
                f"{self.steps}, {self.lr}, {self.checkpoint_every}"
            )


def cosine_lr(step: int, config: LoopConfig, seconds: float = 0.0) -> float:
    """The learning rate at ``step``, ``seconds`` into the stage (see :class:`LoopConfig`)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.max_seconds > 0:  # the step the clock says the run should be at, if further on
        step = max(step, seconds / config.max_seconds * config.steps)
    p = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


class LocalEngine:
    """Run the loop in this process with plain PyTorch (no wrapping, no collectives)."""

    is_main = True
    checkpoint_optimizer = True  # False where the optimizer state is sharded (FSDP)

    def prepare(self, model: nn.Module, optimizer):
        return model, optimizer

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over processes (here: itself)."""
        return value

    def any(self, flag: bool) -> bool:
        """True if ``flag`` is True on any process (here: itself)."""
        return flag

    def save(self, write: Callable[[], None]) -> None:
        """Run ``write`` on the main process once every process has reached this point."""
        write()


def train_loop(
    name: str,
    model: nn.Module,
    params,
    make_batch: Callable[[int], object],
    loss_fn: Callable[[nn.Module, object], tuple[Tensor, dict]],
    config: LoopConfig,
    checkpoint: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    engine=None,
    checkpoint_module: nn.Module | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train ``params`` of ``model`` for ``config.steps`` steps; returns the final loop state.

    ``checkpoint`` is the stage's checkpoint file: with ``resume`` and an existing file the run
    continues from it; a finished stage (state ``done``) returns at once, unless ``config.steps``
    has grown since (then it trains on to the new count).

    ``engine``: where the step runs (default :class:`LocalEngine`); ``loss_fn`` gets the model
    the engine prepared (e.g. DDP-wrapped). ``checkpoint_module``: the module whose state dict is
    checkpointed (default ``model``; a trainer that trains a few parameters of a large frozen
    model passes a module holding just those). ``on_step(step, record)`` runs on the main
    process after every step with the step's loss (averaged over processes), lr and metrics.
    """
    from tqdm.auto import tqdm

    engine = engine or LocalEngine()
    saved = model if checkpoint_module is None else checkpoint_module
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    checkpoint = Path(checkpoint)
    state = {"stage": name, "step": 0, "done": False, "seconds": 0.0, "loss_ema": None}
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, saved, optimizer)
        if state.get("done"):
            if state["step"] >= config.steps or state.get("stopped_early"):
                return state
            state["done"] = False  # more steps asked for: train on
    wrapped, optimizer = engine.prepare(model, optimizer)
    kept = optimizer if engine.checkpoint_optimizer else None
    start_step, start_time, seconds0 = state["step"], time.monotonic(), state["seconds"]
    bar = tqdm(total=config.steps, initial=start_step, desc=name,
               disable=not (progress and engine.is_main), mininterval=5.0)
    model.train()
    step = start_step
    for step in range(start_step, config.steps):
        lr = cosine_lr(step, config, state["seconds"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, metrics = loss_fn(wrapped, make_batch(step))
        optimizer.zero_grad(set_to_none=True)
        engine.backward(loss)
        if config.grad_clip > 0:
            engine.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        value = engine.mean(float(loss.detach()))
        ema = state["loss_ema"]
        state["loss_ema"] = value if ema is None else 0.98 * ema + 0.02 * value
        state["last"] = {k: float(v) for k, v in metrics.items()}
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss_ema']:.4g}", refresh=False)
        state["step"] = step + 1
        state["seconds"] = seconds0 + time.monotonic() - start_time
        if on_step is not None and engine.is_main:
            on_step(step + 1, {"loss": value, "lr": lr, **state["last"]})
        if log is not None and engine.is_main and (step + 1) % 50 == 0:
            log(f"{name} step {step + 1}/{config.steps} loss_ema {state['loss_ema']:.5g} "
                f"{state['last']} {state['seconds']:.0f}s")
        over = engine.any(config.max_seconds > 0 and state["seconds"] >= config.max_seconds)
        if (step + 1) % config.checkpoint_every == 0 or over:
            engine.save(lambda: save_checkpoint(checkpoint, saved, kept, state))
        if over:
            state["stopped_early"] = True
            break
    bar.close()
    model.eval()
    state["done"] = True
    engine.save(lambda: save_checkpoint(checkpoint, saved, kept, state))
    return state
