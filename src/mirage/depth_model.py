"""A local Hugging Face depth model (``transformers``) as a relative inverse-depth estimator.

``HFDepthModel(DIR)`` loads ``AutoImageProcessor`` and ``AutoModelForDepthEstimation`` from a
directory the user downloaded (Depth Anything V2, DPT, ...) with ``local_files_only=True``: nothing
is fetched. It runs in batches, on CUDA when available, under ``torch.no_grad``, and returns the
prediction resized (bilinear) to the input frames' size.

Output space: relative models (Depth Anything's ``depth_estimation_type = "relative"``, DPT)
predict an affine *inverse* depth, returned as it is; metric models (``"metric"``) predict depth,
returned inverted (1/depth), so :func:`mirage.inverse_depth.fit_inverse_depth` fits both in
inverse-depth space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mirage.errors import ConfigError

__all__ = ["HFDepthModel"]


class HFDepthModel:
    """frames (F, H, W, 3) uint8 → (F, H, W) float32 affine inverse depth (see the module docstring)."""

    def __init__(self, path, *, device=None, batch_size: int = 8) -> None:
        import torch

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ConfigError(f"`--depth-model` must be a local transformers model folder with a config.json "
                              f"(e.g. a downloaded Depth Anything V2 or DPT) but {str(path)!r} has none")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"`batch_size` must be an int ≥ 1 but is {batch_size!r}")
        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as err:
            raise ConfigError("`--depth-model` needs the `transformers` package: "
                              "pip install 'mirage-world[data]'") from err
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"`--depth-model` {str(path)!r} is not a loadable transformers depth model "
                              f"(AutoModelForDepthEstimation + AutoImageProcessor): {err}") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.metric = getattr(self.model.config, "depth_estimation_type", "relative") == "metric"
        self.name = path.name

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ConfigError(f"`frames` must be uint8 (F, H, W, 3) but is {frames.dtype} {frames.shape}")
        H, W = frames.shape[1:3]
        out = []
        with torch.no_grad():
            for i in range(0, len(frames), self.batch_size):
                batch = self.processor(images=list(frames[i:i + self.batch_size]), return_tensors="pt")
                pixels = batch["pixel_values"].to(self.device, dtype=next(self.model.parameters()).dtype)
                pred = self.model(pixel_values=pixels).predicted_depth  # (B, h, w)
                pred = F.interpolate(pred[:, None].float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
                if self.metric:
                    pred = torch.where(pred > 0, 1.0 / pred, torch.zeros_like(pred))
                out.append(pred.cpu().numpy())  # (B, H, W)
        return np.concatenate(out).astype(np.float32)
