"""Wan2.2-TI2V-5B chunk benchmark: latent vs rgb memory, side by side in one run.

    python benchmarks/wan_chunk.py --device cuda --out benchmarks/results/wan-chunk-704x1280
    python benchmarks/wan_chunk.py --cpu-small --out benchmarks/results/wan-chunk-cpu-small
    python benchmarks/wan_chunk.py --check          # build the 5B config on the meta device only

Builds the full-size Wan2.2-TI2V-5B configuration with random weights (DiT: 30 layers, dim
3072, 24 heads, ffn 14336, text_dim 4096, 48 channels, patch (1, 2, 2), memory branch on every
second layer; VAE: z 48, base 160/256, strides 16×16×4) as a :class:`Wan22Backbone` (bf16 DiT
on GPU), and runs :func:`mirage.pipeline.generate` on a procedural scene with 33-frame chunks
(default 65 frames = two chunks, pan-return), in the memory modes ``latent`` and ``rgb``. The
modes run alternately, ``--repeats`` times after one uncounted warm-up each; per mode the best
(minimum) total is kept. Reported per mode: seconds per output frame, the split read / denoise
/ decode / depth / update, and the peak GPU memory (``torch.cuda.max_memory_allocated``), plus
the rgb/latent ratios. ``--cpu-small`` shrinks the DiT and VAE widths and the frame size so the
same code runs on a CPU in a minute or two; its absolute figures say nothing about a GPU.
Writes ``wan_chunk.json`` and ``wan_chunk.txt`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

FULL_DIT = dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30,
                cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
FULL_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4)
SMALL_DIT = {**FULL_DIT, "num_attention_heads": 2, "attention_head_dim": 48, "ffn_dim": 256,
             "num_layers": 4, "text_dim": 64}
SMALL_VAE = {**FULL_VAE, "base_dim": 8, "decoder_base_dim": 8, "num_res_blocks": 1}
MODES = ("latent", "rgb")


def parse_args(argv=None):
    from mirage.cli.options import parse_size

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default=None, help="HxW (default 704x1280; --cpu-small: 64x128)")
    p.add_argument("--frames", type=int, default=65, help="pixel frames, 4k+1 (default 65: two 33-frame chunks)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps per chunk (default 10; --cpu-small: 2)")
    p.add_argument("--repeats", type=int, default=2, help="counted runs per mode, alternating (default 2)")
    p.add_argument("--device", default=None, help="cuda (default when available) | cpu")
    p.add_argument("--cpu-small", action="store_true", help="reduced widths and size for a CPU run")
    p.add_argument("--check", action="store_true",
                   help="validate arguments and build the configuration on the meta device; no run")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on CPU, so runs on a shared machine compare)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="DIR")
    args = p.parse_args(argv)
    args.size = parse_size(args.size or ("64x128" if args.cpu_small else "704x1280"))
    if args.steps is None:
        args.steps = 2 if args.cpu_small else 10
    from mirage.errors import ConfigError
    from mirage.pipeline import check_frame_count

    check_frame_count(args.frames, 4, "--frames")
    if args.size[0] % 32 or args.size[1] % 32:
        raise ConfigError(f"`--size` must be divisible by 32 but is {args.size[0]}x{args.size[1]}")
    if args.repeats < 1 or args.steps < 1:
        raise ConfigError("`--repeats` and `--steps` must be ≥ 1")
    return args


def build_transformer(cfg: dict, device, dtype, seed: int):
    """Random-weight memory transformer of config ``cfg``, materialised directly on ``device``."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    from mirage.backbones.wan22.transformer import MemoryWanTransformer

    with init_empty_weights():
        base = WanTransformer3DModel(**cfg)
    base.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in base.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # norms
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    base.rope = type(base.rope)(cfg["attention_head_dim"], cfg["patch_size"], cfg["rope_max_seq_len"]).to(device)
    model = MemoryWanTransformer.from_base(base, seed=seed)
    keep = tuple(MemoryWanTransformer._keep_in_fp32_modules)
    for name, p in model.named_parameters():  # diffusers' bf16 layout: the `keep` ones stay fp32
        if not any(k in name.split(".") for k in keep):
            p.data = p.data.to(dtype)
    return model


def param_count_meta(cfg: dict) -> int:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from mirage.backbones.wan22.transformer import MemoryWanTransformer, memory_branch_layers

    with init_empty_weights():
        base = WanTransformer3DModel(**cfg)
        mem = MemoryWanTransformer(**cfg, vace_layers=memory_branch_layers(cfg["num_layers"]))
        vae = AutoencoderKLWan(**FULL_VAE)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return count(base), count(mem), count(vae)


def run_mode(backbone, start, mode, steps, seed):
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate

    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    config = PipelineConfig(memory_mode=mode, steps=steps, seed=seed)
    t = time.perf_counter()
    out = generate(backbone, start.image, start.cameras, config, depth_estimator=TinyDepthEstimator(backbone),
                   masker=LatentDisagreementMasker(), first_depth=start.depth, first_exclude=start.exclude)
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    summary = out.timing_summary()
    peak = torch.cuda.max_memory_allocated() / 2**30 if backbone.device.type == "cuda" else None
    return {**summary, "wall_s": wall, "peak_gpu_gib": peak, "cache_bytes": out.memory_stats[-1]["bytes"]}


def main(argv=None) -> int:
    from mirage.errors import MirageError

    try:
        args = parse_args(argv)
    except MirageError as err:
        print(f"wan_chunk: error: {err}", file=sys.stderr)
        return 2
    dit, vae_cfg = (SMALL_DIT, SMALL_VAE) if args.cpu_small else (FULL_DIT, FULL_VAE)
    if args.check:
        base, mem, vae = param_count_meta(FULL_DIT)
        print(f"5B config OK: base DiT {base / 1e9:.3f} B params, with memory branch {mem / 1e9:.3f} B, "
              f"VAE {vae / 1e6:.1f} M; size {args.size[0]}x{args.size[1]}, {args.frames} frames, "
              f"{args.steps} steps, modes {MODES}")
        return 0
    threads = args.threads or (1 if (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    from diffusers import AutoencoderKLWan

    from mirage.backbones.wan22 import Wan22Backbone, Wan22Config
    from mirage.backbones.wan22.config import resolve_device, resolve_dtype
    from mirage.cli.starts import scene_start

    device = resolve_device(args.device)
    dtype = resolve_dtype(None, device)
    torch.manual_seed(args.seed)
    transformer = build_transformer(dit, device, dtype, args.seed)
    vae = AutoencoderKLWan(**vae_cfg, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    H, W = args.size
    config = Wan22Config(height=H, width=W, steps=args.steps, device=str(device), dtype=str(dtype).replace("torch.", ""),
                         text_len=512)
    backbone = Wan22Backbone(transformer, vae, config=config)
    start = scene_start("room", 3, "pan-return", args.frames, (H, W), 16.0)

    for mode in MODES:  # warm-up, not counted
        run_mode(backbone, start, mode, args.steps, args.seed)
    runs = {m: [] for m in MODES}
    for r in range(args.repeats):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            runs[mode].append(run_mode(backbone, start, mode, args.steps, args.seed))
    best = {m: min(runs[m], key=lambda x: x["total_s"]) for m in MODES}
    lat, rgb = best["latent"], best["rgb"]
    result = {
        "format": "mirage.bench.wan-chunk", "version": 1,
        "config": {"size": [H, W], "frames": args.frames, "chunk_frames": 33, "steps": args.steps,
                   "repeats": args.repeats, "cpu_small": args.cpu_small, "dit": {**dit, "patch_size": list(dit["patch_size"])},
                   "vae": vae_cfg, "device": str(device), "dtype": str(dtype),
                   "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                   "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                   "torch": torch.__version__},
        "best": best, "runs": runs,
        "ratios_rgb_over_latent": {"s_per_frame": rgb["s_per_frame"] / lat["s_per_frame"],
                                   "read_s": rgb["read_s"] / max(lat["read_s"], 1e-9),
                                   "peak_gpu": (rgb["peak_gpu_gib"] / lat["peak_gpu_gib"]) if lat["peak_gpu_gib"] else None},
    }
    rows = ["s_per_frame", "total_s", "read_s", "denoise_s", "decode_s", "depth_s", "update_s", "peak_gpu_gib", "cache_bytes"]
    lines = [f"wan_chunk: {H}x{W}, {args.frames} frames (33-frame chunks), {args.steps} steps, "
             f"{'reduced CPU config' if args.cpu_small else 'full 5B config'}, {device}, {dtype}, best of {args.repeats}",
             f"{'':14s}{'latent':>14s}{'rgb':>14s}{'rgb/latent':>12s}"]
    for k in rows:
        a, b = lat[k], rgb[k]
        fmt = (lambda v: "-" if v is None else f"{v:.4g}")  # noqa: E731
        ratio = f"{b / a:.2f}x" if a not in (None, 0) and b is not None else "-"
        lines.append(f"{k:14s}{fmt(a):>14s}{fmt(b):>14s}{ratio:>12s}")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "wan_chunk.json").write_text(json.dumps(result, indent=1))
        (out / "wan_chunk.txt").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
