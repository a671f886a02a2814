"""Memory cost on long walks: per-chunk read and update time, points and bytes (issue 17).

    python benchmarks/long_horizon.py --frames 1025 4097 --out benchmarks/results/long-horizon

Runs :func:`mirage.pipeline.generate` with the tiny backbone (shipped weights, CLI defaults:
tiny update depth, built-in masker, the world's exact frame-0 depth) on a courtyard random walk
(``--scene 5 --family courtyard --trajectory random-walk``), in the modes given, and records
per chunk: read time (read + reference retrieval), update time, the other steps, points and
bytes. The summary per run: the mean read + update of chunks 16–31 and of the last 16 chunks,
their ratio (flat = 1), and the memory share of the whole run (read + update over everything,
as ``PipelineOutput.timing_summary``).

``--agreement`` runs the latent walk once more and, at every chunk, also scores the references
with the definition the memory used before its covisibility index (every written frame's set is
what it sees *now*: a splat of the whole memory into every written camera, Python sets), and
counts how often the two choose the same references. The reference time of that check is not
part of any timing.

Writes ``long_horizon.json`` and ``long_horizon.png`` (time per chunk against chunk index)
with ``--out``. ``torch.set_num_threads`` is fixed (default 2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def _prepare(family: str, seed: int, path: str, frames: int, size):
    from mirage.world import generate_scene, load_trajectory, render

    scene = generate_scene(family, seed)
    cams = load_trajectory(path, scene=scene, frames=frames, height=size[0], width=size[1])
    gt = render(scene, cams[:1], torch.zeros(1, dtype=torch.float64))
    depth0 = torch.where(gt.sky[0], torch.full_like(gt.depth[0], float("inf")), gt.depth[0])
    return gt.rgb[0], cams, depth0, gt.sky[0] | gt.dynamic[0]


def visible_now_references(memory, target_cameras, k: int, min_iou: float, exclude) -> list:
    """The references by the earlier definition: each written frame's set is the voxels of the
    points it sees in the memory now (one splat into every written camera)."""
    from mirage.geometry import rescale_intrinsics, rigid_inverse
    from mirage.memory.covisibility import voxel_keys
    from mirage.memory.splat import splat_zbuffer

    if memory.num_points == 0 or k == 0:
        return []
    hw, size = memory.grid_hw, memory.covisibility.voxel_size
    K = rescale_intrinsics(target_cameras.K, target_cameras.hw, hw).float()
    target = splat_zbuffer(memory.points, K, rigid_inverse(target_cameras.cam2world.float()), hw,
                           priority=memory.uids).index
    frames = splat_zbuffer(memory.points, memory.table_K, rigid_inverse(memory.table_cam2world), hw,
                           priority=memory.uids).index
    keys = voxel_keys(memory.points, size)
    target_set = set(keys[target[target >= 0]].tolist())
    scored = []
    for row, frame_id in enumerate(memory.frames):
        if frame_id in exclude:
            continue
        seen = set(keys[frames[row][frames[row] >= 0]].tolist())
        union = len(seen | target_set)
        iou = len(seen & target_set) / union if union else 0.0
        if iou >= min_iou:
            scored.append((frame_id, iou))
    scored.sort(key=lambda r: (-r[1], -r[0]))
    return scored if k is None else scored[:k]


def run(backbone, prepared, mode: str, *, agreement: bool = False) -> dict:
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate
    from mirage.pipeline import memory_modes

    first, cams, depth0, exclude0 = prepared
    checks = []
    if agreement:
        real = memory_modes.LatentMode.read_and_references

        def both(self, chunk_cameras, tau, hw, bb, k, exclude):
            read, refs = real(self, chunk_cameras, tau, hw, bb, k, exclude)
            scores = visible_now_references(self.memory, chunk_cameras[tau::tau], None,
                                            memory_modes.REFERENCE_MIN_IOU, set(exclude))
            by_frame = dict(scores)
            for kk in (1, 4):
                new = (refs if kk == k else real(self, chunk_cameras, tau, hw, bb, kk, exclude)[1])
                old = scores[:kk]
                checks.append({"k": kk, "new": [r.frame_id for r in new], "old": [f for f, _ in old],
                               # the visible-now IoU of what each definition chose
                               "old_iou_of_new": [by_frame.get(r.frame_id, 0.0) for r in new],
                               "old_iou_of_old": [s for _, s in old]})
            return read, refs

        memory_modes.LatentMode.read_and_references = both
    try:
        # "latent-no-far": latent without its far field, to measure what the far field costs
        far = {"latent-no-far": False}.get(mode)
        out = generate(backbone, first, cams,
                       PipelineConfig(memory_mode=mode.removesuffix("-no-far"), far_field=far, seed=0),
                       depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                       first_depth=depth0, first_exclude=exclude0)
    finally:
        if agreement:
            memory_modes.LatentMode.read_and_references = real
    chunks = [{"chunk": i, "points": s["points"], "bytes": s["bytes"], "read_ms": 1e3 * t.read,
               "update_ms": 1e3 * t.update, "denoise_ms": 1e3 * t.denoise, "decode_ms": 1e3 * t.decode,
               "depth_ms": 1e3 * t.depth}
              for i, (t, s) in enumerate(zip(out.timings, out.memory_stats))]
    summary = out.timing_summary()
    memory = [c["read_ms"] + c["update_ms"] for c in chunks]
    result = {
        "mode": mode, "frames": len(cams), "chunks": chunks,
        "memory_share": summary["memory_share"], "s_per_frame": summary["s_per_frame"],
        "chunks_16_31_ms": statistics.mean(memory[16:32]) if len(memory) >= 32 else None,
        "last_16_ms": statistics.mean(memory[-16:]),
        # medians too: a shared machine puts spikes into single chunks
        "chunks_16_31_median_ms": statistics.median(memory[16:32]) if len(memory) >= 32 else None,
        "last_16_median_ms": statistics.median(memory[-16:]),
    }
    if result["chunks_16_31_ms"]:
        result["last_16_over_16_31"] = result["last_16_ms"] / result["chunks_16_31_ms"]
    if agreement:
        result["agreement"] = {
            f"top{k}": {"chunks": len(rows), "same": sum(r["new"] == r["old"] for r in rows),
                        "same_set": sum(set(r["new"]) == set(r["old"]) for r in rows),
                        # mean over chunks with a choice of: the visible-now IoU of the chosen
                        # references over that of the visible-now best (1 = as covisible)
                        "iou_ratio": _mean_ratio(rows),
                        "rows": rows}
            for k in (1, 4) for rows in [[c for c in checks if c["k"] == k]]}
    return result


def _mean_ratio(rows) -> float | None:
    ratios = [sum(r["old_iou_of_new"]) / sum(r["old_iou_of_old"]) for r in rows
              if r["old_iou_of_old"] and sum(r["old_iou_of_old"]) > 0]
    return statistics.mean(ratios) if ratios else None


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in result["runs"]:
        ms = [c["read_ms"] + c["update_ms"] for c in r["chunks"]]
        ax.plot(range(len(ms)), ms, label=f"{r['mode']}, {r['frames']} frames", lw=1)
    ax.set_xlabel("chunk")
    ax.set_ylabel("read + update per chunk (ms)")
    ax.set_yscale("log")
    ax.set_title(f"memory time on a courtyard random walk ({result['threads']} threads, tiny)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(result: dict) -> str:
    lines = ["| mode | frames | points (end) | MB (end) | chunks 16–31 ms | last 16 ms | ratio | "
             "ratio of medians | memory share |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        ratio = r.get("last_16_over_16_31")
        median_ratio = (r["last_16_median_ms"] / r["chunks_16_31_median_ms"]
                        if r.get("chunks_16_31_median_ms") else float("nan"))
        lines.append(f"| {r['mode']} | {r['frames']} | {r['chunks'][-1]['points']} | "
                     f"{r['chunks'][-1]['bytes'] / 2**20:.2f} | {r['chunks_16_31_ms'] or float('nan'):.2f} | "
                     f"{r['last_16_ms']:.2f} | {ratio or float('nan'):.2f} | {median_ratio:.2f} | "
                     f"{r['memory_share']:.2%} |")
    for r in result["runs"]:
        for key, a in r.get("agreement", {}).items():
            ratio = a.get("iou_ratio")
            lines.append(f"agreement {r['frames']} frames {key}: same {a['same']}/{a['chunks']}, "
                         f"same set {a['same_set']}/{a['chunks']}, visible-now IoU of the choice / "
                         f"of the best: {ratio if ratio is None else round(ratio, 3)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[1025, 4097])
    p.add_argument("--modes", nargs="+", default=["latent", "rgb"],
                   help="latent, rgb, none, and latent-no-far (latent without its far field)")
    p.add_argument("--rgb-max-frames", type=int, default=1025,
                   help="longest walk for rgb (its per-chunk cost grows with the walk)")
    p.add_argument("--scene", type=int, default=5)
    p.add_argument("--family", default="courtyard")
    p.add_argument("--trajectory", default="random-walk")
    p.add_argument("--agreement", action="store_true", help="also compare the references' definitions")
    p.add_argument("--agreement-only", action="store_true", help="only the agreement runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mirage.backbones import load_backbone

    backbone = load_backbone("tiny", args.weights)
    size = (backbone.config.height, backbone.config.width)
    t0 = time.perf_counter()
    runs = []
    for frames in args.frames:
        prepared = _prepare(args.family, args.scene, args.trajectory, frames, size)
        for mode in ([] if args.agreement_only else args.modes):
            if mode == "rgb" and frames > args.rgb_max_frames:
                continue
            print(f"{mode}, {frames} frames ...", flush=True)
            runs.append(run(backbone, prepared, mode))
        if args.agreement or args.agreement_only:
            print(f"latent agreement, {frames} frames ...", flush=True)
            check = run(backbone, prepared, "latent", agreement=True)
            runs.append({"mode": "latent (agreement run, timings include the check)",
                         "frames": frames, "chunks": check["chunks"], "memory_share": check["memory_share"],
                         "chunks_16_31_ms": None, "last_16_ms": check["last_16_ms"],
                         "agreement": check["agreement"]})
    result = {"scene": [args.family, args.scene, args.trajectory], "size": list(size),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average_after": list(os.getloadavg()), "wall_s": time.perf_counter() - t0,
              "runs": runs}
    print(format_table(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "long_horizon.json").write_text(json.dumps(result, indent=1))
        plot({**result, "runs": [r for r in runs if "agreement" not in r]}, out / "long_horizon.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
