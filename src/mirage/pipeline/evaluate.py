"""Revisit-fidelity and speed evaluation of the memory modes, side by side in one run.

    python -m mirage.pipeline.evaluate --scenes 4 --out runs/eval

For every held-out scene (seeds < 100; training uses seeds ≥ 1000) and path, the ground truth is
rendered once and ``latent``, ``rgb`` and ``none`` generate from the same first frame, path and
seed. Reported per mode: revisit PSNR (frames where the camera is back at the start view, see
:func:`mirage.pipeline.metrics.revisit_frames`), seconds per frame, and the read / denoise /
decode / depth / update split. The ceiling is the VAE's own reconstruction PSNR on the same
frames (encode → decode of the ground truth). The same PSNRs restricted to the latent-aligned
frames τk ("keyframes") are reported beside them, because the tiny VAE's in-between frames are
interpolated and cap every mode alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from mirage.pipeline import (LatentDisagreementMasker, OracleDepthEstimator, PipelineConfig,
                             TinyDepthEstimator, frame_psnr, generate, revisit_frames)

__all__ = ["evaluate", "format_table"]

MODES = ("latent", "rgb", "none")


def evaluate(backbone, *, scenes=4, paths=(("pan-return", 33), ("loop", 33)), families=("room", "courtyard"),
             steps=None, seed=0, first_seed=0, oracle_ablation=False, progress=True) -> dict:
    """Run every (scene, path) × mode; returns per-run rows and per-mode means."""
    from tqdm.auto import tqdm

    from mirage.world import generate_scene, load_trajectory, render

    H, W = backbone.config.height, backbone.config.width
    steps = steps or backbone.config.steps
    rows = []
    jobs = [(families[i % len(families)], first_seed + i, p, f) for i in range(scenes) for p, f in paths]
    for family, scene_seed, path, frames in tqdm(jobs, desc="eval", disable=not progress):
        scene = generate_scene(family, scene_seed)
        cams = load_trajectory(path, scene=scene, frames=frames, height=H, width=W)
        gt = render(scene, cams, torch.arange(frames, dtype=torch.float64) / 16)
        depth0 = torch.where(gt.sky[0], torch.full_like(gt.depth[0], float("inf")), gt.depth[0])
        recon = backbone.decode(backbone.encode(gt.rgb.permute(1, 0, 2, 3)[None]))[0].permute(1, 0, 2, 3)
        ceiling = frame_psnr(recon, gt.rgb)
        modes = [(m, "tiny") for m in MODES] + ([("latent", "oracle")] if oracle_ablation else [])
        for mode, depth_name in modes:
            estimator = OracleDepthEstimator(scene, 16) if depth_name == "oracle" else TinyDepthEstimator(backbone)
            out = generate(backbone, gt.rgb[0], cams, PipelineConfig(memory_mode=mode, steps=steps, seed=seed),
                           depth_estimator=estimator, masker=LatentDisagreementMasker(),
                           first_depth=depth0, first_exclude=gt.sky[0] | gt.dynamic[0])
            revisit = revisit_frames(cams, out.plan[0].end_frame)
            keyframes = [k for k in revisit if k % backbone.temporal_stride == 0]
            per = frame_psnr(out.video, gt.rgb)
            rows.append({
                "family": family, "scene": scene_seed, "path": path, "frames": frames,
                "mode": mode if depth_name == "tiny" else "latent+oracle-depth",
                "revisit_frames": revisit,
                "revisit_psnr": statistics.mean(per[k] for k in revisit),
                "vae_ceiling_psnr": statistics.mean(ceiling[k] for k in revisit),
                "revisit_keyframe_psnr": statistics.mean(per[k] for k in keyframes) if keyframes else None,
                "keyframe_ceiling_psnr": statistics.mean(ceiling[k] for k in keyframes) if keyframes else None,
                "psnr_all": statistics.mean(per),
                "timing": out.timing_summary(),
                "memory_bytes": out.memory_stats[-1]["bytes"],
            })
    return {"rows": rows, "summary": summarize(rows), "steps": steps, "size": [H, W]}


def summarize(rows) -> dict:
    out = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        rs = [r for r in rows if r["mode"] == mode]
        t = {k: sum(r["timing"][k] for r in rs) for k in ("read_s", "denoise_s", "decode_s", "depth_s", "update_s", "init_s", "total_s")}
        frames = sum(r["timing"]["frames"] for r in rs)
        out[mode] = {
            "revisit_psnr": statistics.mean(r["revisit_psnr"] for r in rs),
            "vae_ceiling_psnr": statistics.mean(r["vae_ceiling_psnr"] for r in rs),
            "psnr_all": statistics.mean(r["psnr_all"] for r in rs),
            "revisit_keyframe_psnr": statistics.mean(r["revisit_keyframe_psnr"] for r in rs if r["revisit_keyframe_psnr"] is not None),
            "keyframe_ceiling_psnr": statistics.mean(r["keyframe_ceiling_psnr"] for r in rs if r["keyframe_ceiling_psnr"] is not None),
            "s_per_frame": t["total_s"] / frames,
            "share": {k: v / t["total_s"] for k, v in t.items() if k != "total_s"},
            "memory_share": (t["read_s"] + t["update_s"]) / t["total_s"],
            "memory_bytes": statistics.mean(r["memory_bytes"] for r in rs),
            "runs": len(rs),
        }
    return out


def format_table(result: dict) -> str:
    s = result["summary"]
    lines = ["| mode | revisit PSNR (dB) | VAE ceiling (dB) | revisit keyframes (dB) | keyframe ceiling | all-frame PSNR | s/frame | read | denoise | decode | depth | update | read+update | cache bytes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, m in s.items():
        sh = m["share"]
        lines.append(
            f"| {mode} | {m['revisit_psnr']:.2f} | {m['vae_ceiling_psnr']:.2f} | {m['revisit_keyframe_psnr']:.2f} | "
            f"{m['keyframe_ceiling_psnr']:.2f} | {m['psnr_all']:.2f} | "
            f"{m['s_per_frame']:.4f} | {sh['read_s']:.1%} | {sh['denoise_s']:.1%} | {sh['decode_s']:.1%} | "
            f"{sh['depth_s']:.1%} | {sh['update_s']:.1%} | {m['memory_share']:.1%} | {m['memory_bytes']:.0f} |")
    if "latent" in s and "none" in s and "rgb" in s:
        lat = s["latent"]
        lines += ["", f"latent − none: {lat['revisit_psnr'] - s['none']['revisit_psnr']:+.2f} dB (goal ≥ +6); "
                      f"latent − rgb: {lat['revisit_psnr'] - s['rgb']['revisit_psnr']:+.2f} dB (goal ≥ 0); "
                      f"ceiling − latent: {lat['vae_ceiling_psnr'] - lat['revisit_psnr']:.2f} dB (goal ≤ 3); "
                      f"latent read+update share {lat['memory_share']:.1%} (goal ≤ 5%)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    from mirage.backbones import load_backbone

    p = argparse.ArgumentParser(prog="python -m mirage.pipeline.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--paths", default="pan-return:33,loop:33", help="preset:frames, comma separated")
    p.add_argument("--weights", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--oracle-ablation", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = tuple((s.split(":")[0], int(s.split(":")[1])) for s in args.paths.split(","))
    backbone = load_backbone("tiny", args.weights)
    result = evaluate(backbone, scenes=args.scenes, paths=paths, steps=args.steps, seed=args.seed,
                      first_seed=args.first_seed, oracle_ablation=args.oracle_ablation)
    table = format_table(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(result, indent=1))
        (out / "eval.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
