"""`mirage train tiny`: the tiny backbone's training recipe, in resumable stages.

Stages (each checkpointed under ``out``; a rerun with ``resume`` skips finished stages):

1. ``data``: render the training clips (scene seeds ≥ ``first_seed``) → ``data.safetensors``.
2. ``vae``: the VAE on random 5-latent windows (keyframes in, every frame out; MSE + L1, small
   latent penalty, latent noise),
   then per-channel latent normalisation fitted on the data.
3. ``depth``: the depth estimator on random frames (L1 on log depth, BCE on sky).
4. ``samples``: every clip encoded; memory reads and references built as at inference
   (:func:`mirage.pipeline.build_memory_samples`) → ``samples.safetensors``.
5. ``denoiser``: flow matching with an independent noise level per target frame, memory
   (and references) dropped at random so ``memory_mode=none`` works too.

Seeds are fixed; batch i of a stage is built from a generator seeded by (stage seed, i).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from mirage.backbones.tiny import TinyBackbone, TinyConfig, relative_pose
from mirage.backbones.tiny.denoiser import SLOT_FIRST, SLOT_PRECEDING, SLOT_REFERENCE, SLOT_TARGET
from mirage.backbones.tiny.flow import add_noise
from mirage.errors import ConfigError
from mirage.files import load_safetensors, save_safetensors
from mirage.geometry import Camera
from mirage.train.loop import LoopConfig, train_loop
from mirage.pipeline import build_memory_samples
from mirage.train.tiny_data import DataConfig, render_clips, to_unit

__all__ = ["TinyTrainConfig", "train_tiny"]


@dataclass(frozen=True)
class TinyTrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    # The shipped model conditions its denoiser on the read's sub-cell offsets.
    model: TinyConfig = field(default_factory=lambda: TinyConfig(memory_offsets=True))
    vae_steps: int = 6000
    vae_batch: int = 4  # windows of 5 latent frames (5τ pixel frames)
    depth_steps: int = 900
    depth_batch: int = 16
    denoiser_steps: int = 6000
    denoiser_batch: int = 12
    p_drop_memory: float = 0.15  # memory and references dropped together (memory_mode=none)
    p_drop_references: float = 0.1
    p_drop_preceding: float = 0.1
    seed: int = 0
    threads: int = 2  # torch threads; the recipe's budget assumes the 2 cores to itself
    # Tiny weights whose VAE and depth estimator this run reuses (their stages are skipped):
    # retrain only the denoiser after a change to its conditioning. None = train every stage.
    init_from: str | None = None
    minutes: float = 88.0  # wall-clock budget for the whole run; stages share what is left


def _gen(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _clip_cameras(data: dict, i: int, frames: list[int]) -> Camera:
    return Camera(data["K"][i, frames], data["cam2world"][i, frames], data["rgb"].shape[-2], data["rgb"].shape[-1])


# -- VAE --------------------------------------------------------------------------------------
def _vae_batch(data: dict, cfg: TinyTrainConfig, step: int) -> Tensor:
    g = _gen(cfg.seed + 1, step)
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


def _vae_loss(backbone: TinyBackbone, batch) -> tuple[Tensor, dict]:
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
def _fit_latent_norm(backbone: TinyBackbone, data: dict, clips: int = 64) -> None:
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
def _depth_batch(data: dict, cfg: TinyTrainConfig, step: int):
    g = _gen(cfg.seed + 2, step)
    N, Fr = data["rgb"].shape[:2]
    c = torch.randint(0, N, (cfg.depth_batch,), generator=g)
    f = torch.randint(0, Fr, (cfg.depth_batch,), generator=g)
    images = to_unit(data["rgb"][c, f])
    if torch.rand((), generator=g) < 0.5:  # mirror augmentation
        return images.flip(-1), data["depth"][c, f].flip(-1)
    return images, data["depth"][c, f]


def _depth_loss(backbone: TinyBackbone, batch) -> tuple[Tensor, dict]:
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
def _denoiser_batch(samples: dict, data: dict, cfg: TinyTrainConfig, step: int) -> dict:
    g = _gen(cfg.seed + 3, step)
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


def _denoiser_loss(backbone: TinyBackbone, batch: dict) -> tuple[Tensor, dict]:
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


# -- the recipe -------------------------------------------------------------------------------
def _save_tensors(path: Path, tensors: dict, meta: dict) -> None:
    save_safetensors(path, tensors, {"info": json.dumps(meta)})


def _load_tensors(path: Path) -> dict:
    return load_safetensors(path, "training data")[0]


# Config fields only the denoiser uses: weights that differ only in these share a VAE and depth.
DENOISER_FIELDS = ("patch", "dim", "layers", "heads", "preceding", "references", "steps",
                   "schedule_shift", "memory_offsets")


def _init_from(backbone: TinyBackbone, path) -> dict:
    """Copy the VAE and depth estimator of the tiny weights at ``path`` into ``backbone``;
    returns what the report records of them (their path and training report)."""
    source = TinyBackbone.load(path)
    mismatch = {f: (getattr(source.config, f), getattr(backbone.config, f))
                for f in asdict(backbone.config) if f not in DENOISER_FIELDS
                and getattr(source.config, f) != getattr(backbone.config, f)}
    if mismatch:
        raise ConfigError(
            f"`init_from` weights {str(path)!r} have a different VAE or depth config than this run "
            f"(field: (theirs, ours)): {mismatch}"
        )
    backbone.vae.load_state_dict(source.vae.state_dict())
    backbone.depth.load_state_dict(source.depth.state_dict())
    train = source.metadata.get("train", {})
    return {"path": str(path), "vae": train.get("vae"), "depth": train.get("depth"),
            "stage_seconds": {k: v for k, v in train.get("stage_seconds", {}).items()
                              if k in ("vae", "depth")}}


def _train_vae_and_depth(backbone, data, cfg, out, report, timed, budget_left, resume, progress, log) -> None:
    """Stages 2 (VAE: ~40% of the budget left after data, then the latent normalisation) and
    3 (depth: ~15%)."""
    state = timed("vae", lambda: train_loop(
        "vae", backbone, backbone.vae.parameters(), lambda i: _vae_batch(data, cfg, i), _vae_loss,
        LoopConfig(cfg.vae_steps, lr=1e-3, checkpoint_every=100, max_seconds=0.4 * budget_left()),
        out / "vae.ckpt.safetensors", resume=resume, progress=progress, log=log))
    report["vae"] = state
    if not state.get("norm_fitted"):
        _fit_latent_norm(backbone, data)
        from mirage.train.checkpoint import save_checkpoint
        state["norm_fitted"] = True
        save_checkpoint(out / "vae.ckpt.safetensors", backbone, None, state)
    # 3. depth
    state = timed("depth", lambda: train_loop(
        "depth", backbone, backbone.depth.parameters(), lambda i: _depth_batch(data, cfg, i), _depth_loss,
        LoopConfig(cfg.depth_steps, lr=1e-3, checkpoint_every=100, max_seconds=0.15 * budget_left()),
        out / "depth.ckpt.safetensors", resume=resume, progress=progress, log=log))
    report["depth"] = state


def _machine_info(threads: int) -> dict:
    """The CPU, its core count, the torch threads and a measured fp32 matmul rate (GFLOP/s at
    those threads), so stage times from different machines can be compared."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    n = 512
    g = torch.Generator().manual_seed(0)  # not the global generator: the run's seeds stay as they are
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a @ b  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        a @ b
        reps += 1
    gflops = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": threads,
            "matmul_gflops": round(gflops, 1), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def train_tiny(out, cfg: TinyTrainConfig | None = None, *, resume: bool = True,
               progress: bool = True, log=print) -> TinyBackbone:
    """Run (or resume) every stage into ``out``; returns the trained backbone and writes
    ``out/tiny.safetensors`` and ``out/train_report.json``."""
    cfg = cfg or TinyTrainConfig()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train_tiny(out, cfg, resume, progress, log)
    finally:
        torch.set_num_threads(threads)  # the caller's thread count again


def _train_tiny(out, cfg: TinyTrainConfig, resume: bool, progress: bool, log) -> TinyBackbone:
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1, default=list))
    t_start = time.monotonic()
    report_path = out / "train_report.json"
    report = json.loads(report_path.read_text()) if resume and report_path.exists() else {}
    report.setdefault("stage_seconds", {})
    # Stage times depend on the machine: each session of the run records what it ran on.
    machine = _machine_info(cfg.threads)
    report.setdefault("machines", []).append(machine)
    report_path.write_text(json.dumps(report, indent=1))
    log(f"machine: {machine['cpu']}, {machine['cpus']} CPUs, {cfg.threads} torch threads, "
        f"fp32 matmul {machine['matmul_gflops']} GFLOP/s; budget {cfg.minutes:g} min")

    def budget_left() -> float:
        spent = sum(report["stage_seconds"].values())
        return max(60.0, cfg.minutes * 60 - spent)

    def timed(name, fn):
        t0 = time.monotonic()
        result = fn()
        if isinstance(result, dict) and "seconds" in result:  # a loop stage counts its own time,
            report["stage_seconds"][name] = result["seconds"]  # across interruptions
        else:
            report["stage_seconds"][name] = report["stage_seconds"].get(name, 0.0) + time.monotonic() - t0
        report_path.write_text(json.dumps(report, indent=1))
        return result

    # 1. data
    data_path = out / "data.safetensors"
    if resume and data_path.exists():
        data = _load_tensors(data_path)
    else:
        data = timed("data", lambda: render_clips(cfg.data, progress))
        _save_tensors(data_path, data, asdict(cfg.data))
    log(f"data: {tuple(data['rgb'].shape)}")

    backbone = TinyBackbone(cfg.model)
    if cfg.init_from is not None:
        report["init_from"] = _init_from(backbone, cfg.init_from)
        report_path.write_text(json.dumps(report, indent=1))
        log(f"vae, depth: from {cfg.init_from}")
    else:
        _train_vae_and_depth(backbone, data, cfg, out, report, timed, budget_left, resume, progress, log)
    # 4. samples
    samples_path = out / "samples.safetensors"
    samples = _load_tensors(samples_path) if resume and samples_path.exists() else None
    if samples is not None and cfg.model.memory_offsets and "offset" not in samples:
        log("samples: the saved samples have no offsets (an older run); building them again")
        samples = None
    if samples is None:
        samples = timed("samples", lambda: build_samples(backbone, data, cfg, progress))
        _save_tensors(samples_path, samples, {})
    log(f"samples: {samples['meta'].shape[0]}; coverage {samples['mask'].float().mean():.3f}")
    # 5. denoiser
    state = timed("denoiser", lambda: train_loop(
        "denoiser", backbone, backbone.denoiser.parameters(),
        lambda i: _denoiser_batch(samples, data, cfg, i), _denoiser_loss,
        LoopConfig(cfg.denoiser_steps, lr=5e-4, weight_decay=0.01, checkpoint_every=100,
                   max_seconds=0.97 * budget_left()),
        out / "denoiser.ckpt.safetensors", resume=resume, progress=progress, log=log))
    report["denoiser"] = state
    report["total_seconds"] = sum(report["stage_seconds"].values())
    report_path.write_text(json.dumps(report, indent=1))
    backbone.metadata = {"train": report, "config": asdict(cfg)}
    backbone.save(out / "tiny.safetensors", json.loads(json.dumps(backbone.metadata, default=list)))
    log(f"done in {report['total_seconds'] / 60:.1f} min (this session {(time.monotonic() - t_start) / 60:.1f})")
    return backbone


def install_weights(out) -> Path:
    """Copy ``out/tiny.safetensors`` into the package (or, for an unfinished run, the newest
    stage checkpoint's model) and write the model card next to it, with the held-out evaluation
    table when present: ``out/eval.md``, or the ``summary.md`` of ``mirage eval --out out/eval``.
    Returns the installed path."""
    from mirage.backbones.tiny.model import SHIPPED_WEIGHTS
    from mirage.train.checkpoint import load_checkpoint
    from mirage.train.model_card import write_model_card

    out = Path(out)
    final = out / "tiny.safetensors"
    if final.exists():
        backbone = TinyBackbone.load(final)
    else:
        cfg_path = out / "config.json"
        raw = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        backbone = TinyBackbone(TinyConfig(**raw["model"]) if "model" in raw else TinyConfig())
        for stage in ("denoiser", "depth", "vae"):
            ckpt = out / f"{stage}.ckpt.safetensors"
            if ckpt.exists():
                state = load_checkpoint(ckpt, backbone)
                report = json.loads((out / "train_report.json").read_text()) if (out / "train_report.json").exists() else {}
                report["unfinished"] = {"stage": stage, "step": state.get("step")}
                backbone.metadata = {"train": report, "config": raw}
                break
        else:
            raise FileNotFoundError(f"{str(out)!r} holds no weights or checkpoints")
    SHIPPED_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    backbone.save(SHIPPED_WEIGHTS, backbone.metadata)
    table = next((p for p in (out / "eval.md", out / "eval" / "summary.md") if p.exists()), None)
    evaluation = table.read_text() if table else None
    write_model_card(SHIPPED_WEIGHTS.parent / "MODEL_CARD.md", backbone.metadata, evaluation)
    return SHIPPED_WEIGHTS
