"""Bring a relative depth model's output to the poses' scale, frame by frame.

Relative depth models (Depth Anything, DPT/MiDaS) predict an *affine inverse depth*: the true
inverse depth is ``a·pred + b`` for an unknown scale ``a > 0`` and shift ``b`` per image. We fit
``(a, b)`` per frame to reference depths ``z`` at a few pixels, whose scale is the poses' scale:

- the sparse points of a COLMAP model that the frame observes, or
- points triangulated from feature matches between frames with known poses
  (:func:`triangulate_clip`, OpenCV SIFT + ``cv2.triangulatePoints``).

The fit (:func:`fit_inverse_depth`) is robust: a deterministic RANSAC over point pairs picks the
inliers (relative depth error ≤ ``inlier_tol``), then a least-squares fit on the inliers, weighted
so its residual is the relative depth error (``(a·x + b − 1/z)·z ≈ −δz/z``). Its reported
residual is the median relative depth error over *all* the frame's points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mirage.errors import ConfigError
from mirage.geometry import rigid_inverse

__all__ = ["AlignFit", "AlignConfig", "fit_inverse_depth", "apply_fit", "sample_at", "triangulate_clip"]


@dataclass(frozen=True)
class AlignConfig:
    """min_points: fewer reference points in a frame → the frame (so its clip) cannot be aligned.
    inlier_tol: RANSAC inlier bound on the relative depth error. max_residual: a clip whose worst
    frame has a larger median relative depth error is skipped. iterations: RANSAC pair draws.
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
    """Values of ``image`` (H, W) at points ``uv`` (N, 2) by the nearest-pixel rule of docs/design.md §2.2
    (floor(v + 0.5), floor(u + 0.5)); returns (values (N,), inside (N,) bool)."""
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
    pixels (docs/design.md §2.2) with the reference z-depth. Deterministic for a given ``seed``.
    """
    config = config or AlignConfig()
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    x, inside = sample_at(np.asarray(pred_inverse, dtype=np.float64), points[:, :2])
    z = points[:, 2]
    keep = inside & np.isfinite(x) & np.isfinite(z) & (z > 0)
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


def triangulate_clip(frames: np.ndarray, K: np.ndarray, cam2world: np.ndarray, *, gaps=(1, 2, 4),
                     max_reprojection: float = 1.0, min_angle_deg: float = 1.0) -> list[np.ndarray]:
    """Reference points by triangulating SIFT matches between frames with known poses.

    frames: (F, H, W, 3) uint8; K: (F, 3, 3) pixels; cam2world: (F, 4, 4) OpenCV axes. Frame k is
    matched with frames k + g for g in ``gaps`` (Lowe's ratio test, 0.75); a match is kept when
    it lies in front of both cameras, reprojects within ``max_reprojection`` pixels in both and
    its rays meet at ≥ ``min_angle_deg``. Returns per frame (N, 3) rows (u, v, z): the keypoint
    and its z-depth in that frame, in the poses' scale.
    """
    import cv2

    F = len(frames)
    sift = cv2.SIFT_create(enable_precise_upscale=True)  # keypoints at pixel centres (no 0.25 px bias)
    feats = []
    for f in frames:
        gray = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
        kp, desc = sift.detectAndCompute(gray, None)
        feats.append((np.array([p.pt for p in kp], dtype=np.float64).reshape(-1, 2), desc))
    w2c = rigid_inverse(torch.from_numpy(np.asarray(cam2world, dtype=np.float64))).numpy()
    P = np.einsum("fij,fjk->fik", K, w2c[:, :3])  # (F, 3, 4)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    out: list[list] = [[] for _ in range(F)]
    for i in range(F):
        for g in gaps:
            j = i + g
            if j >= F or feats[i][1] is None or feats[j][1] is None or len(feats[i][0]) < 2 or len(feats[j][0]) < 2:
                continue
            pairs = matcher.knnMatch(feats[i][1], feats[j][1], k=2)
            good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
            if not good:
                continue
            xi = feats[i][0][[m.queryIdx for m in good]]
            xj = feats[j][0][[m.trainIdx for m in good]]
            Xh = cv2.triangulatePoints(P[i], P[j], xi.T.copy(), xj.T.copy())  # (4, N)
            with np.errstate(divide="ignore", invalid="ignore"):
                X = (Xh[:3] / Xh[3]).T  # (N, 3) world
            keep = np.isfinite(X).all(axis=1)
            rows = []
            for k, x in ((i, xi), (j, xj)):
                cam = X @ w2c[k, :3, :3].T + w2c[k, :3, 3]
                z = cam[:, 2]
                with np.errstate(divide="ignore", invalid="ignore"):
                    proj = (cam @ K[k].T)[:, :2] / z[:, None]
                keep &= (z > 1e-6) & (np.linalg.norm(proj - x, axis=1) <= max_reprojection)
                rows.append((k, x, z))
            ci, cj = cam2world[i, :3, 3], cam2world[j, :3, 3]
            with np.errstate(divide="ignore", invalid="ignore"):
                ri = (X - ci) / np.linalg.norm(X - ci, axis=1, keepdims=True)
                rj = (X - cj) / np.linalg.norm(X - cj, axis=1, keepdims=True)
                cos = np.clip((ri * rj).sum(axis=1), -1.0, 1.0)
            keep &= np.degrees(np.arccos(cos)) >= min_angle_deg
            for k, x, z in rows:
                out[k].append(np.column_stack([x[keep], z[keep]]))
    return [np.concatenate(o) if o else np.zeros((0, 3)) for o in out]
