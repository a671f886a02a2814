"""`mirage generate`: an image or a world scene + a camera path → a video, chunk by chunk.

With no arguments it runs the embedded default: the tiny backbone, built-in scene 0 (room) and
a pan-return path. Writes into ``--out``:

- ``video.mp4``: the generated frames;
- ``side_by_side.mp4``: generated | decoded memory read | ground truth (when the world knows it),
  each panel under its name; in the read, cells the memory did not cover are tinted magenta (as
  on the explorer's page). Panels narrower than 128 pixels are enlarged by whole pixels;
- ``memory.safetensors``: the final memory (not for ``--memory none``);
- ``run.json``: config (with the memory mode's defaults resolved: the fusion and far field the
  run used), timings, the chunk plan, the references chosen, memory stats and, with ground
  truth, PSNR. It is written last.

A mirage trajectory JSON that records ``chunks`` (a path exported from an interactive session)
is generated with those chunk boundaries and per-chunk seeds, so it replays the session's video
frame for frame; one that records its ``start`` is refused from any other start.

Paths longer than ``--max-frames`` (default :data:`MAX_FRAMES`) are refused before any work,
from the sizes and counts their files state (:func:`mirage.cli.starts.check_trajectory_file`).

``--jobs FILE.jsonl`` runs one generation per line (see :mod:`mirage.cli.ranks`), split over the
ranks of ``torchrun`` / ``accelerate launch``; a job whose ``out`` holds a complete ``run.json``
is skipped, so a killed batch resumes, and rank 0 writes ``FILE.summary.json``.

Every input is validated before anything is written. While a run is in progress the folder
holds an ``INCOMPLETE`` marker and no ``run.json``; a folder with the marker is unfinished.
"""

from __future__ import annotations

import argparse

import json
from pathlib import Path

from mirage.errors import ConfigError

_ABLATIONS = {"oracle": " (ABLATION: true geometry)",
              "oracle-relative": " (ABLATION: true geometry through a random affine map per chunk)"}
OUTPUTS = ("video.mp4", "side_by_side.mp4", "memory.safetensors", "run.json")
MARKER = "INCOMPLETE"
# The longest path `generate` takes unless told otherwise (--max-frames): it holds the video, the
# reads and the ground truth in memory, about 0.2 MB a frame at 64x64.
MAX_FRAMES = 4097


def add_parser(sub) -> None:
    from mirage.cli.depth import add_depth_arguments
    from mirage.cli.options import add_memory_input_options, add_wan22_options

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
    p.add_argument("--max-frames", type=int, default=MAX_FRAMES, metavar="N",
                   help=f"refuse longer paths before any work (default {MAX_FRAMES}; it bounds memory)")
    p.add_argument("--size", default=None, metavar="HxW", help="default: the backbone's (64x64 for tiny)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: backbone's)")
    p.add_argument("--memory", default="latent", help="latent | rgb | none (default latent)")
    p.add_argument("--fusion", default=None,
                   help="voxel | append: how the point memory fuses writes (default: latent voxel, "
                        "rgb append as the reference implementation)")
    p.add_argument("--far-field", default=None, action=argparse.BooleanOptionalAction,
                   help="keep content without depth (sky) by direction, behind the points "
                        "(default: on for latent, off for rgb as the reference drops the sky)")
    p.add_argument("--memory-dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="dtype of the latent memory's tokens (default: float16 for wan22, float32 for "
                        "tiny; float16 halves their bytes)")
    p.add_argument("--paste-reads", default=None, metavar="CELLS|off",
                   help="after denoising, covered cells whose memory read is aligned within CELLS "
                        "(0..0.5) take the read's token; `off` keeps the generated latents "
                        "(default 0.1)")
    add_memory_input_options(p)
    p.add_argument("--backbone", default="tiny", help="tiny (default) | wan22")
    p.add_argument("--weights", metavar="PATH",
                   help="tiny: weights file or folder (default: shipped); wan22: a diffusers-format "
                        "Wan2.2-TI2V-5B directory (transformer/, vae/, optional text_encoder/, tokenizer/, scheduler/)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available for wan22)")
    p.add_argument("--memory-device", default=None, metavar="DEVICE",
                   help="where the memory lives and computes (its reads, fusion, covisibility index): "
                        "cpu | cuda | cuda:N (default: the backbone's device)")
    add_wan22_options(p)
    add_depth_arguments(p)
    p.add_argument("--masker", default="builtin", help="dynamic masker: builtin (default) | oracle (--scene only)")
    p.add_argument("--preceding", type=int, default=1, help="preceding latent frames per chunk (default 1)")
    p.add_argument("--references", type=int, default=1, help="covisible references per chunk (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/generate", metavar="DIR")
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--jobs", metavar="FILE.jsonl",
                   help="one generation per line: a JSON object of these options without dashes, e.g. "
                        "{\"scene\": 7, \"memory\": \"rgb\", \"out\": \"runs/7-rgb\"} (paths relative to "
                        "the file; the command line's options are the defaults); split over torchrun / "
                        "accelerate ranks, complete jobs skipped")
    p.set_defaults(func=run)


def generate_parser() -> argparse.ArgumentParser:
    """A fresh ``mirage generate`` parser (the jobs file's keys are its options)."""
    sub = argparse.ArgumentParser(prog="mirage").add_subparsers()
    add_parser(sub)
    return sub.choices["generate"]


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
               "guidance": "--guidance", "sampler": "--sampler", "timesteps": "--timesteps", "shift": "--shift",
               "dtype": "--dtype",
               "offload": "--offload", "vae_tiling": "--vae-tiling"}


def backbone_options(args) -> dict:
    """The wan22-only options that were given, as ``load_backbone`` keywords."""
    given = {k: getattr(args, k) for k in WAN_OPTIONS if getattr(args, k, None) not in (None, False)}
    if args.backbone != "wan22":
        flags = [WAN_OPTIONS[k] for k in given] + (["--prompt"] if args.prompt is not None else [])
        if flags:
            raise ConfigError(f"{', '.join(flags)} need `--backbone wan22` but `--backbone` is {args.backbone!r}")
    return given


def check_args(args) -> None:
    """The checks of ``args`` that need no backbone (run for every job before any job runs); sets
    ``args.depth_name`` and ``args.depth_align_on`` (the update depth and whether it is aligned)."""
    from mirage.cli.depth import check_depth_arguments
    from mirage.cli.options import memory_input_options
    from mirage.pipeline import MASKERS, MEMORY_MODES
    from mirage.world import FAMILIES

    if args.memory not in MEMORY_MODES:
        raise ConfigError(f"`--memory` must be one of {MEMORY_MODES} but is {args.memory!r}")
    if args.masker not in MASKERS:
        raise ConfigError(f"`--masker` must be one of {MASKERS} but is {args.masker!r}")
    if args.image is not None and args.scene is not None:
        raise ConfigError("give either `--image` or `--scene`, not both")
    if args.image is None and (args.depth is not None or args.intrinsics is not None):
        raise ConfigError("`--depth` and `--intrinsics` describe `--image`, which is missing")
    if args.image is not None and args.masker == "oracle":
        raise ConfigError("the `oracle` masker needs `--scene` (the world's ground truth)")
    args.depth_name, args.depth_align_on = check_depth_arguments(args, scene=args.image is None)
    if args.family not in FAMILIES:
        raise ConfigError(f"`--family` must be one of {FAMILIES} but is {args.family!r}")
    if args.scene is not None and args.scene < 0:
        raise ConfigError(f"`--scene` must be a seed ≥ 0 but is {args.scene}")
    if not args.fps > 0:
        raise ConfigError(f"`--fps` must be > 0 but is {args.fps}")
    backbone_options(args)
    memory_input_options(args)


def load_for(args, cache: dict | None = None):
    """The backbone ``args`` name; with ``cache`` (a dict), one load per distinct backbone."""
    from mirage.backbones import load_backbone

    options = backbone_options(args)
    key = json.dumps([args.backbone, str(args.weights), args.device, sorted(options.items())], default=str)
    if cache is not None and key in cache:
        return cache[key]
    backbone = load_backbone(args.backbone, args.weights, device=args.device, **options)
    if cache is not None:
        cache[key] = backbone
    return backbone


def prepare(args, cache: dict | None = None):
    """Validate every input and build (backbone, start frame, pipeline config, labels)."""
    import torch

    from mirage.cli.options import memory_input_options, parse_paste_reads, parse_size
    from mirage.pipeline import PipelineConfig, check_frame_count
    from mirage.cli.starts import image_trajectory, scene_start
    from mirage.pipeline.inputs import StartFrame, image_camera, load_depth, load_image
    from mirage.cli.starts import check_max_frames, check_trajectory_file
    from mirage.pipeline.start_record import check_start, image_record, scene_record
    from mirage.world import PRESETS

    check_args(args)
    backbone = load_for(args, cache)
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
    if isinstance(args.max_frames, bool) or not isinstance(args.max_frames, int) or args.max_frames < tau + 1:
        raise ConfigError(f"`--max-frames` must be an int ≥ {tau + 1} but is {args.max_frames!r}")
    if frames is not None:
        check_frame_count(frames, tau, "--frames")
        check_max_frames(frames, args.max_frames, "`--frames`")
    if not is_preset:  # sizes and counts a file states are checked before it is parsed
        check_trajectory_file(args.trajectory, args.max_frames)
    recorded = path_start(args.trajectory)
    if args.image is not None:
        image, original = load_image(args.image, size)
        depth = load_depth(args.depth, size, shape=original) if args.depth else None
        check_start(recorded, image_record(args.image, args.depth), f"`--trajectory` {args.trajectory!r}")
        K = image_camera(original, size, args.fov, _parse_intrinsics(args.intrinsics))
        cams = image_trajectory(args.trajectory, frames or 0, size, K)
        if frames is not None and not is_preset and len(cams) != frames:
            raise ConfigError(f"`--frames` is {frames} but {args.trajectory!r} holds {len(cams)} frames")
        check_max_frames(len(cams), args.max_frames, f"`--trajectory` {args.trajectory!r}")
        start = StartFrame(image, depth, None, cams, fps=args.fps)
        source = {"image": str(args.image), "depth": str(args.depth) if args.depth else None}
    else:
        seed = 0 if args.scene is None else args.scene
        check_start(recorded, scene_record(seed, args.family), f"`--trajectory` {args.trajectory!r}")
        start = scene_start(args.family, seed, args.trajectory, frames if is_preset else None, size, args.fps,
                            max_frames=args.max_frames)
        source = {"scene": seed, "family": args.family}
    check_frame_count(len(start.cameras), tau, "--frames (the trajectory's frame count)")
    bb_config = getattr(backbone, "config", None)
    if getattr(bb_config, "sampler", None) == "few-step" and args.steps not in (None, bb_config.steps):
        raise ConfigError(f"`--steps` is {args.steps} but `--sampler few-step` takes one step per `--timesteps` "
                          f"entry ({bb_config.steps}): leave `--steps` out")
    steps = args.steps if args.steps is not None else getattr(bb_config, "steps", 6)
    paste = {} if args.paste_reads is None else {"paste_reads": parse_paste_reads(args.paste_reads)}
    config = PipelineConfig(memory_mode=args.memory, fusion=args.fusion, far_field=args.far_field,
                            memory_dtype=args.memory_dtype, steps=steps, preceding=args.preceding,
                            references=args.references, seed=args.seed, decode_reads=True,
                            progress=not args.no_progress, memory_device=args.memory_device,
                            depth_align=args.depth_align_on, **paste, **memory_input_options(args))
    torch.manual_seed(args.seed)
    return backbone, start, config, source


def _our_json(spec: str) -> dict | None:
    """The object of a mirage trajectory JSON (an exported walk); None for any other file (the
    trajectory loader says what is wrong with a broken one)."""
    path = Path(spec)
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("format") == "mirage-trajectory" else None


def path_start(spec: str) -> dict | None:
    """The start an exported walk records (:mod:`mirage.pipeline.start_record`), or None."""
    from mirage.pipeline.start_record import parse_record

    data = _our_json(spec)
    return None if data is None else parse_record(data.get("start"), f"`--trajectory` {spec!r}")


def replay_chunks(spec: str, frames: int, backbone) -> list[dict] | None:
    """The chunk boundaries and seeds a mirage trajectory JSON records (an exported session
    walk), checked against the backbone's chunk sizes; None for any other trajectory."""
    from mirage.pipeline.plan import check_chunks

    if _our_json(spec) is None:
        return None
    from mirage.cameras import load_trajectory_chunks

    chunks = load_trajectory_chunks(Path(spec))
    if chunks is None:
        return None
    try:
        return check_chunks(chunks, frames, backbone.temporal_stride, backbone.max_frames)
    except ConfigError as err:
        raise ConfigError(f"`--trajectory` {spec!r}: {err}") from None


def frame_coverage(read_mask, temporal_stride: int):
    """(T, h, w) coverage per latent frame → (F, h, w) per pixel frame, F = τ·(T − 1) + 1: pixel
    frame f shows the read of latent frame ⌈f/τ⌉ (a chunk decodes latent k into frames
    τ(k−1)+1 … τk); frame 0 is the input itself, shown whole."""
    import torch

    tau = temporal_stride
    frames = tau * (read_mask.shape[0] - 1) + 1
    coverage = read_mask[[-(-f // tau) for f in range(frames)]].clone()
    coverage[0] = True
    return coverage


def is_complete(out) -> bool:
    """A finished run: ``run.json`` is there and the INCOMPLETE marker is not."""
    out = Path(out)
    return (out / "run.json").is_file() and not (out / MARKER).exists()


def run(args) -> int:
    if args.jobs is not None:
        return run_jobs(args)
    return run_one(args)


def run_jobs(args) -> int:
    """``--jobs``: this rank's share of the file's jobs, then (rank 0) the merged summary."""
    import os
    import time

    from mirage.cli.ranks import gather, progress, rank_device, rank_state, read_jobs

    jobs = read_jobs(args.jobs, generate_parser(), args)
    for number, job in jobs:  # every line is checked before any job runs
        try:
            check_args(job)
        except ConfigError as err:
            raise ConfigError(f"{args.jobs}:{number}: {err}") from None
    state = rank_state()
    cache: dict = {}
    done = []
    with state.split_between_processes(jobs) as mine:
        for i, (number, job) in enumerate(mine, start=1):
            job.device = rank_device(state, job.device)
            if is_complete(job.out):
                done.append({"line": number, "status": "complete before", "rank": state.process_index})
                progress(state, f"job {i}/{len(mine)} (line {number}) {job.out}: complete, skipped")
                continue
            t = time.perf_counter()
            try:
                run_one(job, cache)
            except ConfigError as err:
                raise ConfigError(f"{args.jobs}:{number}: {err}") from None
            seconds = time.perf_counter() - t
            done.append({"line": number, "status": "generated", "rank": state.process_index,
                         "seconds": round(seconds, 3)})
            progress(state, f"job {i}/{len(mine)} (line {number}) {job.out}: generated in {seconds:.1f} s")
    records = gather(state, done)
    state.wait_for_everyone()
    if state.is_main_process:
        by_line = {r["line"]: r for r in records}
        summary = {"format": "mirage.generate-jobs", "version": 1, "jobs_file": str(args.jobs),
                   "processes": state.num_processes, "jobs": []}
        for number, job in jobs:
            run_json = json.loads((Path(job.out) / "run.json").read_text())
            timing = run_json["timings"]["summary"]
            metrics = run_json.get("metrics") or {}
            summary["jobs"].append({
                "line": number, "out": os.path.relpath(job.out, Path(args.jobs).resolve().parent),
                **by_line.get(number, {"status": "missing"}),
                "frames": run_json["config"]["frames"], "memory": run_json["config"]["memory_mode"],
                "s_per_frame": timing.get("s_per_frame"), "psnr_mean": metrics.get("psnr_mean"),
                "revisit_psnr": metrics.get("revisit_psnr")})
        path = Path(args.jobs).with_suffix(".summary.json")
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(summary, indent=1))
        tmp.replace(path)
        made = sum(r["status"] == "generated" for r in records)
        print(f"{len(jobs)} jobs over {state.num_processes} process(es): {made} generated, "
              f"{len(jobs) - made} complete before; summary in {path}")
    return 0


def run_one(args, cache: dict | None = None) -> int:
    import numpy as np

    from mirage.evaluation.metrics import frame_psnr, revisit_frames
    from mirage.cli.depth import make_depth_estimator
    from mirage.pipeline import LatentDisagreementMasker, generate
    from mirage.world.oracle import OracleMasker
    from mirage.video import labelled_panels, tint_uncovered, to_uint8, write_mp4

    backbone, start, config, source = prepare(args, cache)  # nothing is written before this succeeds
    chunks = replay_chunks(args.trajectory, len(start.cameras), backbone)
    depth_estimator = make_depth_estimator(args.depth_name, backbone, scene=start.scene, fps=start.fps,
                                           model_dir=args.depth_model, device=args.device,
                                           align=config.depth_align)
    masker = OracleMasker(start.scene, start.fps) if args.masker == "oracle" else LatentDisagreementMasker()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("mirage generate is running or was interrupted; outputs here are unfinished\n")
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)

    result = generate(backbone, start.image, start.cameras, config, depth_estimator=depth_estimator,
                      masker=masker, first_depth=start.depth, first_exclude=start.exclude, text=args.prompt,
                      chunks=chunks).to("cpu")  # on a GPU the frames and latents leave it here, to be written

    def hwc(video):  # (F, 3, H, W) in [-1, 1] → (F, H, W, 3) uint8
        return to_uint8(video).permute(0, 2, 3, 1).numpy()

    write_mp4(out / "video.mp4", hwc(result.video), fps=args.fps)
    panels = [result.video, tint_uncovered(result.memory_reads, frame_coverage(result.read_mask,
                                                                             backbone.temporal_stride))]
    labels = ["generated", "memory read"]
    if start.ground_truth is not None:
        panels.append(start.ground_truth)
        labels.append("ground truth")
    write_mp4(out / "side_by_side.mp4", labelled_panels([hwc(p) for p in panels], labels), fps=args.fps)
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
            "first_frame_depth": "given" if start.depth is not None else (
                f"{result.depth_source} estimator" + (", normalised to median depth 1 unit"
                                                      if getattr(depth_estimator, "kind", "") == "relative" else "")),
            "update_depth": result.depth_source + _ABLATIONS.get(result.depth_source, ""),
            "depth_kind": getattr(depth_estimator, "kind", "metric"),
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
        "depth_alignment": result.depth_alignment,
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
    frames = [f for r in result.depth_alignment or [] if r for f in r["frames"]]
    skipped = [f["frame"] for f in frames if f["status"] == "skipped"]
    if skipped:
        print(f"depth: {len(skipped)} of {len(frames)} frames could not be aligned to the memory and were not "
              f"written (frames {skipped}; see depth_alignment in run.json)")
    return 0
