"""Fit a relative depth model's output to reference depths: ``inverse depth = scale·pred + shift``.

Relative depth models (Depth Anything, DPT/MiDaS) predict an *affine inverse depth*: the true
inverse depth is ``a·pred + b`` for an unknown scale ``a > 0`` and shift ``b`` per image.
:func:`fit_inverse_depth` finds ``(a, b)`` from reference z-depths at a few pixels. It is robust: a
deterministic RANSAC over point pairs picks the inliers (relative depth error ≤ ``inlier_tol``),
then a least-squares fit on the inliers, weighted so its residual is the relative depth error
(``(a·x + b − 1/z)·z ≈ −δz/z``). Its reported residual is the median relative depth error over
*all* the image's points.

Two callers share it: ``mirage data import`` aligns each frame to COLMAP or triangulated points
(:mod:`mirage.data.depth_align`), and the pipeline aligns each generated frame to the memory's
own depth in that view (:mod:`mirage.pipeline.depth_align`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirage.errors import ConfigError

__all__ = ["AlignFit", "AlignConfig", "fit_inverse_depth", "fit_inverse_depth_samples", "apply_fit", "sample_at"]


@dataclass(frozen=True)
class AlignConfig:
    """min_points: fewer reference points in an image → it cannot be aligned. inlier_tol: RANSAC
    inlier bound on the relative depth error. max_residual: an image whose fit leaves a larger
    median relative depth error is not used (``mirage data import`` skips the clip; the pipeline
    does not write the frame). iterations: RANSAC pair draws.
    """

    min_points: int = 8
    inlier_tol: float = 0.05
    max_residual: float = 0.1
    iterations: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.min_points, bool) or not isinstance(self.min_points, int) or self.min_points < 2:
            raise ConfigError(f"`min_points` must be an int ≥ 2 but is {self.min_points!r}")
        for name in ("inlier_tol", "max_residual"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0):
                raise ConfigError(f"`{name}` must be a number > 0 but is {v!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"`iterations` must be an int ≥ 1 but is {self.iterations!r}")


@dataclass(frozen=True)
class AlignFit:
    """inverse depth = scale·pred + shift. residual: median relative depth error over the points;
    points: how many reference points the frame had; inliers: how many the fit kept. ``ok`` is
    False (with ``reason``) when the frame could not be aligned."""

    scale: float
    shift: float
    residual: float
    points: int
    inliers: int
    ok: bool = True
    reason: str = ""


def sample_at(image: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``image`` (H, W) at points ``uv`` (N, 2) by the nearest-pixel rule of docs/design.md
    §2.2 (floor(v + 0.5), floor(u + 0.5)); returns (values (N,), inside (N,) bool)."""
    H, W = image.shape
    cols = np.floor(uv[:, 0] + 0.5).astype(np.int64)
    rows = np.floor(uv[:, 1] + 0.5).astype(np.int64)
    inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    values = np.full(len(uv), np.nan)
    values[inside] = image[rows[inside], cols[inside]]
    return values, inside


def _weighted_fit(x: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """Least squares of (a·x + b − 1/z)·z over the points: a relative-depth-error fit."""
    A = np.column_stack([x * z, z])
    sol, *_ = np.linalg.lstsq(A, np.ones_like(z), rcond=None)
    return float(sol[0]), float(sol[1])


def _rel_error(a: float, b: float, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    inv = a * x + b
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(1.0 / inv - z) / z
    return np.where(inv > 0, err, np.inf)


def fit_inverse_depth(pred_inverse: np.ndarray, points: np.ndarray, config: AlignConfig | None = None,
                      seed: int = 0) -> AlignFit:
    """Fit ``inverse depth = scale·pred + shift`` to reference points.

    pred_inverse: (H, W) the model's (affine) inverse depth. points: (N, 3) rows (u, v, z) in
    pixels (docs/design.md §2.2) with the reference z-depth, the prediction read
    at the nearest pixel (:func:`sample_at`). Deterministic for a given ``seed``.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    x, inside = sample_at(np.asarray(pred_inverse, dtype=np.float64), points[:, :2])
    return fit_inverse_depth_samples(np.where(inside, x, np.nan), points[:, 2], config, seed)


def fit_inverse_depth_samples(x: np.ndarray, z: np.ndarray, config: AlignConfig | None = None,
                              seed: int = 0) -> AlignFit:
    """:func:`fit_inverse_depth` on the prediction already sampled at the points: x (N,) the
    prediction, z (N,) the reference z-depth; pairs with a non-finite value or z ≤ 0 are ignored."""
    config = config or AlignConfig()
    x, z = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(z, dtype=np.float64).reshape(-1)
    keep = np.isfinite(x) & np.isfinite(z) & (z > 0)
    x, z = x[keep], z[keep]
    n = len(z)
    if n < config.min_points:
        return AlignFit(float("nan"), float("nan"), float("inf"), n, 0, False,
                        f"{n} reference points, at least {config.min_points} needed")
    rng = np.random.default_rng(seed)
    best, best_count = None, -1
    for _ in range(config.iterations):
        i, j = rng.choice(n, 2, replace=False)
        if x[i] == x[j]:
            continue
        a = (1 / z[i] - 1 / z[j]) / (x[i] - x[j])
        b = 1 / z[i] - a * x[i]
        if a <= 0:
            continue
        count = int((_rel_error(a, b, x, z) <= config.inlier_tol).sum())
        if count > best_count:
            best, best_count = (a, b), count
    if best is None:
        return AlignFit(float("nan"), float("nan"), float("inf"), n, 0, False,
                        "no positive scale fits the reference points (the prediction does not grow with inverse depth)")
    inliers = _rel_error(*best, x, z) <= config.inlier_tol
    for _ in range(2):  # least squares on the inliers, then once more on the refined inliers
        if inliers.sum() < 2:
            break
        a, b = _weighted_fit(x[inliers], z[inliers])
        refined = _rel_error(a, b, x, z) <= config.inlier_tol
        if refined.sum() < 2 or a <= 0:
            a, b = best
            break
        best, inliers = (a, b), refined
    a, b = best
    residual = float(np.median(_rel_error(a, b, x, z)))
    return AlignFit(float(a), float(b), residual, n, int(inliers.sum()))


def apply_fit(pred_inverse: np.ndarray, fit: AlignFit) -> np.ndarray:
    """(H, W) float32 z-depth ``1 / (scale·pred + shift)``; 0 (invalid) where that is not > 0."""
    inv = fit.scale * np.asarray(pred_inverse, dtype=np.float64) + fit.shift
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(inv > 0, 1.0 / inv, 0.0)
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
