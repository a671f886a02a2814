"""Memory-conditioned training samples, built by the pipeline's own rules.

A backbone learns from the conditioning the pipeline will hand it at inference, so the samples
come from here rather than from a copy in the training code: a clip's clean latents are written
into a :class:`~mirage.pipeline.memory_modes.LatentMode` one latent frame at a time (frame 0 at
the first frame's confidence, later frames at the generated frames'), and before latent frame
s+1 is written, the memory is read for the target latent frames s+1..s+T−1 of a chunk starting at
s, and references are retrieved with the same rule and exclusions as
:class:`~mirage.pipeline.Session`. Both ``mirage train tiny`` and ``mirage data build`` use it.
"""

from __future__ import annotations

from torch import Tensor

from mirage.geometry import Camera
from mirage.pipeline.context import preceding_ids, reference_exclusions
from mirage.pipeline.memory_modes import FIRST_FRAME_CONFIDENCE, GENERATED_CONFIDENCE, LatentMode

__all__ = ["build_memory_samples"]


def build_memory_samples(
    latents: Tensor,  # (L, C, h, w) clean latents of one clip
    depths: Tensor,  # (L, H, W) depth of each latent frame (frame 0 exact, others estimated)
    exclude: Tensor,  # (L, H, W) bool never-write mask (invalid / sky)
    cameras: Camera,  # L cameras (the latent frames' poses) at (H, W)
    targets: int,  # T − 1 target latent frames per chunk
    preceding: int,
    references: int,
    relative: tuple[Tensor, Tensor] | None = None,
    alignment: list | None = None,
) -> list[dict]:
    """For every chunk start s: the memory read of its targets and the references, as inference.

    Returns dicts with ``start``, ``targets`` (ids), ``features`` (n, C, h, w), ``mask`` (n, h, w),
    ``offset`` (n, 2, h, w), ``preceding`` (ids) and ``references`` (ids).

    ``relative``: (inverse, valid), each (L, H, W), a relative depth model's affine inverse depth
    of every latent frame: frames after the first are then written as inference writes them,
    aligned to the memory's own depth in their view first and not written when that fails
    (:func:`mirage.pipeline.depth_align.align_frames`); ``depths`` then only gives frame 0. The
    per-frame records are appended to ``alignment`` when given.
    """
    L, C, h, w = latents.shape
    mode = LatentMode(C)
    mode.write(latents[:1], None, depths[:1], cameras[0], exclude[:1], [0], confidence=FIRST_FRAME_CONFIDENCE)
    samples = []
    for s in range(L - 1):
        ids = list(range(s + 1, min(s + targets, L - 1) + 1))
        target_cams = Camera(cameras.K[ids], cameras.cam2world[ids], *cameras.hw)
        read = mode.memory.read(target_cams, (h, w))
        refs = mode.references(target_cams, references, reference_exclusions(s, preceding))
        samples.append({
            "start": s, "targets": ids,
            "features": read.features.float().clone(), "mask": read.mask.clone(),
            "offset": read.offset.clone(),
            "preceding": preceding_ids(s, preceding),
            "references": [r.frame_id for r in refs],
        })
        depth, skip = depths[s + 1:s + 2], exclude[s + 1:s + 2]
        if relative is not None:
            from mirage.pipeline.depth_align import align_frames

            memory = mode.memory.read(cameras[s + 1], (h, w))
            depth, valid, keep, records = align_frames(relative[0][s + 1:s + 2], relative[1][s + 1:s + 2],
                                                       memory.depth, memory.offset, [s + 1])
            skip = skip | ~valid
            if alignment is not None:
                alignment += records
            if not keep[0]:
                continue
        mode.write(latents[s + 1:s + 2], None, depth, cameras[s + 1], skip, [s + 1],
                   confidence=GENERATED_CONFIDENCE)  # later frames are generated at inference
    return samples
