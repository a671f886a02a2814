"""Classical PROXIES (labelled as such in every report): OpenCV flow round trip, SIFT camera error.

They stand in for learned metrics we cannot ship weights for (RAFT-style flow, DROID-SLAM), so
they measure something related, not the same thing.

- **Flow round-trip error** (temporal consistency proxy): Farnebäck optical flow t → t+1 and
  t+1 → t; for a pixel p with forward flow f(p), the error is ‖f(p) + b(p + f(p))‖ in pixels
  (b sampled bilinearly), averaged over the pixels whose forward target is inside the image.
  A video whose motion is consistent in both directions scores near 0.
- **Camera error** (camera-following proxy): for frame pairs (t, t+gap), SIFT matches (ratio
  test) → essential matrix with the known intrinsics (RANSAC) → relative pose (R, t̂), t̂ of unit
  length. Against the ground-truth relative pose (R*, t*) it uses WorldScore's formulas, but not
  its normalisation constants (which map the errors to a [0, 1] score):
  rotation error = mean over pairs of arccos((tr(R R*ᵀ) − 1) / 2) in degrees;
  translation error = mean over pairs of ‖c·t̂ − t*‖ with the single scale
  c = argmin_c Σ ‖t* − c·t̂‖ (sum of norms, not squares) fitted over all pairs.
  WorldScore applies them to absolute poses from DROID-SLAM; two-view geometry only gives each
  pair's translation up to scale, so here they apply to the relative poses of the pairs.

OpenCV (``opencv-python-headless``, the ``[eval]`` extra) is imported inside the functions that
need it; :func:`opencv_available` tells whether it is installed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.errors import ShapeError, expect_shape
from mirage.geometry import Camera, rescale_intrinsics
from mirage.video import to_uint8

__all__ = ["opencv_available", "flow_roundtrip_error", "video_flow_roundtrip", "rotation_error_deg",
           "translation_error", "fit_translation_scale", "sift_relative_pose", "video_camera_error",
           "SIFT_UPSCALE"]

SIFT_UPSCALE = 4  # small frames are upscaled (bicubic) before SIFT so that it finds keypoints
_MIN_MATCHES = 8


def opencv_available() -> bool:
    """True when ``cv2`` can be imported."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def flow_roundtrip_error(forward: Tensor, backward: Tensor) -> float:
    """Mean round-trip error in pixels of a flow pair (module doc); NaN if no target is inside.

    forward: (H, W, 2) flow (du, dv) from frame t to t+1; backward: (H, W, 2) from t+1 to t.
    """
    expect_shape("forward", forward, (None, None, 2))
    H, W = forward.shape[:2]
    expect_shape("backward", backward, (H, W, 2))
    f = torch.as_tensor(forward, dtype=torch.float64)
    b = torch.as_tensor(backward, dtype=torch.float64)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    tu, tv = u + f[..., 0], v + f[..., 1]  # landing point in t+1
    inside = (tu >= 0) & (tu <= W - 1) & (tv >= 0) & (tv <= H - 1)
    if not inside.any():
        return float("nan")
    grid = torch.stack([2 * tu / max(W - 1, 1) - 1, 2 * tv / max(H - 1, 1) - 1], dim=-1)[None]
    b_at = F.grid_sample(b.permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0)
    err = (f + b_at).norm(dim=-1)
    return err[inside].mean().item()


def _gray_uint8(frame: Tensor, scale: int = 1) -> np.ndarray:  # (3, H, W) in [-1, 1] → (sH, sW) uint8
    import cv2

    rgb = to_uint8(frame).permute(1, 2, 0).cpu().numpy()
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if scale != 1:
        gray = cv2.resize(gray, (gray.shape[1] * scale, gray.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    return gray


def video_flow_roundtrip(video: Tensor) -> float:
    """PROXY. Mean Farnebäck round-trip error (pixels) over consecutive frames of (F, 3, H, W)."""
    import cv2

    expect_shape("video", video, (None, 3, None, None))
    gray = [_gray_uint8(f) for f in video]
    params = dict(pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
    errors = []
    for a, b in zip(gray[:-1], gray[1:]):
        fwd = cv2.calcOpticalFlowFarneback(a, b, None, **params)
        bwd = cv2.calcOpticalFlowFarneback(b, a, None, **params)
        e = flow_roundtrip_error(torch.from_numpy(fwd), torch.from_numpy(bwd))
        if not math.isnan(e):
            errors.append(e)
    return float(np.mean(errors)) if errors else float("nan")


def rotation_error_deg(R_est: Tensor, R_gt: Tensor) -> Tensor:
    """WorldScore's rotation error: arccos((tr(R_est R_gtᵀ) − 1) / 2) in degrees, (N, 3, 3) → (N,)."""
    R_est, R_gt = torch.as_tensor(R_est, dtype=torch.float64), torch.as_tensor(R_gt, dtype=torch.float64)
    if R_est.shape != R_gt.shape or R_est.shape[-2:] != (3, 3):
        raise ShapeError(f"rotations must both be (N, 3, 3) but are {tuple(R_est.shape)} and {tuple(R_gt.shape)}")
    cos = ((R_est @ R_gt.transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


def fit_translation_scale(t_est: Tensor, t_gt: Tensor, iterations: int = 200) -> float:
    """c = argmin_c Σᵢ ‖t_gtᵢ − c·t_estᵢ‖ for (N, 3) translations (WorldScore's alignment).

    The objective is convex in c, and beyond |c| = 2·Σ‖t_gt‖ / Σ‖t_est‖ it exceeds its value at
    c = 0, so a golden-section search on that interval finds the minimum (deterministic).
    """
    t_est, t_gt = torch.as_tensor(t_est, dtype=torch.float64), torch.as_tensor(t_gt, dtype=torch.float64)
    n_est = t_est.norm(dim=-1).sum().item()
    if n_est == 0:
        return 0.0

    def cost(c: float) -> float:
        return (t_gt - c * t_est).norm(dim=-1).sum().item()

    bound = 2 * t_gt.norm(dim=-1).sum().item() / n_est
    lo, hi = -bound, bound
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = cost(a), cost(b)
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = cost(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = cost(b)
    return (lo + hi) / 2


def translation_error(t_est: Tensor, t_gt: Tensor) -> tuple[float, float]:
    """WorldScore's translation error of (N, 3) translations: (mean ‖c·t_est − t_gt‖, c)."""
    c = fit_translation_scale(t_est, t_gt)
    err = (c * torch.as_tensor(t_est, dtype=torch.float64) - torch.as_tensor(t_gt, dtype=torch.float64)).norm(dim=-1)
    return err.mean().item(), c


def _sift_features(frame: Tensor):
    """SIFT keypoints and descriptors of a (3, H, W) frame upscaled by ``SIFT_UPSCALE``."""
    import cv2

    return cv2.SIFT_create().detectAndCompute(_gray_uint8(frame, SIFT_UPSCALE), None)


def sift_relative_pose(frame_a: Tensor, frame_b: Tensor, K: Tensor, features=None) -> tuple[np.ndarray, np.ndarray] | None:
    """PROXY. (R, t̂) mapping camera a to camera b (x_b = R x_a + t̂, ‖t̂‖ = 1) from SIFT matches
    and the essential matrix, or None when there are too few matches or inliers, or the solver
    fails on them.

    frame_a, frame_b: (3, H, W) in [−1, 1]; K: (3, 3) pixel intrinsics for (H, W).
    ``features``: the two frames' precomputed ``_sift_features`` (optional).
    """
    import cv2

    H, W = frame_a.shape[1:]
    s = SIFT_UPSCALE
    Ks = rescale_intrinsics(K.double()[None], (H, W), (H * s, W * s))[0].numpy()
    (ka, da), (kb, db) = features if features is not None else (_sift_features(frame_a), _sift_features(frame_b))
    if da is None or db is None or len(ka) < _MIN_MATCHES or len(kb) < _MIN_MATCHES:
        return None
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    if len(good) < _MIN_MATCHES:
        return None
    pa = np.float64([ka[m.queryIdx].pt for m in good])
    pb = np.float64([kb[m.trainIdx].pt for m in good])
    try:
        E, inliers = cv2.findEssentialMat(pa, pb, Ks, method=cv2.RANSAC, prob=0.999, threshold=1.0)
        if E is None or E.shape != (3, 3) or inliers is None or int(inliers.sum()) < _MIN_MATCHES:
            return None
        n, R, t, _ = cv2.recoverPose(E, pa, pb, Ks, mask=inliers)
    except cv2.error:  # a solver failure on a degenerate match set (OpenCV 5.1 asserts on most): no pose
        return None
    if n < _MIN_MATCHES:
        return None
    return R, t[:, 0]


def video_camera_error(video: Tensor, cameras: Camera, gap: int = 1) -> dict:
    """PROXY. WorldScore-formula camera errors of a video (F, 3, H, W) against its F cameras,
    over the pairs (t, t+gap) for t = 0, gap, 2·gap, …: ``rotation_deg``, ``translation``
    (world units, after the scale fit), ``scale``, ``pairs`` and ``pairs_ok``."""
    expect_shape("video", video, (len(cameras), 3, *cameras.hw))
    cams = cameras.to(dtype=torch.float64)
    w2c = cams.world2cam
    R_est, t_est, R_gt, t_gt = [], [], [], []
    pairs = [(t, t + gap) for t in range(0, len(cameras) - gap, gap)]
    features = {t: _sift_features(video[t]) for t in sorted({t for pair in pairs for t in pair})}
    for a, b in pairs:
        pose = sift_relative_pose(video[a], video[b], cams.K[a], (features[a], features[b]))
        if pose is None:
            continue
        rel = w2c[b] @ cams.cam2world[a]  # camera a → camera b
        R_est.append(torch.from_numpy(pose[0]))
        t_est.append(torch.from_numpy(pose[1]))
        R_gt.append(rel[:3, :3])
        t_gt.append(rel[:3, 3])
    out = {"pairs": len(pairs), "pairs_ok": len(R_est), "rotation_deg": None, "translation": None, "scale": None}
    if R_est:
        out["rotation_deg"] = rotation_error_deg(torch.stack(R_est), torch.stack(R_gt)).mean().item()
        out["translation"], out["scale"] = translation_error(torch.stack(t_est), torch.stack(t_gt))
    return out
