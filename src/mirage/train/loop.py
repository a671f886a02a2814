"""A generic training loop: a model, a batch function, a loss, AdamW, checkpoints and resume.

It knows nothing about what it trains, so the tiny model's stages and (later) the Wan2.2
control-branch/LoRA stages share it. Determinism: batch ``i`` is built by ``make_batch(i)``
(which seeds its own generator from the step), so a resumed run sees the same batches as an
uninterrupted one.
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

__all__ = ["LoopConfig", "train_loop", "cosine_lr"]


@dataclass(frozen=True)
class LoopConfig:
    """``steps`` optimizer steps at peak ``lr`` (linear warm-up, cosine decay to ``min_lr_ratio``).

    ``max_seconds`` stops early (recorded in the returned state) when the wall-clock budget is
    spent; 0 means no limit. A checkpoint is written every ``checkpoint_every`` steps and at
    the end.
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


def cosine_lr(step: int, config: LoopConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    p = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


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
) -> dict:
    """Train ``params`` of ``model`` for ``config.steps`` steps; returns the final loop state.

    ``checkpoint`` is the stage's checkpoint file: with ``resume`` and an existing file the run
    continues from it; a finished stage (state ``done``) returns at once.
    """
    from tqdm.auto import tqdm

    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    checkpoint = Path(checkpoint)
    state = {"stage": name, "step": 0, "done": False, "seconds": 0.0, "loss_ema": None}
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer)
        if state.get("done"):
            return state
    start_step, start_time, seconds0 = state["step"], time.monotonic(), state["seconds"]
    bar = tqdm(total=config.steps, initial=start_step, desc=name, disable=not progress, mininterval=5.0)
    model.train()
    step = start_step
    for step in range(start_step, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, config)
        loss, metrics = loss_fn(model, make_batch(step))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        value = float(loss.detach())
        ema = state["loss_ema"]
        state["loss_ema"] = value if ema is None else 0.98 * ema + 0.02 * value
        state["last"] = {k: float(v) for k, v in metrics.items()}
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss_ema']:.4g}", refresh=False)
        state["step"] = step + 1
        state["seconds"] = seconds0 + time.monotonic() - start_time
        if log is not None and (step + 1) % 50 == 0:
            log(f"{name} step {step + 1}/{config.steps} loss_ema {state['loss_ema']:.5g} "
                f"{state['last']} {state['seconds']:.0f}s")
        over = config.max_seconds > 0 and state["seconds"] >= config.max_seconds
        if (step + 1) % config.checkpoint_every == 0 or over:
            save_checkpoint(checkpoint, model, optimizer, state)
        if over:
            state["stopped_early"] = True
            break
    bar.close()
    model.eval()
    state["done"] = True
    save_checkpoint(checkpoint, model, optimizer, state)
    return state
