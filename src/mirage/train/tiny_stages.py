"""The batches and losses of the tiny recipe's trained stages: the VAE (and its latent
normalisation), the depth estimator, and the denoiser (with its memory-conditioned samples).

Batch i of a stage comes from :func:`~mirage.train.tiny_config.batch_generator` (stage seed, i),
so a resumed run trains on the same batches.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.backbones.tiny import TinyBackbone, relative_pose
from mirage.backbones.tiny.denoiser import SLOT_FIRST, SLOT_PRECEDING, SLOT_REFERENCE, SLOT_TARGET
from mirage.backbones.tiny.flow import add_noise
from mirage.geometry import Camera
from mirage.pipeline import build_memory_samples
from mirage.train.tiny_config import TinyTrainConfig, batch_generator
from mirage.train.tiny_data import to_unit

__all__ = ["vae_batch", "vae_loss", "fit_latent_norm", "depth_batch", "depth_loss", "build_samples",
           "denoiser_batch", "denoiser_loss"]


def _clip_cameras(data: dict, i: int, frames: list[int]) -> Camera:
    return Camera(data["K"][i, frames], data["cam2world"][i, frames], data["rgb"].shape[-2], data["rgb"].shape[-1])


# -- VAE --------------------------------------------------------------------------------------
def vae_batch(data: dict, cfg: TinyTrainConfig, step: int) -> Tensor:
    g = batch_generator(cfg.seed + 1, step)
    N, Fr = data["rgb"].shape[:2]
    tau = cfg.model.temporal_stride
    L = (Fr - 1) // tau + 1
    clips = torch.randint(0, N, (cfg.vae_batch,), generator=g)
    starts = torch.randint(0, L - 4, (cfg.vae_batch,), generator=g)
    videos = []
    for c, s in zip(clips.tolist(), starts.tolist()):
        frames = list(range(max(0, tau * s - tau + 1) if s else 0, tau * (s + 4) + 1))
        if s == 0:
            frames = [0] * tau + frames[1:]  # group 0 is frame 0 repeated
        videos.append(to_unit(data["rgb"][c, frames]))  # (5τ or 4τ+τ, 3, H, W)
    return torch.stack(videos), starts  # (B, 5τ, 3, H, W)


def vae_loss(backbone: TinyBackbone, batch) -> tuple[Tensor, dict]:
    videos, starts = batch
    vae = backbone.vae
    B, n, _, H, W = videos.shape
    tau = vae.config.temporal_stride
    groups = videos.reshape(B * 5, tau * 3, H, W)  # 5 groups of τ frames, frame-major channels
    z = vae.encode_keyframes(groups[:, -3:])  # (B·5, C, h, w): the last frame is the keyframe
    reg = z.pow(2).mean()
    z = z + 0.05 * z.detach().std() * torch.randn_like(z)
    z = z.reshape(B, 5, *z.shape[1:])
    prev = torch.cat([z[:, :1], z[:, :-1]], dim=1)  # window start: its own predecessor
    out = vae.decode_groups(prev[:, 1:].flatten(0, 1), z[:, 1:].flatten(0, 1))
    target = groups.reshape(B, 5, tau * 3, H, W)[:, 1:].flatten(0, 1)
    mse = F.mse_loss(out, target)
    l1 = F.l1_loss(out, target)
    # Latent 0 of a clip: only its last frame matters (it is frame 0 alone).
    first = starts == 0
    if first.any():
        out0 = vae.decode_groups(z[first, 0], z[first, 0])[:, -3:]
        mse = mse + F.mse_loss(out0, groups.reshape(B, 5, tau * 3, H, W)[first, 0, -3:])
    loss = mse + 0.2 * l1 + 1e-4 * reg
    psnr = 10 * torch.log10(4.0 / mse.detach().clamp_min(1e-10))
    return loss, {"mse": mse.detach(), "psnr": psnr, "zreg": reg.detach()}


@torch.no_grad()
def fit_latent_norm(backbone: TinyBackbone, data: dict, clips: int = 64) -> None:
    vae = backbone.vae
    vae.latent_mean.zero_()
    vae.latent_std.fill_(1.0)
    zs = []
    for c in range(min(clips, data["rgb"].shape[0])):
        zs.append(vae.encode_video(to_unit(data["rgb"][c]).permute(1, 0, 2, 3)[None]))
    z = torch.cat(zs, dim=2)  # (1, C, ΣT, h, w)
    vae.latent_mean.copy_(z.mean(dim=(0, 2, 3, 4)))
    vae.latent_std.copy_(z.std(dim=(0, 2, 3, 4)).clamp_min(1e-4))


# -- depth ------------------------------------------------------------------------------------
def depth_batch(data: dict, cfg: TinyTrainConfig, step: int):
    g = batch_generator(cfg.seed + 2, step)
    N, Fr = data["rgb"].shape[:2]
    c = torch.randint(0, N, (cfg.depth_batch,), generator=g)
    f = torch.randint(0, Fr, (cfg.depth_batch,), generator=g)
    images = to_unit(data["rgb"][c, f])
    if torch.rand((), generator=g) < 0.5:  # mirror augmentation
        return images.flip(-1), data["depth"][c, f].flip(-1)
    return images, data["depth"][c, f]


def depth_loss(backbone: TinyBackbone, batch) -> tuple[Tensor, dict]:
    images, depth = batch
    log_depth, sky_logit = backbone.depth(images)
    sky = ~torch.isfinite(depth)
    l1 = (log_depth - depth.clamp(1e-3, 1e4).log()).abs()[~sky].mean()
    bce = F.binary_cross_entropy_with_logits(sky_logit, sky.float())
    return l1 + 0.5 * bce, {"l1_log": l1.detach(), "bce": bce.detach()}


# -- samples ----------------------------------------------------------------------------------
@torch.no_grad()
def build_samples(backbone: TinyBackbone, data: dict, cfg: TinyTrainConfig, progress: bool = True) -> dict:
    """Encode every clip and build the memory-conditioned samples (see tiny_data)."""
    from tqdm.auto import tqdm

    m = cfg.model
    tau = m.temporal_stride
    N, Fr, _, H, W = data["rgb"].shape
    L = (Fr - 1) // tau + 1
    latent_frames = list(range(0, Fr, tau))
    n_t = m.max_latent_frames - 1
    all_z = torch.zeros(N, L, m.latent_channels, H // m.spatial_stride, W // m.spatial_stride)
    feats, masks, offsets, meta = [], [], [], []
    for c in tqdm(range(N), desc="memory samples", disable=not progress, mininterval=5.0):
        video = to_unit(data["rgb"][c]).permute(1, 0, 2, 3)[None]  # (1, 3, F, H, W)
        z = backbone.vae.encode_video(video)[0].permute(1, 0, 2, 3)  # (L, C, h, w)
        all_z[c] = z
        frames = to_unit(data["rgb"][c, latent_frames])
        depth, _ = backbone.depth.predict(frames)  # +inf where the estimator gives no depth
        depth[0] = data["depth"][c, 0]  # the first frame's depth is given, as at inference
        cams = _clip_cameras(data, c, latent_frames)
        # As the pipeline writes: no depth (sky, +inf in `depth`) is not an exclusion, and nothing
        # else is excluded (static training scenes).
        exclude = torch.zeros(depth.shape, dtype=torch.bool)
        for s in build_memory_samples(z, depth, exclude, cams, n_t, m.preceding, m.references):
            n = len(s["targets"])
            f = torch.zeros(n_t, *z.shape[1:])
            k = torch.zeros(n_t, *z.shape[2:], dtype=torch.bool)
            o = torch.zeros(n_t, 2, *z.shape[2:], dtype=torch.float16)  # |offset| ≤ 0.5: fp16 is ample
            f[:n], k[:n], o[:n] = s["features"], s["mask"], s["offset"]
            feats.append(f)
            masks.append(k)
            offsets.append(o)
            meta.append([c, s["start"], n] + (s["references"] + [-1] * m.references)[: m.references])
    return {
        "latents": all_z,
        "features": torch.stack(feats),
        "mask": torch.stack(masks),
        "offset": torch.stack(offsets),
        "meta": torch.tensor(meta, dtype=torch.long),  # (S, 3 + R): clip, start, n, refs…
    }


# -- denoiser ---------------------------------------------------------------------------------
def denoiser_batch(samples: dict, data: dict, cfg: TinyTrainConfig, step: int) -> dict:
    g = batch_generator(cfg.seed + 3, step)
    m = cfg.model
    B, P, R, n_t = cfg.denoiser_batch, m.preceding, m.references, m.max_latent_frames - 1
    S = 1 + P + R + n_t
    z_all, tau = samples["latents"], m.temporal_stride
    C, h, w = z_all.shape[2:]
    pick = torch.randint(0, samples["meta"].shape[0], (B,), generator=g)
    x0 = torch.zeros(B, S, C, h, w)
    memory = torch.zeros(B, S, C, h, w)
    mask = torch.zeros(B, S, h, w, dtype=torch.bool)
    offset = torch.zeros(B, S, 2, h, w)
    pose = torch.zeros(B, S, 12)
    slot = torch.full((B, S), SLOT_TARGET, dtype=torch.long)
    slot[:, 0], slot[:, 1:1 + P], slot[:, 1 + P:1 + P + R] = SLOT_FIRST, SLOT_PRECEDING, SLOT_REFERENCE
    valid = torch.zeros(B, S, dtype=torch.bool)
    is_target = torch.zeros(B, S, dtype=torch.bool)
    drop_mem = torch.rand(B, generator=g) < cfg.p_drop_memory
    drop_ref = drop_mem | (torch.rand(B, generator=g) < cfg.p_drop_references)
    drop_pre = torch.rand(B, generator=g) < cfg.p_drop_preceding
    for b, idx in enumerate(pick.tolist()):
        clip, s, n = samples["meta"][idx, :3].tolist()
        refs = [r for r in samples["meta"][idx, 3:].tolist() if r >= 0]
        pre = [] if drop_pre[b] else list(range(max(0, s - P), s))
        refs = [] if drop_ref[b] else refs
        ids = [s] + pre + [-1] * (P - len(pre)) + refs + [-1] * (R - len(refs)) + list(range(s + 1, s + 1 + n)) + [-1] * (n_t - n)
        ok = torch.tensor([i >= 0 for i in ids])
        safe = [max(i, 0) for i in ids]
        x0[b] = z_all[clip, safe]
        valid[b] = ok
        is_target[b, 1 + P + R:1 + P + R + n] = True
        if not drop_mem[b]:
            memory[b, 1 + P + R:] = samples["features"][idx]
            mask[b, 1 + P + R:] = samples["mask"][idx]
            if m.memory_offsets:
                offset[b, 1 + P + R:] = samples["offset"][idx].float()
        c2w = data["cam2world"][clip, [tau * i for i in safe]]
        pose[b] = relative_pose(c2w[0], c2w)
    t = torch.rand(B, S, generator=g) * is_target  # independent noise level per target frame
    noise = torch.randn(B, S, C, h, w, generator=g)
    x_t = torch.where(is_target[..., None, None, None], add_noise(x0, noise, t), x0)
    return {"x_t": x_t, "x0": x0, "memory": memory, "mask": mask, "offset": offset, "t": t,
            "pose": pose, "slot": slot, "valid": valid, "is_target": is_target}


def denoiser_loss(backbone: TinyBackbone, batch: dict) -> tuple[Tensor, dict]:
    pred = backbone.denoiser(batch["x_t"], batch["memory"], batch["mask"], batch["t"],
                             batch["pose"], batch["slot"], batch["valid"], batch["offset"])
    err = (pred - batch["x0"]).pow(2).mean(dim=2)  # (B, S, h, w)
    sel = batch["is_target"]
    loss = err[sel].mean()
    covered = batch["mask"][sel]
    e = err[sel]
    return loss, {
        "mse_covered": e[covered].mean().detach() if covered.any() else torch.tensor(0.0),
        "mse_open": e[~covered].mean().detach() if (~covered).any() else torch.tensor(0.0),
    }


