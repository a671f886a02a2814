"""`mirage generate`: an image or a world scene + a camera path → a video, chunk by chunk.

With no arguments it runs the embedded default: the tiny backbone, built-in scene 0 (room) and
a pan-return path. Writes into ``--out``:

- ``video.mp4``: the generated frames;
- ``side_by_side.mp4``: generated | decoded memory read | ground truth (when the world knows it);
- ``memory.safetensors``: the final memory (not for ``--memory none``);
- ``run.json``: config, timings, the chunk plan, the references chosen, memory stats and, with
  ground truth, PSNR. It is written last.

A mirage trajectory JSON that records ``chunks`` (a path exported from an interactive session)
is generated with those chunk boundaries and per-chunk seeds, so it replays the session's video
frame for frame.

Every input is validated before anything is written. While a run is in progress the folder
holds an ``INCOMPLETE`` marker and no ``run.json``; a folder with the marker is unfinished.
"""

from __future__ import annotations

import argparse

import json
from pathlib import Path

from mirage.errors import ConfigError

OUTPUTS = ("video.mp4", "side_by_side.mp4", "memory.safetensors", "run.json")
MARKER = "INCOMPLETE"


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate a video that follows a camera path, with memory")
    src = p.add_argument_group("start (default: --scene 0 --family room)")
    src.add_argument("--image", metavar="PATH", help="first frame (any image Pillow reads)")
    src.add_argument("--depth", metavar="PATH",
                     help="depth of --image (.npy/.npz metres, 16-bit .png mm, .tif metres); "
                          "default: the tiny depth estimator")
    src.add_argument("--fov", type=float, default=60.0, help="horizontal FOV of --image in degrees (default 60)")
    src.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                     help="pixel intrinsics of --image at its file size (overrides --fov)")
    src.add_argument("--scene", type=int, default=None, metavar="SEED", help="procedural world scene seed")
    src.add_argument("--family", default="room", help="room | courtyard (with --scene)")
    p.add_argument("--trajectory", default="pan-return", metavar="PRESET|FILE|PATH",
                   help="a world preset (pan-return, orbit, forward-back, loop, random-walk), a "
                        "trajectory .json / transforms.json / geometry.npz / RealEstate10K .txt / COLMAP "
                        "model folder, or a written path such as \"forward 2, turn-left 30, up 0.5\"")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames, of the form τ·k+1 (presets: default 33; files: the file's count)")
    p.add_argument("--size", default=None, metavar="HxW", help="default: the backbone's (64x64 for tiny)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: backbone's)")
    p.add_argument("--memory", default="latent", help="latent | rgb | none (default latent)")
    p.add_argument("--fusion", default=None,
                   help="voxel | append: how the point memory fuses writes (default: latent voxel, "
                        "rgb append as the reference implementation)")
    p.add_argument("--far-field", default=None, action=argparse.BooleanOptionalAction,
                   help="keep content without depth (sky) by direction, behind the points "
                        "(default: on for latent, off for rgb as the reference drops the sky)")
    p.add_argument("--memory-dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="dtype of the latent memory's tokens (default float32; float16 halves their bytes)")
    p.add_argument("--paste-reads", default=None, metavar="CELLS|off",
                   help="after denoising, covered cells whose memory read is aligned within CELLS "
                        "(0..0.5) take the read's token; `off` keeps the generated latents "
                        "(default 0.1)")
    p.add_argument("--backbone", default="tiny", help="tiny (default) | wan22")
    p.add_argument("--weights", metavar="PATH",
                   help="tiny: weights file or folder (default: shipped); wan22: a diffusers-format "
                        "Wan2.2-TI2V-5B directory (transformer/, vae/, optional text_encoder/, tokenizer/, scheduler/)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available for wan22)")
    wan = p.add_argument_group("wan22 backbone")
    wan.add_argument("--memory-branch", metavar="FILE", help="memory-branch .safetensors (default: zero-init branch)")
    wan.add_argument("--lora", metavar="FILE", help="LoRA .safetensors")
    wan.add_argument("--prompt", metavar="TEXT", help="text prompt (needs text_encoder/ and tokenizer/)")
    wan.add_argument("--negative-prompt", metavar="TEXT", help="unconditional prompt for CFG (default empty)")
    wan.add_argument("--guidance", type=float, help="CFG scale, 1 = off (default 5; needs a text encoder)")
    wan.add_argument("--sampler", help="auto (the weights' scheduler/, else unipc) | unipc | euler")
    wan.add_argument("--shift", type=float, help="timestep shift of the sampler (default: scheduler's, else 5)")
    wan.add_argument("--dtype", help="float32 | bfloat16 | float16 (default: bfloat16 on GPU, float32 on CPU)")
    wan.add_argument("--offload", help="none | model (text encoder and VAE on the CPU between uses)")
    wan.add_argument("--vae-tiling", action="store_true", help="tiled VAE encode/decode (less GPU memory)")
    p.add_argument("--depth-estimator", default="tiny",
                   help="update depth: tiny (default) | oracle (ablation, --scene only)")
    p.add_argument("--masker", default="builtin", help="dynamic masker: builtin (default) | oracle (--scene only)")
    p.add_argument("--preceding", type=int, default=1, help="preceding latent frames per chunk (default 1)")
    p.add_argument("--references", type=int, default=1, help="covisible references per chunk (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/generate", metavar="DIR")
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _parse_intrinsics(text):
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(f"`--intrinsics` must be four numbers FX,FY,CX,CY but is {text!r}")
    return values


WAN_OPTIONS = {"memory_branch": "--memory-branch", "lora": "--lora", "negative_prompt": "--negative-prompt",
               "guidance": "--guidance", "sampler": "--sampler", "shift": "--shift", "dtype": "--dtype",
               "offload": "--offload", "vae_tiling": "--vae-tiling"}


def backbone_options(args) -> dict:
    """The wan22-only options that were given, as ``load_backbone`` keywords."""
    given = {k: getattr(args, k) for k in WAN_OPTIONS if getattr(args, k, None) not in (None, False)}
    if args.backbone != "wan22":
        flags = [WAN_OPTIONS[k] for k in given] + (["--prompt"] if args.prompt is not None else [])
        if flags:
            raise ConfigError(f"{', '.join(flags)} need `--backbone wan22` but `--backbone` is {args.backbone!r}")
    return given


def prepare(args):
    """Validate every input and build (backbone, start frame, pipeline config, labels)."""
    import torch

    from mirage.backbones import load_backbone
    from mirage.cli.options import parse_paste_reads, parse_size
    from mirage.pipeline import DEPTH_ESTIMATORS, MASKERS, MEMORY_MODES, PipelineConfig, check_frame_count
    from mirage.cli.starts import image_trajectory, scene_start
    from mirage.pipeline.inputs import StartFrame, image_camera, load_depth, load_image
    from mirage.world import FAMILIES, PRESETS

    if args.memory not in MEMORY_MODES:
        raise ConfigError(f"`--memory` must be one of {MEMORY_MODES} but is {args.memory!r}")
    if args.depth_estimator not in DEPTH_ESTIMATORS:
        raise ConfigError(f"`--depth-estimator` must be one of {DEPTH_ESTIMATORS} but is {args.depth_estimator!r}")
    if args.masker not in MASKERS:
        raise ConfigError(f"`--masker` must be one of {MASKERS} but is {args.masker!r}")
    if args.image is not None and args.scene is not None:
        raise ConfigError("give either `--image` or `--scene`, not both")
    if args.image is None and (args.depth is not None or args.intrinsics is not None):
        raise ConfigError("`--depth` and `--intrinsics` describe `--image`, which is missing")
    if args.image is not None and "oracle" in (args.depth_estimator, args.masker):
        raise ConfigError("the `oracle` depth estimator and masker need `--scene` (the world's ground truth)")
    if args.family not in FAMILIES:
        raise ConfigError(f"`--family` must be one of {FAMILIES} but is {args.family!r}")
    if args.scene is not None and args.scene < 0:
        raise ConfigError(f"`--scene` must be a seed ≥ 0 but is {args.scene}")
    if not args.fps > 0:
        raise ConfigError(f"`--fps` must be > 0 but is {args.fps}")
    backbone = load_backbone(args.backbone, args.weights, device=args.device, **backbone_options(args))
    tau = backbone.temporal_stride
    size = parse_size(args.size) if args.size else (backbone.config.height, backbone.config.width)
    stride = getattr(backbone, "size_multiple", backbone.spatial_stride)
    if size[0] % stride or size[1] % stride:
        raise ConfigError(f"`--size` must be divisible by {stride} but is {size[0]}x{size[1]}")
    from mirage.world.path_grammar import GRAMMAR, is_written_path, parse_path

    is_preset = args.trajectory in PRESETS or is_written_path(args.trajectory)  # frames come from --frames
    if is_written_path(args.trajectory):
        parse_path(args.trajectory)  # a malformed path fails here, showing the grammar
    elif not is_preset and not Path(args.trajectory).exists():
        raise ConfigError(f"`--trajectory` must be a preset {sorted(PRESETS)}, an existing file or COLMAP "
                          f"folder, or a written path ({GRAMMAR}) but is {args.trajectory!r}")
    frames = args.frames if args.frames is not None else (33 if is_preset else None)
    if frames is not None:
        check_frame_count(frames, tau, "--frames")
    if args.image is not None:
        image, original = load_image(args.image, size)
        depth = load_depth(args.depth, size) if args.depth else None
        K = image_camera(original, size, args.fov, _parse_intrinsics(args.intrinsics))
        cams = image_trajectory(args.trajectory, frames or 0, size, K)
        if frames is not None and not is_preset and len(cams) != frames:
            raise ConfigError(f"`--frames` is {frames} but {args.trajectory!r} holds {len(cams)} frames")
        start = StartFrame(image, depth, None, cams, fps=args.fps)
        source = {"image": str(args.image), "depth": str(args.depth) if args.depth else None}
    else:
        seed = 0 if args.scene is None else args.scene
        start = scene_start(args.family, seed, args.trajectory, frames if is_preset else None, size, args.fps)
        source = {"scene": seed, "family": args.family}
    check_frame_count(len(start.cameras), tau, "--frames (the trajectory's frame count)")
    steps = args.steps if args.steps is not None else getattr(getattr(backbone, "config", None), "steps", 6)
    paste = {} if args.paste_reads is None else {"paste_reads": parse_paste_reads(args.paste_reads)}
    config = PipelineConfig(memory_mode=args.memory, fusion=args.fusion, far_field=args.far_field,
                            memory_dtype=args.memory_dtype, steps=steps, preceding=args.preceding,
                            references=args.references, seed=args.seed, decode_reads=True,
                            progress=not args.no_progress, **paste)
    torch.manual_seed(args.seed)
    return backbone, start, config, source


def replay_chunks(spec: str, frames: int, backbone) -> list[dict] | None:
    """The chunk boundaries and seeds a mirage trajectory JSON records (an exported session
    walk), checked against the backbone's chunk sizes; None for any other trajectory."""
    from mirage.pipeline.plan import check_chunks

    path = Path(spec)
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not ours: the trajectory loader has already said what is wrong with it
    if not (isinstance(data, dict) and data.get("format") == "mirage-trajectory"):
        return None
    from mirage.world.io import load_trajectory_chunks

    chunks = load_trajectory_chunks(path)
    if chunks is None:
        return None
    try:
        return check_chunks(chunks, frames, backbone.temporal_stride, backbone.max_frames)
    except ConfigError as err:
        raise ConfigError(f"`--trajectory` {spec!r}: {err}") from None


def run(args) -> int:
    import numpy as np

    from mirage.evaluation.metrics import frame_psnr, revisit_frames
    from mirage.pipeline import LatentDisagreementMasker, TinyDepthEstimator, generate
    from mirage.world.oracle import OracleDepthEstimator, OracleMasker
    from mirage.video import to_uint8, write_mp4

    backbone, start, config, source = prepare(args)  # nothing is written before this succeeds
    chunks = replay_chunks(args.trajectory, len(start.cameras), backbone)
    depth_estimator = (OracleDepthEstimator(start.scene, start.fps) if args.depth_estimator == "oracle"
                       else TinyDepthEstimator(backbone))
    masker = OracleMasker(start.scene, start.fps) if args.masker == "oracle" else LatentDisagreementMasker()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("mirage generate is running or was interrupted; outputs here are unfinished\n")
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)

    result = generate(backbone, start.image, start.cameras, config, depth_estimator=depth_estimator,
                      masker=masker, first_depth=start.depth, first_exclude=start.exclude, text=args.prompt,
                      chunks=chunks)

    def hwc(video):  # (F, 3, H, W) in [-1, 1] → (F, H, W, 3) uint8
        return to_uint8(video).permute(0, 2, 3, 1).numpy()

    write_mp4(out / "video.mp4", hwc(result.video), fps=args.fps)
    panels = [result.video, result.memory_reads]
    if start.ground_truth is not None:
        panels.append(start.ground_truth)
    write_mp4(out / "side_by_side.mp4", np.concatenate([hwc(p) for p in panels], axis=2), fps=args.fps)
    if result.memory is not None:
        result.memory.save(out / "memory.safetensors")

    metrics = None
    if start.ground_truth is not None:
        per_frame = frame_psnr(result.video, start.ground_truth)
        revisits = revisit_frames(start.cameras, result.plan[0].end_frame)
        metrics = {
            "psnr_per_frame": [round(v, 3) for v in per_frame],
            "psnr_mean": float(np.mean(per_frame)),
            "revisit_frames": revisits,
            "revisit_psnr": float(np.mean([per_frame[k] for k in revisits])) if revisits else None,
        }
    run_info = {
        "format": "mirage.generate-run", "version": 1,
        "config": {
            **source, "trajectory": args.trajectory, "frames": len(start.cameras),
            "size": list(start.cameras.hw), "backbone": args.backbone,
            "weights": str(args.weights) if args.weights else "shipped",
            "first_frame_depth": "given" if start.depth is not None else "tiny estimator",
            "update_depth": result.depth_source + (" (ABLATION: true geometry)" if result.depth_source == "oracle" else ""),
            "masker": result.masker, "fps": args.fps, **result.config, "chunks": chunks,
            "prompt": args.prompt,
            **({"backbone_info": backbone.run_info()} if hasattr(backbone, "run_info") else {}),
        },
        "plan": [c.to_dict() for c in result.plan],
        "timings": {"init_s": result.init_seconds,
                    "chunks": [vars(t) for t in result.timings],
                    "summary": result.timing_summary()},
        "references": result.references,
        "memory": result.memory_stats,
        "metrics": metrics,
        "files": [n for n in OUTPUTS if n != "memory.safetensors" or result.memory is not None],
    }
    tmp = out / "run.json.partial"
    tmp.write_text(json.dumps(run_info, indent=1))
    tmp.replace(out / "run.json")
    (out / MARKER).unlink(missing_ok=True)
    summary = result.timing_summary()
    line = f"wrote {len(result.video)} frames to {out} ({summary['s_per_frame']:.3f} s/frame"
    if metrics and metrics["revisit_psnr"] is not None:
        line += f", revisit PSNR {metrics['revisit_psnr']:.2f} dB"
    print(line + ")")
    return 0
