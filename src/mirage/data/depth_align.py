"""Bring a relative depth model's output to the poses' scale, frame by frame.

Relative depth models (Depth Anything, DPT/MiDaS) predict an *affine inverse depth*: the true
inverse depth is ``a·pred + b`` for an unknown scale ``a > 0`` and shift ``b`` per image. We fit
``(a, b)`` per frame to reference depths ``z`` at a few pixels, whose scale is the poses' scale:

- the sparse points of a COLMAP model that the frame observes, or
- points triangulated from feature matches between frames with known poses
  (:func:`triangulate_clip`, OpenCV SIFT + ``cv2.triangulatePoints``).

The fit itself (:func:`fit_inverse_depth`, robust) lives in :mod:`mirage.inverse_depth`, shared
with the pipeline, which aligns generated frames to the memory the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from mirage.geometry import rigid_inverse
from mirage.inverse_depth import AlignConfig, AlignFit, apply_fit, fit_inverse_depth, sample_at

__all__ = ["AlignFit", "AlignConfig", "fit_inverse_depth", "apply_fit", "sample_at", "triangulate_clip"]


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
