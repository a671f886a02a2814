"""Training samples built exactly as the pipeline conditions a chunk at inference.

For a clip with L latent frames (latent k has the pose of pixel frame τk), the sample that
starts at latent s holds:

- the **first frame** (latent s, clean) and the **targets** (latents s+1 .. s+n, n ≤ T−1 where
  T = the backbone's latent frames per chunk);
- the **preceding** latents (:func:`mirage.pipeline.context.preceding_ids`);
- the **references**: covisible past latents retrieved by voxel IoU with the same rule and
  exclusions as inference;
- the **memory read** of the target views from a :class:`~mirage.pipeline.memory_modes.LatentMode`
  that holds latents 0..s, written one latent frame at a time with the clip's depth and
  exclusion masks (the planarity rule and tolerance of the pipeline);
- every latent frame's camera, and the caption.

The memory writes and reads are :func:`mirage.pipeline.build_memory_samples`, the builder
the tiny model trains from, so the two backbones see the same conditioning. :func:`to_conditioning`
turns a stored sample back into the :class:`~mirage.backbones.base.ChunkConditioning` the
pipeline hands ``backbone.assemble`` / ``backbone.sample``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mirage.backbones.base import ChunkConditioning
from mirage.data.clips import Clip
from mirage.geometry import Camera
from mirage.pipeline import build_memory_samples

__all__ = ["encode_clip", "clip_samples", "to_conditioning", "SAMPLE_GROUPS"]

SAMPLE_GROUPS = ("first", "preceding", "references", "targets")  # order of the stored cameras


@torch.no_grad()
def encode_clip(backbone, clip: Clip) -> Tensor:
    """(L, C, h, w) latents of the whole clip (one VAE pass, L = (F−1)/τ + 1), on the CPU, float32."""
    video = clip.video.permute(1, 0, 2, 3)[None]  # (1, 3, F, H, W)
    return backbone.encode(video)[0].permute(1, 0, 2, 3).float().cpu()  # (L, C, h, w)


def clip_samples(
    backbone,
    clip: Clip,
    *,
    preceding: int,
    references: int,
    stride: int = 1,
    latents: Tensor | None = None,  # (L, C, h, w), else encoded here
    dtype: torch.dtype = torch.float32,
    depth_model=None,
) -> list[tuple[dict, dict]]:
    """The (tensors, meta) of every sample of ``clip`` whose start latent is a multiple of ``stride``.

    Tensors: ``first`` (C, h, w), ``preceding`` (P, C, h, w), ``references`` (R, C, h, w),
    ``targets`` (n, C, h, w), ``memory_features`` (n, C, h, w), ``memory_mask`` (n, h, w) bool,
    ``K`` (1+P+R+n, 3, 3) and ``cam2world`` (1+P+R+n, 4, 4) at pixel size (H, W), in the order
    first, preceding, references, targets. Latents are stored in ``dtype``; cameras in float32.
    Meta: clip, start, ids per group, caption, hw, latent_hw, strides.

    ``depth_model`` (a :class:`~mirage.depth_model.HFDepthModel`): the memory's frames after
    the first take its depth instead of the clip's, as inference would write them: a relative
    model's aligned to the memory per frame (frames that cannot be aligned are not written), a
    metric model's as it is. Each sample's meta then holds ``depth_alignment``: the records of the
    frames written before its read ({"frame": latent frame, "status", "scale", "shift", ...}).
    """
    tau = backbone.temporal_stride
    if latents is None:
        latents = encode_clip(backbone, clip)
    L = latents.shape[0]
    key_frames = list(range(0, tau * (L - 1) + 1, tau))  # pixel frame of each latent frame
    cams = clip.cameras[key_frames]
    targets_per_chunk = (backbone.max_frames - 1) // tau  # T − 1
    depths, exclude, relative, alignment = clip.depths[key_frames], clip.exclude[key_frames], None, []
    if depth_model is not None:
        from mirage.video import to_uint8

        inverse = torch.from_numpy(depth_model(to_uint8(clip.video[key_frames]).permute(0, 2, 3, 1).numpy()))
        if depth_model.metric:  # the model's z-depth as it is (it came back inverted)
            model_depth = torch.where(inverse > 0, 1.0 / inverse.clamp_min(1e-12), torch.full_like(inverse, float("inf")))
            depths = torch.cat([depths[:1], model_depth[1:]])
        else:
            relative = (inverse, torch.isfinite(inverse))
    raw = build_memory_samples(latents, depths, exclude, cams, targets_per_chunk, preceding, references,
                               relative=relative, alignment=alignment)
    out = []
    for s in raw:
        start = s["start"]
        if start % stride:
            continue
        ids = {"first": [start], "preceding": s["preceding"], "references": s["references"],
               "targets": s["targets"]}
        order = [k for g in SAMPLE_GROUPS for k in ids[g]]
        tensors = {
            "first": latents[start].to(dtype),
            "preceding": latents[s["preceding"]].to(dtype),
            "references": latents[s["references"]].to(dtype),
            "targets": latents[s["targets"]].to(dtype),
            "memory_features": s["features"].to(dtype),
            "memory_mask": s["mask"].bool(),
            "K": cams.K[order].float(),
            "cam2world": cams.cam2world[order].float(),
        }
        meta = {"clip": clip.name, "start": start, "ids": ids, "caption": clip.caption,
                "hw": list(clip.cameras.hw), "latent_hw": list(latents.shape[-2:]),
                "temporal_stride": tau, "spatial_stride": backbone.spatial_stride}
        if relative is not None:
            meta["depth_alignment"] = [r for r in alignment if r["frame"] <= start]
        out.append((tensors, meta))
    return out


def to_conditioning(tensors: dict, meta: dict, *, steps: int = 1) -> ChunkConditioning:
    """A stored sample → the :class:`ChunkConditioning` inference would build for that chunk.

    Latents come back as float32; ``text`` is the caption.
    """
    H, W = meta["hw"]
    counts = [len(meta["ids"][g]) for g in SAMPLE_GROUPS]
    bounds = torch.tensor([0] + counts).cumsum(0).tolist()

    def cams(i: int) -> Camera | None:
        a, b = bounds[i], bounds[i + 1]
        return Camera(tensors["K"][a:b], tensors["cam2world"][a:b], H, W) if b > a else None

    return ChunkConditioning(
        first_latent=tensors["first"].float(),
        memory_features=tensors["memory_features"].float(),
        memory_mask=tensors["memory_mask"].bool(),
        preceding=tensors["preceding"].float(),
        references=tensors["references"].float(),
        first_camera=cams(0),
        target_cameras=cams(3),
        preceding_cameras=cams(1),
        reference_cameras=cams(2),
        steps=steps,
        text=meta.get("caption"),
    )
