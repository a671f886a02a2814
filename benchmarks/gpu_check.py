"""One prepared GPU check of the real backbone: speed per memory mode and sampler, the explorer's
step, the memory on the GPU against the CPU, peak VRAM, and a bf16 against an fp32 VAE decode.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu        # one H100/H200, ≤ 8 min
    python benchmarks/gpu_check.py --quick --out /tmp/gpu-check        # the same code, tiny, CPU

Builds Wan2.2-TI2V-5B at full size with random weights directly on the device (the
configuration of ``benchmarks/wan_chunk.py``: bf16 DiT, float32 VAE), or loads ``--weights DIR``
(a diffusers-format directory, e.g. real or distilled weights), and runs on room 3 of the
procedural world, a pan-return path of ``--frames`` frames at ``--size`` (default 704x1280, 65
frames = two 33-frame chunks):

1. ``arms``: seconds per frame of :func:`mirage.pipeline.generate` for ``none``, ``latent``
   (``branch``, and ``inject`` when this mirage has the ``memory_input`` option; otherwise the
   arm is skipped with the reason recorded) and ``rgb``, with the few-step sampler
   (``--timesteps``, default 1000,757,522) and with UniPC at ``--steps`` (default 50); the
   per-step split and the peak VRAM of each.
2. ``explorer``: the latency of ``Session.step`` with 4 new frames (what one explorer key press
   runs: latent memory, few-step, reads decoded as the explorer does).
   ``residency``: the devices of the session's latents, frames, reads and memory afterwards
   (all the GPU, when the session keeps its work there).
3. ``memory_device``: the memory's share of the run (read + update over the total) with the memory
   on the GPU against on the CPU (``PipelineConfig.memory_device``). The session synchronises
   the GPU at each timing stamp, so the memory's asynchronous work is not billed to the denoiser.
4. ``vram``: peak VRAM of a few-step latent run without and with ``offload="model"`` and VAE
   tiling.
5. ``vae_decode``: one chunk's latents decoded by the float32 VAE and by a bfloat16 copy: time
   each, and the PSNR of the bf16 frames against the fp32 ones (peak-to-peak 2, frames in
   [−1, 1]). With random weights this measures the arithmetic, not image quality.

Each arm runs once after one uncounted warm-up (the device is lent for minutes); arms past
``--budget-s`` are skipped with that reason, the 50-step arms last. Writes ``gpu_check.json``
and ``gpu_check.txt`` into ``--out``; no video (no ffmpeg needed). ``--quick`` runs every part
at a tiny size on the CPU (the tiny-random Wan2.2 layout, 64x64, 2 UniPC steps, 9-frame chunks);
its figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
import traceback
from dataclasses import fields, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for wan_chunk's full-size builder

MEMORY_INPUTS = ("branch", "inject")


def parse_args(argv=None):
    from mirage.cli.options import parse_size

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (the test suite runs this)")
    p.add_argument("--weights", metavar="DIR", help="a diffusers Wan2.2-TI2V-5B directory (default: random full size)")
    p.add_argument("--size", default=None, help="HxW (default 704x1280; --quick: 64x64)")
    p.add_argument("--frames", type=int, default=None, help="frames per run, 4k+1 (default 65; --quick: 17)")
    p.add_argument("--steps", type=int, default=None, help="UniPC steps of the scheduler arms (default 50; --quick: 2)")
    p.add_argument("--timesteps", default="1000,757,522", help="few-step timesteps or a schedule name")
    p.add_argument("--memory-inputs", default="branch,inject",
                   help="latent arms by memory input (branch | inject); inject needs the memory_input option")
    p.add_argument("--explorer-steps", type=int, default=None, help="explorer steps timed (default 8; --quick: 3)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip arms that would start after this (default 420)")
    p.add_argument("--device", default=None, help="cuda (default when available) | cpu")
    p.add_argument("--memory-device", default=None,
                   help="where the memory lives in every part but the memory-device comparison (default: the "
                        "backbone's device; if the warm-up fails with it there, the check falls back to cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="DIR")
    args = p.parse_args(argv)
    args.size = parse_size(args.size or ("64x64" if args.quick else "704x1280"))
    args.frames = args.frames or (17 if args.quick else 65)
    args.steps = args.steps or (2 if args.quick else 50)
    args.explorer_steps = args.explorer_steps or (3 if args.quick else 8)
    args.device = args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    args.memory_inputs = tuple(args.memory_inputs.split(","))
    from mirage.backbones.wan22.sampler import parse_timesteps
    from mirage.errors import ConfigError
    from mirage.pipeline import check_frame_count

    args.timesteps = parse_timesteps(args.timesteps)
    check_frame_count(args.frames, 4, "--frames")
    if bad := [m for m in args.memory_inputs if m not in MEMORY_INPUTS]:
        raise ConfigError(f"`--memory-inputs` must name {MEMORY_INPUTS} but has {bad}")
    return args


# -- the backbone ------------------------------------------------------------------------------
def build_backbone(args):
    """(Wan22Backbone with the few-step sampler, a description). The scheduler arms use copies
    of it with another config (same transformer and VAE)."""
    from mirage.backbones.wan22 import Wan22Backbone, Wan22Config, load_wan22
    from mirage.backbones.wan22.config import resolve_dtype

    device = torch.device(args.device)
    H, W = args.size
    options = dict(height=H, width=W, sampler="few-step", timesteps=args.timesteps,
                   max_frames=9 if args.quick else 33)
    if args.weights:
        return load_wan22(args.weights, device=str(device), **options), {"weights": args.weights}
    from diffusers import AutoencoderKLWan

    if args.quick:
        from mirage.backbones.wan22.testing import TINY_TRANSFORMER as dit, TINY_VAE as vae_cfg
    else:
        from wan_chunk import FULL_DIT as dit, FULL_VAE as vae_cfg
    from wan_chunk import build_transformer

    dtype = resolve_dtype(None, device)
    torch.manual_seed(args.seed)
    transformer = build_transformer(dit, device, dtype, args.seed)
    vae = AutoencoderKLWan(**vae_cfg, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    config = Wan22Config(device=str(device), dtype=str(dtype).removeprefix("torch."), **options)
    return Wan22Backbone(transformer, vae, config=config), {
        "weights": "random full-size Wan2.2-TI2V-5B" if not args.quick else "random tiny-random layout",
        "dit": {**dit, "patch_size": list(dit["patch_size"])}, "vae": vae_cfg}


def with_config(backbone, **changes):
    """A Wan22Backbone sharing ``backbone``'s modules with a changed config."""
    from mirage.backbones.wan22 import Wan22Backbone

    return Wan22Backbone(backbone.transformer, backbone.vae, config=replace(backbone.config, **changes),
                         scheduler_config=backbone.scheduler_config, info=backbone.info)


# -- timing helpers ----------------------------------------------------------------------------
def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device) -> None:
    if torch.device(device).type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def memory_input_option(memory_input: str) -> tuple[dict | None, str | None]:
    """PipelineConfig keywords for a memory input, or (None, why it is skipped)."""
    from mirage.pipeline import PipelineConfig

    if "memory_input" not in {f.name for f in fields(PipelineConfig)}:
        if memory_input == "branch":
            return {}, None  # the branch is what runs without the option
        return None, "this mirage has no `memory_input` option (PipelineConfig.memory_input): inject not merged"
    return {"memory_input": memory_input}, None


def guarded(fn, *args, **kwargs):
    """``fn(...)``, or the error it raised as a record: a check run once on a lent device writes
    down what failed and goes on with the next part."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001
        print(f"gpu_check: {getattr(fn, '__name__', fn)} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}


def run_generate(backbone, start, mode: str, extra: dict, args) -> dict:
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate

    device = backbone.device
    extra = {"memory_device": args.memory_device, **extra}
    config = PipelineConfig(memory_mode=mode, steps=backbone.config.steps, seed=args.seed, **extra)
    peak_reset(device)
    t = time.perf_counter()
    out = generate(backbone, start.image, start.cameras, config, depth_estimator=TinyDepthEstimator(backbone),
                   masker=LatentDisagreementMasker(), first_depth=start.depth, first_exclude=start.exclude)
    sync(device)
    wall = time.perf_counter() - t
    return {**out.timing_summary(), "wall_s": wall, "peak_vram_gib": peak_gib(device),
            "cache_bytes": out.memory_stats[-1]["bytes"], "memory_device": str(config.memory_device or device),
            "_latents": out.latents}


# -- the parts ---------------------------------------------------------------------------------
def part_arms(backbone, start, args, clock, skip, scheduler: bool):
    """The arms of the few-step sampler (``scheduler`` False) or of UniPC at ``args.steps``."""
    if scheduler:
        bb = with_config(backbone, sampler="unipc", timesteps=None, steps=args.steps, shift=None)
        sampler = f"unipc-{args.steps}"
    else:
        bb, sampler = backbone, "few-step"
    arms, latents = [], None
    for mode, memory_input in [("none", None)] + [("latent", m) for m in args.memory_inputs] + [("rgb", None)]:
        label = f"{mode}{'-' + memory_input if memory_input else ''} / {sampler}"
        extra, why = memory_input_option(memory_input) if memory_input else ({}, None)
        why = why or skip(clock)
        if why:
            arms.append({"arm": label, "skipped": why})
            continue
        result = guarded(run_generate, bb, start, mode, extra, args)
        if "error" in result:
            arms.append({"arm": label, **result})
            continue
        if mode == "latent" and sampler == "few-step" and latents is None:
            latents = result["_latents"]
        arms.append({"arm": label, "mode": mode, "memory_input": memory_input, "sampler": sampler,
                     "steps": bb.config.steps, **{k: v for k, v in result.items() if not k.startswith("_")}})
        print(f"  {label}: {result['s_per_frame']:.4f} s/frame", file=sys.stderr, flush=True)
    return arms, latents


def part_explorer(backbone, start, args):
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session, TinyDepthEstimator

    config = PipelineConfig(memory_mode="latent", steps=backbone.config.steps, seed=args.seed, decode_reads=True,
                            memory_device=args.memory_device)
    session = Session(backbone, start.image, start.cameras[[0]], config,
                      depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                      first_depth=start.depth, first_exclude=start.exclude, history=1)
    times = []
    n = min(args.explorer_steps, (len(start.cameras) - 1) // 4)
    for i in range(n):
        sync(backbone.device)
        t = time.perf_counter()
        session.step(start.cameras[list(range(1 + 4 * i, 5 + 4 * i))])
        sync(backbone.device)
        times.append(time.perf_counter() - t)
    later = times[1:] or times
    residency = {"latents": devices(session._latents), "frames": devices(session._video),
                 "reads": devices(session._read_latents + session._read_masks), "memory": devices(session.mode)}
    return {"steps_timed": n, "new_frames_per_step": 4, "step_s": times, "median_step_s": statistics.median(later),
            "residency": residency,
            "note": "Session.step with 4 new frames, latent memory, few-step, reads decoded (the explorer's "
                    "config); the median leaves out the first step; residency: the devices of what the "
                    "session holds after the steps"}


def devices(obj, seen=None) -> list[str]:
    """The devices of every tensor in ``obj`` (through lists, dicts and mirage objects), sorted."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [str(obj.device)]
    if isinstance(obj, (list, tuple)):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("mirage"):
        items = vars(obj).values()
    else:
        return []
    return sorted({d for item in items for d in devices(item, seen)})


def part_memory_device(backbone, start, args):
    rows = {}
    for where in (None, "cpu"):  # None: the backbone's device
        label = "the backbone's device" if where is None else "cpu"
        result = guarded(run_generate, backbone, start, "latent", {"memory_device": where}, args)
        rows[label] = result if "error" in result else {
            k: result[k] for k in ("memory_device", "memory_share", "read_s", "update_s", "total_s", "s_per_frame")}
    return rows


def part_vram(backbone, start, args):
    rows = {"default": run_generate(backbone, start, "latent", {}, args)}
    offloaded = with_config(backbone, offload="model", vae_tiling=True)  # moves the shared VAE to the CPU
    try:
        rows["offload model + vae tiling"] = run_generate(offloaded, start, "latent", {}, args)
    finally:
        backbone.vae.disable_tiling()
        backbone.vae.to(backbone.device)
    return {k: {"peak_vram_gib": v["peak_vram_gib"], "s_per_frame": v["s_per_frame"]} for k, v in rows.items()}


def part_vae(backbone, latents):
    """fp32 vs bf16 decode of the first chunk's latent frames (C, T, h, w)."""
    device = backbone.device
    chunk = latents[:, : (backbone.config.max_frames - 1) // 4 + 1][None]
    sync(device)
    t = time.perf_counter()
    ref = backbone.decode(chunk)
    sync(device)
    fp32_s = time.perf_counter() - t
    vae16 = copy.deepcopy(backbone.vae).to(torch.bfloat16)
    z = (chunk.float() * backbone._std + backbone._mean).to(device, torch.bfloat16)
    with torch.no_grad():
        vae16.decode(z)  # warm-up of the bf16 kernels
        sync(device)
        t = time.perf_counter()
        low = vae16.decode(z).sample.float().clamp(-1, 1)
        sync(device)
    bf16_s = time.perf_counter() - t
    del vae16
    mse = float((low - ref).pow(2).mean())
    frames = ref.shape[2]
    return {"frames": frames, "fp32_s": fp32_s, "bf16_s": bf16_s, "fp32_s_per_frame": fp32_s / frames,
            "bf16_s_per_frame": bf16_s / frames, "bf16_over_fp32": bf16_s / fp32_s,
            "psnr_bf16_vs_fp32_db": math.inf if mse == 0 else 10 * math.log10(4.0 / mse),
            "note": "frames in [-1, 1], PSNR with peak-to-peak 2; the fp32 time includes the decoder's first "
                    "call after the arms (no separate warm-up)"}


def main(argv=None) -> int:
    from mirage.errors import MirageError

    try:
        args = parse_args(argv)
    except MirageError as err:
        print(f"gpu_check: error: {err}", file=sys.stderr)
        return 2
    if torch.device(args.device).type == "cpu":
        torch.set_num_threads(1)
    started = time.perf_counter()
    from mirage.cli.starts import scene_start

    backbone, built = build_backbone(args)
    H, W = args.size
    start = scene_start("room", 3, "pan-return", args.frames, (H, W), 16.0)
    setup_s = time.perf_counter() - started

    def skip(clock) -> str | None:
        spent = time.perf_counter() - clock
        return f"time budget: {spent:.0f} s spent of --budget-s {args.budget_s:.0f}" if spent > args.budget_s else None

    print("gpu_check: warm-up", file=sys.stderr, flush=True)
    fallback = None
    try:  # uncounted: kernels, allocator, depth net
        run_generate(backbone, start, "latent", {}, args)
    except Exception as err:  # noqa: BLE001
        if args.memory_device is not None or backbone.device.type == "cpu":
            raise
        # The memory on the backbone's device failed: measure the rest with it on the CPU.
        fallback = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:],
                    "then": "every part but memory_device ran with memory_device='cpu'"}
        print(f"gpu_check: warm-up with the memory on {backbone.device} failed ({err}); memory on cpu",
              file=sys.stderr, flush=True)
        args.memory_device = "cpu"
        run_generate(backbone, start, "latent", {}, args)
    result = {"format": "mirage.bench.gpu-check", "version": 1,
              "config": {"quick": args.quick, "size": [H, W], "frames": args.frames,
                         "chunk_frames": backbone.max_frames,
                         "scheduler_steps": args.steps, "few_step_timesteps": list(args.timesteps),
                         "device": str(backbone.device), "dtype": str(backbone.dtype).removeprefix("torch."),
                         "gpu": torch.cuda.get_device_name(backbone.device) if backbone.device.type == "cuda" else None,
                         "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                         "torch": torch.__version__, **built},
              "setup_s": setup_s, "memory_device_fallback": fallback}
    parts = {}
    clock = started
    print("gpu_check: explorer", file=sys.stderr, flush=True)
    parts["explorer"] = skip(clock) or guarded(part_explorer, backbone, start, args)
    print("gpu_check: memory device", file=sys.stderr, flush=True)
    parts["memory_device"] = skip(clock) or guarded(part_memory_device, backbone, start, args)
    print("gpu_check: few-step arms", file=sys.stderr, flush=True)
    arms, latents = part_arms(backbone, start, args, clock, skip, scheduler=False)
    print("gpu_check: vae", file=sys.stderr, flush=True)
    parts["vae_decode"] = ("no few-step latent arm ran" if latents is None
                           else skip(clock) or guarded(part_vae, backbone, latents))
    print("gpu_check: vram", file=sys.stderr, flush=True)
    parts["vram"] = skip(clock) or guarded(part_vram, backbone, start, args)
    print(f"gpu_check: {args.steps}-step arms", file=sys.stderr, flush=True)  # the longest, last
    parts["arms"] = arms + part_arms(backbone, start, args, clock, skip, scheduler=True)[0]
    result.update(parts)
    result["wall_s"] = time.perf_counter() - started
    table = format_table(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(result, indent=1))
        (out / "gpu_check.txt").write_text(table + "\n")
    return 0


def format_table(result: dict) -> str:
    c = result["config"]
    fmt = (lambda v, d=4: "-" if v is None else f"{v:.{d}g}")  # noqa: E731
    lines = [f"gpu_check: {c['size'][0]}x{c['size'][1]}, {c['frames']} frames ({c['chunk_frames']}-frame chunks), "
             f"{c['device']} {c['gpu'] or ''} {c['dtype']}, {c['weights']}; wall {result['wall_s']:.0f} s",
             "", f"{'arm':32s}{'s/frame':>10s}{'denoise s':>11s}{'decode s':>10s}{'memory':>8s}{'peak GiB':>10s}"]
    for arm in result["arms"]:
        if "skipped" in arm or "error" in arm:
            lines.append(f"{arm['arm']:32s}  {'skipped: ' + arm['skipped'] if 'skipped' in arm else 'ERROR: ' + arm['error']}")
        else:
            lines.append(f"{arm['arm']:32s}{fmt(arm['s_per_frame']):>10s}{fmt(arm['denoise_s']):>11s}"
                         f"{fmt(arm['decode_s']):>10s}{arm['memory_share']:>8.2%}{fmt(arm['peak_vram_gib']):>10s}")
    ex = result["explorer"]
    if isinstance(ex, dict) and "error" not in ex:
        lines += ["", f"explorer step (4 frames, few-step): median {ex['median_step_s']:.3f} s over "
                      f"{ex['steps_timed']} steps",
                  "session holds: " + ", ".join(f"{k} on {'+'.join(v)}" for k, v in ex["residency"].items())]
    md = result["memory_device"]
    if isinstance(md, dict) and "error" not in md:
        lines += [""] + [f"memory on {k}: ERROR {v['error']}" if "error" in v else
                         f"memory on {k} ({v['memory_device']}): {v['memory_share']:.2%} of the run "
                         f"(read {v['read_s']:.3f} s, update {v['update_s']:.3f} s of {v['total_s']:.2f} s)"
                         for k, v in md.items()]
    vd = result["vae_decode"]
    if isinstance(vd, dict) and "error" not in vd:
        lines += ["", f"VAE decode of {vd['frames']} frames: fp32 {vd['fp32_s_per_frame']:.4f} s/frame, bf16 "
                      f"{vd['bf16_s_per_frame']:.4f} s/frame ({vd['bf16_over_fp32']:.2f}x), "
                      f"PSNR bf16 vs fp32 {vd['psnr_bf16_vs_fp32_db']:.2f} dB"]
    vr = result["vram"]
    if isinstance(vr, dict) and "error" not in vr:
        lines += [""] + [f"peak VRAM, {k}: {fmt(v['peak_vram_gib'])} GiB ({v['s_per_frame']:.4f} s/frame)"
                         for k, v in vr.items()]
    for name in ("explorer", "memory_device", "vae_decode", "vram"):
        if isinstance(result[name], str):
            lines.append(f"{name}: skipped: {result[name]}")
        elif "error" in result[name]:
            lines.append(f"{name}: ERROR: {result[name]['error']}")
    if result.get("memory_device_fallback"):
        lines.append(f"memory on the backbone's device FAILED ({result['memory_device_fallback']['error']}); "
                     f"the parts ran with the memory on the CPU")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
