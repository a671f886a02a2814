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
from dataclasses import asdict
from pathlib import Path

import torch

from mirage.backbones.tiny import TinyBackbone
from mirage.errors import ConfigError
from mirage.files import load_safetensors, save_safetensors
from mirage.train.loop import LoopConfig, train_loop
from mirage.train.machine import machine_info
from mirage.train.tiny_config import DENOISER_FIELDS, TinyTrainConfig
from mirage.train.tiny_data import render_clips
from mirage.train.tiny_stages import (build_samples, denoiser_batch, denoiser_loss, depth_batch, depth_loss,
                                      fit_latent_norm, vae_batch, vae_loss)

__all__ = ["TinyTrainConfig", "train_tiny"]


def _save_tensors(path: Path, tensors: dict, meta: dict) -> None:
    save_safetensors(path, tensors, {"info": json.dumps(meta)})


def _load_tensors(path: Path) -> dict:
    return load_safetensors(path, "training data")[0]


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
        "vae", backbone, backbone.vae.parameters(), lambda i: vae_batch(data, cfg, i), vae_loss,
        LoopConfig(cfg.vae_steps, lr=1e-3, checkpoint_every=100, max_seconds=0.4 * budget_left()),
        out / "vae.ckpt.safetensors", resume=resume, progress=progress, log=log))
    report["vae"] = state
    if not state.get("norm_fitted"):
        fit_latent_norm(backbone, data)
        from mirage.train.checkpoint import save_checkpoint
        state["norm_fitted"] = True
        save_checkpoint(out / "vae.ckpt.safetensors", backbone, None, state)
    # 3. depth
    state = timed("depth", lambda: train_loop(
        "depth", backbone, backbone.depth.parameters(), lambda i: depth_batch(data, cfg, i), depth_loss,
        LoopConfig(cfg.depth_steps, lr=1e-3, checkpoint_every=100, max_seconds=0.15 * budget_left()),
        out / "depth.ckpt.safetensors", resume=resume, progress=progress, log=log))
    report["depth"] = state


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
    machine = machine_info(cfg.threads)
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
        lambda i: denoiser_batch(samples, data, cfg, i), denoiser_loss,
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


