"""How much of the last 8 frames of a return any memory of the first frame can give back.

    python benchmarks/return_bound.py --before benchmarks/results/exact-return/before.json \\
        --out benchmarks/results/return-bound/return_bound.json

On exact-return paths (held-out scenes, pan-return and loop, 65 frames, shipped weights, latent
mode, sampling seed 0) this measures the mean PSNR of the last 8 frames, the frames where the
camera comes home, and what it would be if the video were replaced by something better wherever
the given first frame saw the scene:

- ``before``: the same runs before the far field (from ``--before``, an exact_return.py output);
- ``latent``: the pipeline now;
- ``sky seen → VAE``: sky pixels that frame 0 saw replaced by decode(encode(ground truth)), the
  best a far field of latent tokens can give through this VAE;
- ``seen → VAE``: every pixel frame 0 saw replaced by decode(encode(ground truth)), the best any
  latent memory of the first frame can give through this VAE;
- ``sky → GT``: every sky pixel replaced by the ground truth itself, the best any memory of the
  sky can give, even with a perfect decoder.

A pixel of frame k was seen by frame 0 when its ground-truth 3D point projects inside frame 0 and
frame 0's depth there agrees within 5% (not occluded); a sky pixel when its ray, turned into
frame 0 (a direction: rotation only), lands inside frame 0 on a sky pixel. What frame 0 did not
see, no memory of it can give back: on a loop, the last frames look at ground the walk generated.
Per-frame PSNRs are capped at the 8-bit PSNR (``mirage.evaluation.metrics.PSNR_8BIT``), as the
evaluation caps a closed loop, so a frame replaced whole does not make the mean infinite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

LAST = 8
BOUNDS = ("latent", "sky seen → VAE", "seen → VAE", "sky → GT")


def seen_by_first(depth: torch.Tensor, K: torch.Tensor, cam2world: torch.Tensor, k: int) -> torch.Tensor:
    """(H, W) bool: which pixels of frame k frame 0 saw (module docstring); depth (F, H, W) with
    inf for sky, K (F, 3, 3) and cam2world (F, 4, 4) in pixels and world units."""
    from mirage.geometry import backproject_depth, project_points, rigid_inverse

    H, W = depth.shape[1:]
    sky = torch.isinf(depth[k])
    # sky pixels at depth 1, so their ray from frame k's centre is the point minus that centre
    points = backproject_depth(torch.where(sky, torch.ones_like(depth[k]), depth[k])[None],
                               K[k:k + 1], cam2world[k:k + 1])[0].reshape(-1, 3)
    world2cam0 = rigid_inverse(cam2world[:1])
    uv, z = project_points(points, K[:1], world2cam0)
    rays = (points - cam2world[k, :3, 3]) @ world2cam0[0, :3, :3].T  # directions in camera 0
    ray_uv, _ = project_points(rays, K[:1], torch.eye(4, dtype=K.dtype)[None])
    s = sky.reshape(-1)
    uv = torch.where(s[:, None], ray_uv[0], uv[0])
    z = torch.where(s, rays[:, 2], z[0])
    col, row = uv[:, 0].round().long(), uv[:, 1].round().long()
    inside = (z > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    d0 = depth[0][row.clamp(0, H - 1), col.clamp(0, W - 1)]
    agrees = torch.where(s, torch.isinf(d0), (z - d0).abs() < 0.05 * d0)
    return (inside & agrees).reshape(H, W)


def measure_path(backbone, case, frames: int) -> dict:
    """The last ``LAST`` frames' mean PSNR for each entry of ``BOUNDS``, and the sky's share."""
    from mirage.evaluation.metrics import PSNR_8BIT, psnr
    from mirage.evaluation.runs import prepare_ground_truth
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate

    gt = prepare_ground_truth(backbone, case, frames, proxies=False)
    first_depth = torch.where(gt.exclude[0], torch.full_like(gt.depth[0], float("inf")), gt.depth[0])
    config = PipelineConfig(memory_mode="latent", steps=backbone.config.steps, seed=0)
    out = generate(backbone, gt.rgb[0], gt.cameras, config, depth_estimator=TinyDepthEstimator(backbone),
                   masker=LatentDisagreementMasker(), first_depth=first_depth, first_exclude=gt.exclude[0])
    video = out.video.float().clamp(-1, 1)
    ceiling = backbone.decode(gt.latents[None].float())[0].permute(1, 0, 2, 3).clamp(-1, 1)
    K, cam2world = gt.cameras.K.double(), gt.cameras.cam2world.double()
    depth = gt.depth.double()
    values = {name: [] for name in BOUNDS}
    sky_share = []
    for k in range(frames - LAST, frames):
        seen, sky = seen_by_first(depth, K, cam2world, k), torch.isinf(gt.depth[k])
        truth, v = gt.rgb[k], video[k]
        for name, frame in (("latent", v), ("sky seen → VAE", torch.where(seen & sky, ceiling[k], v)),
                            ("seen → VAE", torch.where(seen, ceiling[k], v)),
                            ("sky → GT", torch.where(sky, truth, v))):
            values[name].append(min(PSNR_8BIT, psnr(frame, truth)))
        sky_share.append(float(sky.float().mean()))
    return {**{name: statistics.fmean(v) for name, v in values.items()}, "sky_share": statistics.fmean(sky_share)}


def main(argv=None) -> int:
    from mirage.backbones import load_backbone
    from mirage.evaluation.suite import Case

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default="courtyard,room")
    p.add_argument("--scenes", default="0,1,2,3")
    p.add_argument("--presets", default="pan-return,loop")
    p.add_argument("--frames", type=int, default=65)
    p.add_argument("--before", required=True, metavar="FILE.json",
                   help="an exact_return.py --out of the same paths, for the before column")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, metavar="FILE.json", help="write JSON here and the table to FILE.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    before = {r["id"]: r for r in json.loads(Path(args.before).read_text())["runs"]}
    backbone = load_backbone("tiny", None)
    started = time.perf_counter()
    rows = []
    for family in args.families.split(","):
        for scene in (int(s) for s in args.scenes.split(",")):
            for preset in args.presets.split(","):
                case = Case(family, scene, preset)
                old = before.get(f"{case.id}-latent-s0")
                if old is None or old["frames"] != args.frames:
                    p.error(f"{args.before} has no {args.frames}-frame latent run of {case.id}")
                with torch.no_grad():
                    row = measure_path(backbone, case, args.frames)
                rows.append({"family": family, "scene": scene, "preset": preset,
                             "before": statistics.fmean(old["psnr"][-LAST:]), **row})
                print(f"{case.id}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1].items()
                                                 if isinstance(v, float)), file=sys.stderr)
    columns = ("before",) + BOUNDS
    lines = [f"Last {LAST} frames, mean PSNR (dB), {len(rows)} held-out exact-return paths, {args.frames} frames, "
             f"shipped weights, sampling seed 0, {time.perf_counter() - started:.0f} s.", "",
             "| family | scene | path | sky share | " + " | ".join(columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for r in rows:
        lines.append(f"| {r['family']} | {r['scene']} | {r['preset']} | {r['sky_share']:.0%} | "
                     + " | ".join(f"{r[c]:.2f}" for c in columns) + " |")
    summary = {}
    lines += ["", "Mean gain over before:", "",
              "| family | " + " | ".join(BOUNDS) + " |", "|---|" + "---|" * len(BOUNDS)]
    for family in args.families.split(","):
        mine = [r for r in rows if r["family"] == family]
        summary[family] = {c: statistics.fmean(r[c] - r["before"] for r in mine) for c in BOUNDS}
        lines.append(f"| {family} | " + " | ".join(f"{summary[family][c]:+.2f}" for c in BOUNDS) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/return_bound.py " + " ".join(sys.argv[1:] if argv is None else argv)
        out.write_text(json.dumps({"format": "mirage.return-bound", "version": 1, "command": command,
                                   "last_frames": LAST, "rows": rows, "gain_over_before": summary}, indent=1) + "\n")
        out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
