"""Frames per second of the procedural-world renderer (``mirage.world.raycast``).

Renders a room scene along the ``pan-return`` preset at each requested size, several repeats
per size, and reports the median. Writes a table to stdout and JSON to ``--out``.

    python benchmarks/world.py --sizes 128x128 704x1280 --out benchmarks/world.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from mirage.cli.options import parse_size
from mirage.world import generate_scene, make_trajectory, render

GOAL_FPS_128 = 200.0  # the target at 128x128 on a 2-core CPU


def bench_size(height: int, width: int, frames: int, repeats: int, family: str, seed: int, ssaa: int) -> dict:
    scene = generate_scene(family, seed)
    cameras = make_trajectory("pan-return", scene, frames, height, width)
    times = torch.arange(frames, dtype=torch.float64) / 16
    render(scene, cameras[:1], times[:1], ssaa=ssaa)  # warm-up: scene compile, photo load
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        render(scene, cameras, times, ssaa=ssaa)
        seconds.append(time.perf_counter() - start)
    med = statistics.median(seconds)
    return {
        "height": height, "width": width, "frames": frames, "repeats": repeats, "ssaa": ssaa,
        "family": family, "seed": seed, "seconds_median": med, "seconds_min": min(seconds),
        "fps_median": frames / med, "fps_best": frames / min(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["128x128", "704x1280"], help="N or HxW")
    parser.add_argument("--frames", nargs="+", type=int, default=None,
                        help="frames per render call, one per size (default: 64 small, 4 large)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--family", default="room")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ssaa", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/world.json")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes]
    frames = args.frames or [64 if h * w <= 256 * 256 else 4 for h, w in sizes]
    rows = [bench_size(h, w, f, args.repeats, args.family, args.seed, args.ssaa) for (h, w), f in zip(sizes, frames)]
    print(f"{'size':>10} {'frames':>6} {'ssaa':>4} {'median s':>9} {'fps (median)':>13} {'fps (best)':>11}")
    for r in rows:
        print(f"{r['height']}x{r['width']:<5} {r['frames']:>6} {r['ssaa']:>4} {r['seconds_median']:>9.3f} "
              f"{r['fps_median']:>13.1f} {r['fps_best']:>11.1f}")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor(), "python": platform.python_version()}
    small = [r for r in rows if (r["height"], r["width"]) == (128, 128)]
    if small:  # the goal, as a ratio measured in this run
        print(f"128x128: {small[0]['fps_median'] / GOAL_FPS_128:.2f}x the {GOAL_FPS_128} fps goal")
    with open(args.out, "w") as fh:
        json.dump({"benchmark": "world.render", "goal_fps_128": GOAL_FPS_128, "env": meta, "results": rows}, fh, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
