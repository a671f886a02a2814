"""Input checks shared by the memories' writes and reads: project errors naming the argument."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mirage.errors import ConfigError, ShapeError, expect_shape
from mirage.geometry import Camera

__all__ = ["check_confidence", "check_hw", "check_reference_args", "check_write_inputs"]


def check_confidence(confidence, T: int) -> Tensor:  # float or T floats → (T,) float32 on the host
    """Per-frame write confidences: finite numbers, one for all frames or one per frame."""
    if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) and math.isfinite(confidence):
        return torch.full((T,), float(confidence), dtype=torch.float32, device="cpu")
    try:
        values = torch.as_tensor(confidence, dtype=torch.float32, device="cpu").reshape(-1)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"`confidence` must be a number or {T} numbers but is {confidence!r}") from error
    if values.numel() == 1:
        values = values.expand(T)
    if values.numel() != T or not bool(torch.isfinite(values).all()):
        raise ConfigError(f"`confidence` must be a finite number or {T} finite numbers (one per "
                          f"frame) but is {confidence!r}")
    return values.clone()


def check_hw(hw) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in hw)
    except (TypeError, ValueError):
        raise ShapeError(f"`hw` must be a pair of ints (h, w) but is {hw!r}") from None
    if h <= 0 or w <= 0:
        raise ShapeError(f"`hw` must be positive but is {(h, w)}")
    return h, w


def check_write_inputs(name: str, values: Tensor, depths: Tensor, cameras: Camera, exclude) -> None:
    """Shared shape checks of ``write``: values (T, C, h, w), depths and cameras at (H, W)."""
    expect_shape(name, values, (None, None, None, None))
    T = values.shape[0]
    expect_shape("depths", depths, (T, None, None))
    if not isinstance(cameras, Camera):
        raise ShapeError(f"`cameras` must be a mirage.geometry.Camera but is {type(cameras).__name__}")
    if len(cameras) != T:
        raise ShapeError(f"`cameras` must hold {T} cameras (one per frame) but holds {len(cameras)}")
    if tuple(depths.shape[1:]) != cameras.hw:
        raise ShapeError(
            f"`depths` must be at the cameras' size {cameras.hw} but is {tuple(depths.shape[1:])}"
        )
    if exclude is not None:
        expect_shape("exclude", exclude, tuple(depths.shape))


def check_reference_args(k, min_iou) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ConfigError(f"`k` must be an int ≥ 0 but is {k!r}")
    if isinstance(min_iou, bool) or not (isinstance(min_iou, (int, float)) and 0 < min_iou <= 1):
        raise ConfigError(f"`min_iou` must be a number in (0, 1] but is {min_iou!r}")
