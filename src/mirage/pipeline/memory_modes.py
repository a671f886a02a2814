"""The three memory modes behind one interface, so the pipeline runs the same lifecycle A/B:

- ``latent`` (Mirage): :class:`~mirage.memory.LatentSpatialMemory` of the generated latent tokens,
  read at latent resolution.
- ``rgb`` (baseline): :class:`~mirage.memory.RGBPointCloudMemory` of the decoded frames at pixel
  resolution; every pixel frame of the chunk is rendered at H×W and VAE-encoded into the same
  conditioning slot.
- ``none``: an empty read and no references.

Frame ids in memory are global latent frame indices (latent k has the pose of pixel frame τk).

Every mode lives on one ``device`` (the session's memory device): a write moves its inputs
there first, so the depth reduction and fusion run there, and a read returns tensors there.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from mirage.errors import ConfigError
from mirage.geometry import Camera
from mirage.memory import LatentSpatialMemory, RGBPointCloudMemory
from mirage.memory.store import REFERENCE_VOXEL

__all__ = ["MEMORY_MODES", "ModeRead", "MemoryMode", "LatentMode", "RGBMode", "NoMemory",
           "make_memory_mode", "paste_reads", "REFERENCE_MIN_IOU", "REFERENCE_VOXEL", "RGB_COVERAGE",
           "GRID_PLANARITY_TOL", "PARTIAL_CELL_FRACTION", "FIRST_FRAME_CONFIDENCE", "GENERATED_CONFIDENCE"]

MEMORY_MODES = ("latent", "rgb", "none")
MEMORY_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
REFERENCE_MIN_IOU = 0.04  # docs/design.md §3.5: the reference implementation's defaults (voxel: REFERENCE_VOXEL)
RGB_COVERAGE = 0.5  # a latent cell counts as covered by an RGB render if ≥ this pixel fraction is
# Depth → latent grid (docs/design.md §3.1) uses the memory's planarity rule with a looser tolerance than
# its default (0.05): updates use *estimated* depth, whose noise would otherwise drop a large
# share of planar cells; 0.2 still drops blocks that straddle a depth edge.
GRID_PLANARITY_TOL = 0.2
# A latent cell partly without depth (sky beside a skyline, depth holes) is written from its
# pixels with depth when they are at least this share of it (mirage.memory.depth_grid). Measured
# on held-out tuning scenes 50–52 (benchmarks/tune_scenes.py, not the quick suite), latent revisit
# PSNR: earlier weights 19.00 dB with every pixel required, 19.29 at 0.5; the weights of
# benchmarks/results/tiny-vae6k (samples built at 0.5) with paste_reads 0.1: 19.92 at 0.75, 20.14
# at 0.5, 20.23 at 0.25, 20.18 at 0.125 and 0.0625. Excluded pixels still drop a cell. The
# recipe builds its denoiser samples with this fraction too (LatentMode's default), so the
# shipped weights were trained at 0.25.
PARTIAL_CELL_FRACTION = 0.25
# Write confidences (mirage.memory.store): the given first frame is trusted over generated
# frames, so a generated revisit never overwrites or hides what the input image showed.
FIRST_FRAME_CONFIDENCE = 1.0
GENERATED_CONFIDENCE = 0.5


class ModeRead(NamedTuple):
    """Conditioning for the target latent frames: features (n, C, h, w), mask (n, h, w) and the
    sub-cell offset (n, 2, h, w) of each covered cell's source point (zeros where a mode's read
    is aligned by construction, or empty). depth: the memory's own z-depth in the target views,
    (n, h, w) at latent resolution for ``latent`` (where ``offset`` says where each point
    projects), (n, H, W) at pixel resolution for ``rgb``, +inf where no point lands; None for
    ``none``. The update aligns relative depth to it (:mod:`mirage.pipeline.depth_align`)."""

    features: Tensor
    mask: Tensor
    offset: Tensor
    depth: Tensor | None = None


class MemoryMode(Protocol):
    name: str
    memory: object | None

    def write(self, latents: Tensor, frames: Tensor, depths: Tensor, cameras: Camera,
              exclude: Tensor | None, frame_ids: list[int], confidence: float = 1.0) -> None: ...

    def read(self, chunk_cameras: Camera, temporal_stride: int, latent_hw: tuple[int, int],
             backbone) -> ModeRead: ...

    def references(self, target_cameras: Camera, k: int, exclude: list[int]) -> list: ...

    def read_and_references(self, chunk_cameras: Camera, temporal_stride: int,
                            latent_hw: tuple[int, int], backbone, k: int,
                            exclude: list[int]) -> tuple[ModeRead, list]:
        """``read(...)`` and ``references(target cameras, k, exclude)`` together (what each
        chunk asks for), so a mode can share work between them."""
        ...

    def stats(self) -> dict: ...


def _target_cameras(chunk_cameras: Camera, tau: int) -> Camera:
    """Cameras of latent frames 1..T−1 of a chunk whose pixel cameras are ``chunk_cameras``."""
    return chunk_cameras[tau::tau]


class _PointMemoryMode:
    """References and statistics, shared by the modes backed by a point memory."""

    memory: LatentSpatialMemory | RGBPointCloudMemory

    def read_and_references(self, chunk_cameras, temporal_stride, latent_hw, backbone, k, exclude):
        read = self.read(chunk_cameras, temporal_stride, latent_hw, backbone)
        return read, self.references(_target_cameras(chunk_cameras, temporal_stride), k, exclude)

    def references(self, target_cameras, k, exclude) -> list:
        return self.memory.retrieve_references(target_cameras, k=k, min_iou=REFERENCE_MIN_IOU,
                                               exclude_frames=exclude)

    def stats(self) -> dict:
        return {"points": self.memory.num_points, "bytes": self.memory.nbytes,
                "frames": int(self.memory.table_ids.shape[0])}


class LatentMode(_PointMemoryMode):
    """Mirage: latent tokens at world points, read by one z-buffered splat at latent resolution."""

    name = "latent"

    def __init__(self, channels: int, *, fusion: str = "voxel", far_field: bool = True,
                 dtype: torch.dtype = torch.float32, planarity_tol: float = GRID_PLANARITY_TOL,
                 min_valid_fraction: float = PARTIAL_CELL_FRACTION, keep_edges: bool = True,
                 device=None) -> None:
        self.memory = LatentSpatialMemory(channels, fusion=fusion, reference_voxel=REFERENCE_VOXEL,
                                          far_field=far_field, dtype=dtype, device=device)
        self.planarity_tol = planarity_tol
        self.min_valid_fraction = min_valid_fraction
        self.keep_edges = keep_edges

    def write(self, latents, frames, depths, cameras, exclude, frame_ids, confidence=1.0) -> None:
        """Reduce depth to the latent grid (planarity rule, ``planarity_tol``; cells partly
        without depth kept at ``min_valid_fraction``), then write; ``frames`` give the points
        their display colours."""
        latents, frames, depths, cameras, exclude = _on(self.memory.device, latents, frames, depths, cameras, exclude)
        self.memory.write(latents, depths.float(), cameras, exclude=exclude, frame_ids=frame_ids,
                          planarity_tol=self.planarity_tol, min_valid_fraction=self.min_valid_fraction,
                          keep_edges=self.keep_edges, confidence=confidence, images=frames)

    def read(self, chunk_cameras, temporal_stride, latent_hw, backbone=None) -> ModeRead:
        cameras = _on(self.memory.device, _target_cameras(chunk_cameras, temporal_stride))[0]
        read = self.memory.read(cameras, latent_hw)
        return ModeRead(read.features.float(), read.mask, read.offset, read.depth)

    def depth_read(self, cameras: Camera, latent_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """The memory's z-depth (V, h, w) in ``cameras`` now (+inf where empty) and where each
        winning point projects, offset (V, 2, h, w): the anchors of relative depth."""
        read = self.memory.read(_on(self.memory.device, cameras)[0], latent_hw)
        return read.depth, read.offset

    def read_and_references(self, chunk_cameras, temporal_stride, latent_hw, backbone, k, exclude):
        """The target views' read also gives their points for the references."""
        cameras = _on(self.memory.device, _target_cameras(chunk_cameras, temporal_stride))[0]
        read = self.memory.read(cameras, latent_hw)
        refs = self.memory.references(read, k=k, min_iou=REFERENCE_MIN_IOU, exclude_frames=exclude)
        return ModeRead(read.features.float(), read.mask, read.offset, read.depth), refs


class RGBMode(_PointMemoryMode):
    """The explicit baseline: a pixel-resolution coloured point cloud, rendered and re-encoded."""

    name = "rgb"

    def __init__(self, channels: int, *, fusion: str = "append", far_field: bool = False, device=None) -> None:
        self.channels = channels
        self.memory = RGBPointCloudMemory(fusion=fusion, reference_voxel=REFERENCE_VOXEL,
                                          far_field=far_field, device=device)

    def write(self, latents, frames, depths, cameras, exclude, frame_ids, confidence=1.0) -> None:
        # The baseline appends every point, as the reference does; confidence is only stored.
        frames, depths, cameras, exclude = _on(self.memory.device, frames, depths, cameras, exclude)
        self.memory.write(frames, depths, cameras, exclude=exclude, frame_ids=frame_ids,
                          confidence=confidence)

    def read(self, chunk_cameras, temporal_stride, latent_hw, backbone) -> ModeRead:
        H, W = chunk_cameras.hw
        h, w = latent_hw
        chunk_cameras = _on(self.memory.device, chunk_cameras)[0]
        render = self.memory.render(chunk_cameras, (H, W))  # every pixel frame of the chunk
        video = render.features.permute(1, 0, 2, 3)[None].float()  # (1, 3, F, H, W)
        latents = backbone.encode(video)[0].permute(1, 0, 2, 3)[1:].to(self.memory.device)  # (T−1, C, h, w)
        covered = render.mask[temporal_stride::temporal_stride].float()  # (T−1, H, W)
        frac = covered.reshape(-1, h, H // h, w, W // w).mean(dim=(2, 4))
        mask = frac >= RGB_COVERAGE
        # Rendered at pixel resolution and encoded: aligned with the latent grid, offset 0.
        # The targets' rendered depth (pixel resolution) anchors relative update depth.
        return ModeRead(latents * mask[:, None], mask, latents.new_zeros(len(mask), 2, h, w),
                        render.depth[temporal_stride::temporal_stride])

    def depth_read(self, cameras: Camera, latent_hw: tuple[int, int]) -> tuple[Tensor, None]:
        """The memory's z-depth (V, H, W) in ``cameras`` now, at pixel resolution (+inf where
        empty); no offsets (a pixel-resolution render is aligned by construction)."""
        return self.memory.render(cameras, cameras.hw).depth, None



class NoMemory:
    """No memory: empty reads, no references."""

    name = "none"
    memory = None

    def __init__(self, channels: int, device=None) -> None:
        self.channels = channels
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def write(self, latents, frames, depths, cameras, exclude, frame_ids, confidence=1.0) -> None:
        return None

    def read(self, chunk_cameras, temporal_stride, latent_hw, backbone=None) -> ModeRead:
        n = (len(chunk_cameras) - 1) // temporal_stride
        dev = self.device
        return ModeRead(torch.zeros(n, self.channels, *latent_hw, device=dev),
                        torch.zeros(n, *latent_hw, dtype=torch.bool, device=dev),
                        torch.zeros(n, 2, *latent_hw, device=dev))

    def references(self, target_cameras, k, exclude) -> list:
        return []

    def read_and_references(self, chunk_cameras, temporal_stride, latent_hw, backbone, k, exclude):
        return self.read(chunk_cameras, temporal_stride, latent_hw), []

    def stats(self) -> dict:
        return {"points": 0, "bytes": 0, "frames": 0}


def paste_reads(chunk_latents: Tensor, read, max_offset: float) -> Tensor:
    """``chunk_latents`` (C, T, h, w) with each target's covered cells whose read is aligned
    within ``max_offset`` cells replaced by the read's token (``PipelineConfig.paste_reads``)."""
    device = chunk_latents.device
    paste = read.mask.bool().to(device)  # (T−1, h, w)
    if read.offset is not None:
        paste = paste & (read.offset.to(device).abs().amax(dim=1) <= max_offset)
    features = read.features.permute(1, 0, 2, 3).to(device, chunk_latents.dtype)  # (C, T−1, h, w)
    targets = torch.where(paste[None], features, chunk_latents[:, 1:])
    return torch.cat([chunk_latents[:, :1], targets], dim=1)


def _on(device, *values):
    """``values`` (tensors, Cameras or None) on ``device``; those already there are returned as they are."""
    return tuple(v if v is None or v.device == device else v.to(device=device) for v in values)


def make_memory_mode(name: str, channels: int, *, fusion: str | None = None,
                     far_field: bool | None = None, dtype: str = "float32", device=None) -> MemoryMode:
    """The memory mode ``name`` on ``device`` (None: CPU); ``fusion`` and ``far_field`` override a
    point memory's defaults (latent: voxel fusion, far field on; rgb: append, no far field);
    ``dtype`` is the latent memory's token dtype (one of ``MEMORY_DTYPES``)."""
    options = {"device": device} if fusion is None else {"fusion": fusion, "device": device}
    if far_field is not None:
        options["far_field"] = far_field
    if name == "latent":
        return LatentMode(channels, dtype=MEMORY_DTYPES[dtype], **options)
    if name == "rgb":
        return RGBMode(channels, **options)
    if name == "none":
        return NoMemory(channels, device=device)
    raise ConfigError(f"`memory_mode` must be one of {MEMORY_MODES} but is {name!r}")
