"""Pipeline time split per memory mode, side by side in one run (issue 4's speed goal).

    python benchmarks/pipeline_split.py --scenes 4 --repeats 3 --out results/pipeline

Runs :func:`mirage.pipeline.generate` with the tiny backbone (shipped weights, default size,
default steps) on held-out scenes (seeds < 100; training uses seeds ≥ 1000), alternating the
families room / courtyard, on the paths pan-return (33 frames) and loop (49 frames), in the
modes latent, rgb and none, with the CLI's defaults (tiny update depth, built-in masker, the
world's exact frame-0 depth). Discipline, as in ``benchmarks/memory.py``:

- one warm-up run per mode first, not counted;
- every repeat runs every (scene, path) job in all three modes back to back, the mode order
  rotating from repeat to repeat, so the modes see the same machine load;
- per (job, mode) and per step, the median over the repeats; steps are then summed over the
  jobs. Shares are of the summed total, as ``PipelineOutput.timing_summary`` computes them
  (the initial memory write counts as update; ``init`` is encoding frame 0).

``torch.set_num_threads`` is fixed (default 1) so that runs on a shared machine compare.
Each run's output fingerprint (video, latents, references, final memory size) is recorded, so
two versions of the code can be checked to compute the same thing. Prints a table and writes
``pipeline_split.json`` with ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

MODES = ("latent", "rgb", "none")
STEPS = ("init", "read", "denoise", "decode", "depth", "update")


def _jobs(scenes: int, first_seed: int, paths) -> list[tuple[str, int, str, int]]:
    families = ("room", "courtyard")
    return [(families[i % 2], first_seed + i, p, f) for i in range(scenes) for p, f in paths]


def _prepare(job, size):
    from mirage.world import generate_scene, load_trajectory, render

    family, seed, path, frames = job
    scene = generate_scene(family, seed)
    cams = load_trajectory(path, scene=scene, frames=frames, height=size[0], width=size[1])
    gt = render(scene, cams, torch.arange(frames, dtype=torch.float64) / 16)
    depth0 = torch.where(gt.sky[0], torch.full_like(gt.depth[0], float("inf")), gt.depth[0])
    return gt.rgb[0], cams, depth0, gt.sky[0] | gt.dynamic[0]


def _fingerprint(out) -> dict:
    def digest(t):
        return hashlib.sha256(t.detach().contiguous().float().numpy().tobytes()).hexdigest()[:16]

    return {"video": digest(out.video), "latents": digest(out.latents),
            "references": out.references, "points": out.memory_stats[-1]["points"]}


def _run(backbone, prepared, mode: str, steps: int, seed: int, **options):
    from mirage.pipeline import (LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator,
                                 generate)

    first, cams, depth0, exclude0 = prepared
    config = PipelineConfig(memory_mode=mode, steps=steps, seed=seed, **options)
    out = generate(backbone, first, cams, config,
                   depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                   first_depth=depth0, first_exclude=exclude0)
    s = out.timing_summary()
    return {k: s[f"{k}_s"] for k in STEPS} | {"frames": s["frames"]}, _fingerprint(out)


def benchmark(*, scenes=4, first_seed=0, paths=(("pan-return", 33), ("loop", 49)), repeats=3,
              steps=None, seed=0, weights=None, progress=True) -> dict:
    from tqdm.auto import tqdm

    from mirage.backbones import load_backbone

    backbone = load_backbone("tiny", weights)
    size = (backbone.config.height, backbone.config.width)
    steps = steps or backbone.config.steps
    jobs = _jobs(scenes, first_seed, paths)
    prepared = [_prepare(job, size) for job in jobs]
    for mode in MODES:  # warm-up, not counted
        _run(backbone, prepared[0], mode, steps, seed)
    samples = {(j, m): [] for j in range(len(jobs)) for m in MODES}
    fingerprints = {}
    bar = tqdm(total=repeats * len(jobs) * len(MODES), desc="pipeline split", disable=not progress)
    for r in range(repeats):
        order = MODES[r % 3:] + MODES[:r % 3]  # rotate so no mode always runs first
        for j in range(len(jobs)):
            for mode in order:
                timing, fp = _run(backbone, prepared[j], mode, steps, seed)
                samples[(j, mode)].append(timing)
                fingerprints[(j, mode)] = fp
                bar.update(1)
    bar.close()

    summary, rows = {}, []
    for mode in MODES:
        totals = dict.fromkeys(STEPS, 0.0)
        frames = 0
        for j, job in enumerate(jobs):
            med = {k: statistics.median(s[k] for s in samples[(j, mode)]) for k in STEPS}
            for k in STEPS:
                totals[k] += med[k]
            frames += samples[(j, mode)][0]["frames"]
            rows.append({"family": job[0], "scene": job[1], "path": job[2], "frames": job[3],
                         "mode": mode, "median_s": med,
                         "samples_s": samples[(j, mode)], "fingerprint": fingerprints[(j, mode)]})
        total = sum(totals.values())
        summary[mode] = {
            "total_s": total, "frames": frames, "s_per_frame": total / frames,
            "seconds": totals, "share": {k: v / total for k, v in totals.items()},
            "memory_share": (totals["read"] + totals["update"]) / total,
            "memory_ms_per_frame": 1e3 * (totals["read"] + totals["update"]) / frames,
        }
    return {
        "size": list(size), "steps": steps, "seed": seed, "repeats": repeats,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "jobs": [list(j) for j in jobs], "summary": summary, "rows": rows,
    }


def format_table(result: dict) -> str:
    lines = [f"{result['size'][0]}x{result['size'][1]}, {result['steps']} steps, "
             f"{len(result['jobs'])} jobs, median of {result['repeats']}, "
             f"{result['threads']} thread(s), load after {result['load_average_after']}",
             "| mode | s/frame | init | read | denoise | decode | depth | update | read+update | "
             "memory ms/frame |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, m in result["summary"].items():
        sh = m["share"]
        lines.append(f"| {mode} | {m['s_per_frame']:.4f} | "
                     + " | ".join(f"{sh[k]:.1%}" for k in STEPS)
                     + f" | {m['memory_share']:.1%} | {m['memory_ms_per_frame']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=4, help="held-out scenes (families alternate)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--paths", default="pan-return:33,loop:49",
                   help="preset:frames, comma separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="default: the backbone's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", default=None, help="default: the shipped weights")
    p.add_argument("--out", default=None, help="folder for pipeline_split.json")
    args = p.parse_args(argv)
    if args.first_seed + args.scenes > 100:
        p.error("held-out scenes are seeds < 100")
    torch.set_num_threads(args.threads)
    paths = tuple((s.split(":")[0], int(s.split(":")[1])) for s in args.paths.split(","))
    t0 = time.perf_counter()
    result = benchmark(scenes=args.scenes, first_seed=args.first_seed, paths=paths,
                       repeats=args.repeats, steps=args.steps, seed=args.seed, weights=args.weights)
    result["wall_s"] = time.perf_counter() - t0
    print(format_table(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pipeline_split.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
