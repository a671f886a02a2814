"""What the far field adds to the latent memory's time per chunk, by grid size.

    python benchmarks/far_field_cost.py --latent-frames 33 --repeats 15 --out benchmarks/results/far-field

A held-out courtyard (sky above a skyline) walked on its loop path, its ground-truth depth (sky = no
depth), random latent tokens (the memory's cost does not depend on their values): the memory
is written with frame 0 (confidence 1), then chunk by chunk it reads the chunk's target views
and writes them (confidence 0.5), as ``generate`` does, with the pipeline's write rules
(``LatentMode``: planarity 0.2, partial fraction 0.25, edge cells kept). The same writes and reads
run with the far field on and off, back to back in each pass (which first alternates); the times
are the medians over passes of the mean (read + write) per chunk, and what the far field adds is
the median over passes of the pass's ratio (with its quartiles). The last column measures the
same from one arm: the time inside the far field's own calls (``FarField.write_grid`` and
``FarField.fill``) over the rest of the "on" time, steadier where the machine's speed drifts
between passes more than the far field costs (at 44×80). 64×64 is the tiny model's size
(a 16×16 latent), 704×1280 Wan2.2-TI2V-5B's (a 44×80 latent, 48 channels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def prepare(size: tuple[int, int], frames: int, scene_seed: int):
    from mirage.world import generate_scene, load_trajectory, render

    scene = generate_scene("courtyard", scene_seed)
    cams = load_trajectory("loop", scene=scene, frames=frames, height=size[0], width=size[1])
    gt = render(scene, cams, torch.zeros(frames, dtype=torch.float64))
    depth = torch.where(gt.sky, torch.full_like(gt.depth, float("inf")), gt.depth)
    return cams, depth.float()


def run(cams, depth, latents, *, far_field: bool, tau: int, chunk: int) -> tuple[list[float], list[float]]:
    """Seconds of (read + write) per chunk, one walk, and of that the seconds spent inside the far
    field's own calls (``FarField.write_grid`` and ``FarField.fill``)."""
    from mirage.memory import LatentSpatialMemory
    from mirage.pipeline.memory_modes import GRID_PLANARITY_TOL, PARTIAL_CELL_FRACTION, REFERENCE_VOXEL

    options = dict(planarity_tol=GRID_PLANARITY_TOL, min_valid_fraction=PARTIAL_CELL_FRACTION, keep_edges=True)
    memory = LatentSpatialMemory(latents.shape[1], reference_voxel=REFERENCE_VOXEL, far_field=far_field)
    hw = tuple(latents.shape[2:])
    memory.write(latents[:1], depth[:1], cams[[0]], frame_ids=[0], confidence=1.0, **options)
    inside = [0.0]  # seconds inside the far field's calls this chunk

    def timed(fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            inside[0] += time.perf_counter() - t
            return out
        return call

    if memory.far is not None:  # made by frame 0's sky; this walk's map, timed in place
        memory.far.write_grid, memory.far.fill = timed(memory.far.write_grid), timed(memory.far.fill)
    times, far_times = [], []
    for start in range(1, latents.shape[0], chunk):
        ids = list(range(start, min(start + chunk, latents.shape[0])))
        pixels = [tau * k for k in ids]
        inside[0] = 0.0
        t = time.perf_counter()
        memory.read(cams[pixels], hw)
        memory.write(latents[ids], depth[pixels], cams[pixels], frame_ids=ids, confidence=0.5, **options)
        times.append(time.perf_counter() - t)
        far_times.append(inside[0])
    return times, far_times


def measure(size: tuple[int, int], *, channels: int, stride: int, latent_frames: int, chunk: int, repeats: int,
            scene_seed: int) -> dict:
    tau = 4
    cams, depth = prepare(size, tau * (latent_frames - 1) + 1, scene_seed)
    latents = torch.randn(latent_frames, channels, size[0] // stride, size[1] // stride,
                          generator=torch.Generator().manual_seed(0))
    per_chunk = {"on": [], "off": []}
    inside = []  # per pass, the share of the "on" time spent in the far field's own calls
    for i in range(repeats + 1):  # the first pass warms up, not counted
        for label in (("on", "off") if i % 2 else ("off", "on")):
            times, far_times = run(cams, depth, latents, far_field=label == "on", tau=tau, chunk=chunk)
            if i:
                per_chunk[label].append(statistics.fmean(times))
                if label == "on":
                    inside.append(sum(far_times) / sum(times))
    on, off = (statistics.median(per_chunk[k]) for k in ("on", "off"))
    # The machine's speed drifts between passes (at 44×80 "off" has ranged over 1.7x); the two
    # arms of one pass run back to back, so the ratio within a pass is the steadier figure.
    ratios = sorted(a / b - 1 for a, b in zip(per_chunk["on"], per_chunk["off"]))
    return {"size": list(size), "latent": [channels, size[0] // stride, size[1] // stride],
            "chunk": chunk, "chunks": -(-(latent_frames - 1) // chunk), "on_ms": 1e3 * on, "off_ms": 1e3 * off,
            "adds": statistics.median(ratios), "adds_quartiles": [ratios[len(ratios) // 4],
                                                                  ratios[(3 * len(ratios)) // 4]],
            # the far field's calls over the rest of the "on" time: the same figure, from one arm
            "calls_over_rest": statistics.median(share / (1 - share) for share in inside)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="64x64,176x320,704x1280", help="pixel sizes, multiples of 16")
    p.add_argument("--channels", default="16,48,48", help="latent channels per size (tiny 16, Wan2.2 48)")
    p.add_argument("--strides", default="4,16,16", help="VAE spatial stride per size (tiny 4, Wan2.2 16)")
    p.add_argument("--chunks", default="4,8,8", help="latent frames per chunk, per size")
    p.add_argument("--latent-frames", type=int, default=33, help="latent frames of the walk (frame 0 included)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scene", type=int, default=0, help="courtyard scene seed (held out: < 100)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, metavar="DIR", help="write far_field_cost.json and .md here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    per_size = {name: [int(v) for v in getattr(args, name).split(",")] for name in ("channels", "strides", "chunks")}
    for name, values in per_size.items():
        if len(values) != len(sizes):
            p.error(f"`--{name}` needs one value per size")
    rows = []
    for i, size in enumerate(sizes):
        rows.append(measure(size, channels=per_size["channels"][i], stride=per_size["strides"][i],
                            latent_frames=args.latent_frames, chunk=per_size["chunks"][i],
                            repeats=args.repeats, scene_seed=args.scene))
        print(rows[-1], file=sys.stderr)
    lines = [f"Far field on vs off, latent memory read + write per chunk, courtyard "
             f"{args.scene} loop, {args.latent_frames} latent frames, median of {args.repeats} passes (on and off "
             f"back to back), {args.threads} torch thread(s), CPU.", "",
             "| pixels | latent (C×h×w) | latent frames per chunk | off (ms/chunk) | on (ms/chunk) | far field adds "
             "| quartiles over passes | its calls over the rest |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size'][0]}×{r['size'][1]} | {'×'.join(map(str, r['latent']))} | {r['chunk']} | "
                     f"{r['off_ms']:.2f} | {r['on_ms']:.2f} | {r['adds']:+.1%} | "
                     f"{r['adds_quartiles'][0]:+.1%} – {r['adds_quartiles'][1]:+.1%} | {r['calls_over_rest']:+.1%} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "far_field_cost.json").write_text(json.dumps(
            {"format": "mirage.far-field-cost", "version": 1,
             "command": "python benchmarks/far_field_cost.py " + " ".join(sys.argv[1:] if argv is None else argv),
             "rows": rows}, indent=1) + "\n")
        (out / "far_field_cost.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
