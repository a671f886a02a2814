"""Does aligning relative update depth to the memory recover the geometry? (issue 27, item 4)

    nice python benchmarks/depth_alignment.py --threads 1 --out benchmarks/results/depth-alignment/result.json

Arms, all ``latent`` memory with the shipped tiny weights, sampling seed 0, on held-out 65-frame
paths (scene seeds 0-3 of room and courtyard × pan-return and loop, as
``benchmarks/exact_return.py``):

- ``oracle``: the world's exact update depth (ablation);
- ``oracle-relative``: that exact depth put through a random affine map in inverse depth per
  chunk (:class:`mirage.world.oracle.OracleRelativeDepthEstimator`), then aligned to the memory
  frame by frame (:mod:`mirage.pipeline.depth_align`);
- ``oracle-relative+no-align``: the same maps, not aligned (every frame through frame 0's map);
- ``tiny``: the tiny depth network (today's default), for reference.

Frame 0 has the world's exact depth in every arm. Reported per path and arm: the mean PSNR of the
last 8 frames against ground truth (``record["psnr"][-8:]``, as ``benchmarks/tune_scenes.py``),
the exact-return PSNR, the mean PSNR over all frames, the final memory's depth error against the
world's (its points where they project in the views of the path's latent-aligned generated
frames, median relative error), and for the relative arms the per-frame alignment fits (scale and shift
against the known map, median relative depth error, inliers, coverage, status). Runs are the
pipeline as ``mirage.evaluation.runs.evaluate_run`` runs it, scored with the same metrics
(``frame_psnr``, ``exact_return``); the script calls ``generate`` itself to keep the memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

FAMILIES = ("room", "courtyard")
PRESETS = ("pan-return", "loop")
ARMS = {  # label: (update depth, PipelineConfig options)
    "oracle": ("oracle", {}),
    "oracle-relative": ("oracle-relative", {}),
    "oracle-relative+no-align": ("oracle-relative", {"depth_align": False}),
    "tiny": ("tiny", {}),
}


def fit_errors(record: dict, scene, fps: float) -> list[dict]:
    """Per aligned frame: the recorded fit against the known map pred = a/z + b, whose inverse is
    1/z = pred/a − b/a: the scale error (fit scale · a − 1) and the shift error in inverse depth
    (fit shift + b/a)."""
    from mirage.world.oracle import OracleRelativeDepthEstimator

    est = OracleRelativeDepthEstimator(scene, fps)
    rows = []
    for chunk in record.get("depth_alignment") or []:
        if not chunk or not chunk["frames"]:
            continue
        a, b = est.affine_map(chunk["frames"][0]["frame"])
        for f in chunk["frames"]:
            row = {"chunk": chunk["chunk"], **f, "true_scale": 1 / a, "true_shift": -b / a}
            if f["status"] == "aligned":
                row["scale_error"] = f["scale"] * a - 1
                row["shift_error"] = f["shift"] + b / a
            rows.append(row)
    return rows


def memory_depth_error(memory, gt, tau: int) -> float:
    """Median relative error of the final memory's depth against the world's, over the views of
    the path's latent-aligned generated frames: in each, the memory's points where they project
    (:func:`mirage.pipeline.depth_align.anchor_points`) against the true depth at that pixel."""
    import numpy as np

    from mirage.inverse_depth import sample_at
    from mirage.pipeline.depth_align import anchor_points

    H, W = gt.cameras.hw
    h, w = gt.latents.shape[-2:]
    errors = []
    for k in range(tau, len(gt.cameras), tau):
        read = memory.read(gt.cameras[[k]], (h, w))
        anchors = anchor_points(read.depth[0], read.offset[0], (H, W))
        truth, inside = sample_at(gt.depth[k].double().numpy(), anchors[:, :2])
        ok = inside & np.isfinite(truth) & (truth > 0)
        errors.append(np.abs(anchors[ok, 2] - truth[ok]) / truth[ok])
    return float(np.median(np.concatenate(errors)))


def measure(backbone, cases, frames: int, arms: dict, progress: bool = True) -> list[dict]:
    """Every case × arm: the pipeline as ``evaluate_run`` runs it (latent memory, the backbone's
    steps, seed 0, frame 0's exact depth, the built-in masker), scored with the same metrics, plus
    the final memory's depth error."""
    import torch
    from tqdm.auto import tqdm

    from mirage.evaluation.metrics import exact_return, frame_psnr
    from mirage.evaluation.runs import FPS, prepare_ground_truth, update_depth_estimator
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, generate

    results = []
    bar = tqdm(total=len(cases) * len(arms), desc="depth alignment", disable=not progress)
    for case in cases:
        gt = prepare_ground_truth(backbone, case, frames, proxies=False)
        first_depth = torch.where(gt.exclude[0], torch.full_like(gt.depth[0], float("inf")), gt.depth[0])
        for label, (depth, options) in arms.items():
            config = PipelineConfig(memory_mode="latent", steps=backbone.config.steps, seed=0, **options)
            started = time.perf_counter()
            out = generate(backbone, gt.rgb[0], gt.cameras, config,
                           depth_estimator=update_depth_estimator(depth, backbone, gt.scene),
                           masker=LatentDisagreementMasker(), first_depth=first_depth, first_exclude=gt.exclude[0])
            psnr = frame_psnr(out.video.float().clamp(-1, 1), gt.rgb)
            row = {"case": case.id, "family": case.family, "scene": case.scene, "preset": case.preset, "arm": label,
                   "last8_psnr": statistics.fmean(psnr[-8:]), "psnr_all": statistics.fmean(psnr),
                   "exact_return_psnr": (exact_return(psnr, gt.cameras) or {}).get("return_psnr"),
                   "memory_depth_error": memory_depth_error(out.memory, gt, backbone.temporal_stride),
                   "psnr": psnr, "seconds": time.perf_counter() - started}
            if depth == "oracle-relative":
                row["fits"] = fit_errors({"depth_alignment": out.depth_alignment}, gt.scene, FPS)
            results.append(row)
            bar.update(1)
    bar.close()
    return results


def tables(results: list[dict], arms) -> str:
    paths = list(dict.fromkeys(r["case"] for r in results))
    by = {(r["case"], r["arm"]): r for r in results}
    lines = ["| path | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for p in paths:
        lines.append(f"| {p} | " + " | ".join(f"{by[(p, a)]['last8_psnr']:.2f}" for a in arms) + " |")
    means = {a: statistics.fmean(by[(p, a)]["last8_psnr"] for p in paths) for a in arms}
    lines.append("| **mean** | " + " | ".join(f"**{means[a]:.2f}**" for a in arms) + " |")
    out = ["Last-8-frame PSNR (dB) per path, latent memory, sampling seed 0:", "\n".join(lines)]
    deltas = ["| arm | mean − oracle (dB) | worst path − oracle (dB) | best path − oracle (dB) |", "|---|---|---|---|"]
    for a in arms:
        d = [by[(p, a)]["last8_psnr"] - by[(p, "oracle")]["last8_psnr"] for p in paths]
        deltas.append(f"| {a} | {statistics.fmean(d):+.2f} | {min(d):+.2f} | {max(d):+.2f} |")
    out += ["Against `oracle` on the same paths:", "\n".join(deltas)]
    geo = ["| arm | memory depth error, median over paths | worst path | PSNR, all frames (mean) |", "|---|---|---|---|"]
    for a in arms:
        e = [by[(p, a)]["memory_depth_error"] for p in paths]
        geo.append(f"| {a} | {statistics.median(e):.2%} | {max(e):.2%} | "
                   f"{statistics.fmean(by[(p, a)]['psnr_all'] for p in paths):.2f} |")
    out += ["The final memory's geometry: median relative error of its depth in the views of the path's "
            "latent-aligned generated frames against the world's depth (frame 0's points are exact in every arm):",
            "\n".join(geo)]
    fits = [f for r in results if r["arm"] == "oracle-relative" for f in r.get("fits", [])]
    if fits:
        aligned = [f for f in fits if f["status"] == "aligned"]
        q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
        res = [f["residual"] for f in aligned]
        se = [abs(f["scale_error"]) for f in aligned]
        sh = [abs(f["shift_error"]) for f in aligned]
        out += ["Alignment of `oracle-relative` (every latent-aligned generated frame of every path):",
                "\n".join(["| frames | aligned | skipped | median rel. depth error: median / p90 / max | "
                           "abs scale error: median / p90 / max | abs shift error (1/units): median / max |",
                           "|---|---|---|---|---|---|",
                           f"| {len(fits)} | {len(aligned)} | {len(fits) - len(aligned)} | "
                           f"{statistics.median(res):.4f} / {q(res, 0.9):.4f} / {max(res):.4f} | "
                           f"{statistics.median(se):.2%} / {q(se, 0.9):.2%} / {max(se):.2%} | "
                           f"{statistics.median(sh):.4f} / {max(sh):.4f} |"])]
        skipped = [f"{r['case']} frame {f['frame']}: {f['reason']}" for r in results if r["arm"] == "oracle-relative"
                   for f in r.get("fits", []) if f["status"] != "aligned"]
        if skipped:
            out += ["Frames not written (could not be aligned):", "\n".join(f"- {s}" for s in skipped)]
    return "\n\n".join(out)


def main(argv=None) -> int:
    import torch

    from mirage.backbones import load_backbone
    from mirage.evaluation.runs import _clean
    from mirage.evaluation.suite import HELD_OUT_LIMIT, Case

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, metavar="PATH", help="tiny weights (default: shipped)")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--scenes", default="0,1,2,3", metavar="0,1,…", help=f"held-out scene seeds (< {HELD_OUT_LIMIT})")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--frames", type=int, default=65)
    p.add_argument("--arms", default=",".join(ARMS), help=f"some of {list(ARMS)} (oracle is always run)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=None, metavar="FILE.json", help="write JSON here and the tables to FILE.md")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    scenes = [int(s) for s in args.scenes.split(",") if s]
    if not scenes or min(scenes) < 0 or max(scenes) >= HELD_OUT_LIMIT:
        p.error(f"`--scenes` must be held-out seeds in [0, {HELD_OUT_LIMIT}) but are {args.scenes!r}")
    names = ["oracle"] + [a for a in args.arms.split(",") if a and a != "oracle"]
    if any(a not in ARMS for a in names):
        p.error(f"`--arms` must be some of {list(ARMS)} but is {args.arms!r}")
    arms = {a: ARMS[a] for a in names}
    torch.set_num_threads(args.threads)
    backbone = load_backbone("tiny", args.weights)
    cases = [Case(f, s, pr) for f in args.families.split(",") for s in scenes for pr in args.presets.split(",")]
    started, load = time.perf_counter(), os.getloadavg()[0]
    with torch.no_grad():
        results = measure(backbone, cases, args.frames, arms, progress=not args.no_progress)
    header = (f"Depth alignment: {len(cases)} held-out paths ({args.frames} frames) × {len(arms)} arms, latent memory, "
              f"tiny weights {args.weights or 'shipped'}, sampling seed 0, {args.threads} torch thread(s), "
              f"{time.perf_counter() - started:.0f} s on a shared 2-core CPU (load {load:.1f} at start).")
    text = header + "\n\n" + tables(results, list(arms))
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {"format": "mirage.depth-alignment", "version": 1,
                  "command": "python benchmarks/depth_alignment.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "weights": str(args.weights or "shipped"), "frames": args.frames, "arms": list(arms),
                  "cases": [c.id for c in cases],
                  "runs": [{k: v for k, v in r.items() if k != "psnr"} for r in results]}  # per-frame PSNR: not kept
        out.write_text(json.dumps(_clean(result)))
        out.with_suffix(".md").write_text(text + "\n")
        print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
