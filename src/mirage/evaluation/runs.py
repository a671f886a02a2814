"""Running the suite: ground truth once per path, then every memory mode × seed on it.

:func:`prepare_ground_truth` renders a :class:`~mirage.evaluation.suite.Case` with the
procedural world (exact rgb, z-depth, sky and dynamic masks) and computes what does not depend
on the generated video: the VAE's encoding of the ground truth (for the read error), its
reconstruction PSNR (the ceiling), and the metric floors on ground-truth frames.
:func:`evaluate_run` generates one video and measures it (a JSON-ready record plus a few key
frames for the contact sheet). Nothing here writes files except the explicit
:func:`save_run`; :func:`load_runs` reads them back for reports and resuming.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from mirage.evaluation.metrics import (closed_loop, exact_return, frame_psnr, frame_ssim, read_latent_error,
                                       revisit_frames)
from mirage.evaluation.proxies import opencv_available, video_camera_error, video_flow_roundtrip
from mirage.evaluation.suite import Case, mode_label
from mirage.evaluation.warp import video_warp_error
from mirage.geometry import Camera
from mirage.video import to_uint8

__all__ = ["GroundTruth", "prepare_ground_truth", "evaluate_run", "run_id", "save_run", "load_runs",
           "load_run_frames", "key_frame_indices", "PeakMemory", "FPS"]

FPS = 16.0  # frame k of a path is at t = k / FPS seconds
RUN_FORMAT = "mirage.eval-run"


class GroundTruth(NamedTuple):
    """One rendered path. rgb (F, 3, H, W) in [−1, 1]; depth (F, H, W) z-depth (inf = sky);
    exclude (F, H, W) bool (sky | dynamic); latents (C, T, h, w) = encode(rgb);
    ceiling_psnr: F floats, PSNR of decode(encode(rgb)); floors: metrics on the GT frames."""

    case: Case
    scene: object
    cameras: Camera
    rgb: Tensor
    depth: Tensor
    exclude: Tensor
    latents: Tensor
    ceiling_psnr: list[float]
    floors: dict


def _to_video(frames: Tensor) -> Tensor:  # (F, 3, H, W) → (1, 3, F, H, W)
    return frames.permute(1, 0, 2, 3)[None]


def key_frame_indices(frames: int) -> list[int]:
    """The contact sheet's columns: 0, F/4, F/2, 3F/4 and F − 1 (rounded, distinct)."""
    return sorted({round(q * (frames - 1)) for q in (0.0, 0.25, 0.5, 0.75, 1.0)})


def prepare_ground_truth(backbone, case: Case, frames: int, *, proxies: bool = True) -> GroundTruth:
    """Render ``case`` at the backbone's size and compute the ground-truth-only quantities."""
    from mirage.world import generate_scene, load_trajectory, render

    H, W = backbone.config.height, backbone.config.width
    scene = generate_scene(case.family, case.scene)
    cams = load_trajectory(case.preset, scene=scene, frames=frames, height=H, width=W)
    out = render(scene, cams, torch.arange(frames, dtype=torch.float64) / FPS)
    with torch.no_grad():
        latents = backbone.encode(_to_video(out.rgb))[0].float().cpu()  # (C, T, h, w)
        recon = backbone.decode(latents[None])[0].float().cpu().permute(1, 0, 2, 3)  # (F, 3, H, W)
    exclude = out.sky | out.dynamic
    floors = {"warp_error": video_warp_error(out.rgb, out.depth, cams, gap=backbone.temporal_stride, exclude=exclude)}
    if proxies and opencv_available():
        floors["flow_roundtrip_px"] = video_flow_roundtrip(out.rgb)
        floors["camera"] = video_camera_error(out.rgb, cams)
    return GroundTruth(case, scene, cams, out.rgb, out.depth, exclude, latents,
                       frame_psnr(recon.clamp(-1, 1), out.rgb), floors)


class PeakMemory:
    """Peak memory while the block runs, in bytes: CUDA's peak allocation on a GPU, else the
    peak resident set size above the starting one, sampled every ``interval`` s from
    ``/proc/self/statm`` (None where that file does not exist)."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak: int | None = None
        self.kind = "cuda max_memory_allocated" if self.device.type == "cuda" else "peak RSS increase (sampled)"

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._start = self._rss()
        self._max = self._start
        self._stop = threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._rss()
            if rss is not None and rss > self._max:
                self._max = rss

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = int(torch.cuda.max_memory_allocated(self.device)) - self._start
            return
        self._stop.set()
        if self._start is not None:
            self._thread.join()
            rss = self._rss() or 0
            self.peak = max(self._max, rss) - self._start


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def _uint8(frames: Tensor) -> np.ndarray:  # (n, 3, H, W) in [-1, 1] → (n, H, W, 3)
    return to_uint8(frames).permute(0, 2, 3, 1).numpy()


def run_id(case: Case, mode: str, depth: str, seed: int, far_field: bool | None = None,
           memory_input: str | None = None, align: bool = True) -> str:
    """A file-name-safe id of one run."""
    return f"{case.id}-{mode_label(mode, depth, far_field, memory_input, align)}-s{seed}"


def update_depth_estimator(depth: str, backbone, scene, depth_model=None):
    """The update's depth estimator: ``tiny``, ``oracle``, ``oracle-relative`` (ablations) or
    ``model`` (the transformers model in folder ``depth_model``)."""
    from mirage.pipeline import HFDepthEstimator, TinyDepthEstimator
    from mirage.world.oracle import OracleDepthEstimator, OracleRelativeDepthEstimator

    if depth == "oracle":
        return OracleDepthEstimator(scene, FPS)
    if depth == "oracle-relative":
        return OracleRelativeDepthEstimator(scene, FPS)
    if depth == "model":
        return HFDepthEstimator(depth_model)
    return TinyDepthEstimator(backbone)


def evaluate_run(backbone, gt: GroundTruth, mode: str, seed: int, *, depth: str = "tiny",
                 far_field: bool | None = None, steps: int | None = None, proxies: bool = True,
                 fusion: str | None = None, options: dict | None = None,
                 memory_input: str | None = None, depth_model=None) -> tuple[dict, dict]:
    """Generate ``gt``'s path in memory ``mode`` with sampling ``seed`` and measure it.

    ``memory_input`` ("branch" | "inject" | "both"; None = the backbone's default) is part of
    the run's label. ``far_field`` and ``fusion`` override the memory's far field and fusion
    (:class:`mirage.pipeline.PipelineConfig`; None = the mode's default; a far-field override is
    part of the run's label, :func:`mirage.evaluation.suite.mode_label`), and ``options`` any
    other ``PipelineConfig`` field (e.g. ``{"paste_reads": None}``), for ablations. ``depth``
    names the update depth (:func:`update_depth_estimator`; ``model`` reads ``depth_model``);
    ``{"depth_align": False}`` leaves relative depth unaligned (labelled ``+no-align``).

    Returns (record, frames): a JSON-ready dict of every metric, and uint8 key frames
    ``{"video": (n, H, W, 3), "ground_truth": (n, H, W, 3)}`` at :func:`key_frame_indices`.
    """
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, generate

    cams, tau = gt.cameras, backbone.temporal_stride
    estimator = update_depth_estimator(depth, backbone, gt.scene, depth_model)
    extra = dict(options or {})
    if memory_input is not None:
        extra["memory_input"] = memory_input
    config = PipelineConfig(memory_mode=mode, fusion=fusion, far_field=far_field,
                            steps=steps or backbone.config.steps, seed=seed, **extra)
    first_depth = torch.where(gt.exclude[0], torch.full_like(gt.depth[0], float("inf")), gt.depth[0])
    device = getattr(backbone, "device", "cpu")
    with PeakMemory(device) as peak, torch.no_grad():
        out = generate(backbone, gt.rgb[0], cams, config, depth_estimator=estimator,
                       masker=LatentDisagreementMasker(), first_depth=first_depth, first_exclude=gt.exclude[0])
    out = out.to("cpu")  # scored against the ground truth, which lives on the host
    video = out.video.float().clamp(-1, 1)
    Fr = len(video)
    psnrs, ssims = frame_psnr(video, gt.rgb), frame_ssim(video, gt.rgb)
    revisit = revisit_frames(cams, out.plan[0].end_frame)
    keyframes = [k for k in revisit if k % tau == 0]
    loop = closed_loop(video, cams)
    read_error = read_latent_error(out.read_latents, out.read_mask, gt.latents)
    ends = [c.end_frame + 1 for c in out.plan]  # frames generated after each chunk
    record = {
        "format": RUN_FORMAT, "version": 1,
        "id": run_id(gt.case, mode, depth, seed, far_field, memory_input, config.depth_align),
        "case": gt.case.id, "family": gt.case.family, "scene": gt.case.scene, "preset": gt.case.preset,
        "mode": mode_label(mode, depth, far_field, memory_input, config.depth_align), "memory_mode": mode,
        "update_depth": depth,
        "far_field": far_field, "memory_input": out.config["memory_input"], "seed": seed,
        "fusion": out.memory.fusion if out.memory is not None else None,
        "frames": Fr, "steps": config.steps,
        "psnr": psnrs, "ssim": ssims, "ceiling_psnr": gt.ceiling_psnr,
        "revisit_frames": revisit,
        "revisit_psnr": _mean(psnrs[k] for k in revisit),
        "revisit_ssim": _mean(ssims[k] for k in revisit),
        "revisit_keyframe_psnr": _mean(psnrs[k] for k in keyframes),
        "ceiling_revisit_psnr": _mean(gt.ceiling_psnr[k] for k in revisit),
        "ceiling_keyframe_psnr": _mean(gt.ceiling_psnr[k] for k in keyframes),
        "psnr_all": _mean(psnrs), "ssim_all": _mean(ssims), "ceiling_all": _mean(gt.ceiling_psnr),
        "closed_loop_psnr": loop["psnr"] if loop else None,
        "closed_loop_ssim": loop["ssim"] if loop else None,
        "exact_return": exact_return(psnrs, cams),
        "warp_error": video_warp_error(video, gt.depth, cams, gap=tau, exclude=gt.exclude),
        "warp_error_gt": gt.floors["warp_error"],
        "read_coverage": [s["read_coverage"] for s in out.memory_stats],
        "read_latent_rmse": read_error["rmse"] if read_error else None,
        "read_latent_relative": read_error["relative"] if read_error else None,
        "cache_frames": ends,
        "cache_bytes": [int(s["bytes"]) for s in out.memory_stats],
        "cache_points": [int(s["points"]) for s in out.memory_stats],
        "timing": out.timing_summary(),
        "peak_memory_bytes": peak.peak, "peak_memory_kind": peak.kind,
    }
    if any(r is not None for r in out.depth_alignment or []):
        record["depth_alignment"] = out.depth_alignment
    if proxies and opencv_available():
        record["proxy_flow_roundtrip_px"] = video_flow_roundtrip(video)
        record["proxy_flow_roundtrip_gt_px"] = gt.floors.get("flow_roundtrip_px")
        record["proxy_camera"] = video_camera_error(video, cams)
        record["proxy_camera_gt"] = gt.floors.get("camera")
    else:
        record["proxies"] = "not computed (opencv not installed)" if proxies else "not computed (disabled)"
    idx = key_frame_indices(Fr)
    frames = {"video": _uint8(video[idx]), "ground_truth": _uint8(gt.rgb[idx]), "indices": np.asarray(idx)}
    return record, frames


def _clean(value):
    """JSON cannot hold NaN/inf: they become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def save_run(folder, record: dict, frames: dict) -> Path:
    """Write ``folder/<id>.npz`` (key frames) then ``folder/<id>.json`` (the record, last: a
    run counts as done once its JSON exists). Returns the JSON path."""
    from mirage.files import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / f"{record['id']}.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, **frames)
    with atomic_path(folder / f"{record['id']}.json") as tmp:
        tmp.write_text(json.dumps(_clean(record), indent=1))
    return folder / f"{record['id']}.json"


def load_runs(folder) -> list[dict]:
    """Every run record in ``folder`` (sorted by id); an empty list when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("format") == RUN_FORMAT:
            records.append(record)
    return records


def load_run_frames(folder, run: str) -> dict[str, np.ndarray]:
    """The key frames saved with run ``run`` (see :func:`evaluate_run`)."""
    with np.load(Path(folder) / f"{run}.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}

