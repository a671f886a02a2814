"""Where the latent memory's time goes *inside* `generate`, function by function.

    python benchmarks/memory_in_situ.py --threads 2
    python benchmarks/memory_in_situ.py --threads 2 --far-field-ab   # the far field on vs off

Runs the jobs of ``benchmarks/pipeline_split.py`` (held-out scenes, pan-return:33 and loop:49,
shipped weights, latent mode, the CLI's defaults) and wraps the memory's functions with wall-clock
timers: the mode's ``write`` and ``read_and_references``, and inside them the fusion kernel,
``reduce_depth_to_grid``, ``backproject_depth``, the splat, the references, the gather and the
sub-cell offsets. One warm-up pass over the jobs is not counted; then ``--repeats`` passes.
Prints µs per output frame and per call, largest first, and the far field's share of the
memory's time (its write and read over the mode's ``write`` and ``read_and_references``). Nested
calls are also counted in their callers (``write`` includes the fusion kernel and the far
field). The wrappers add a few µs per call.

Why it exists: the same calls cost 1.4–3x less when timed alone in a loop than here, after the
network's kernels, so the share in ``pipeline_split.py`` cannot be predicted from isolated
timings (``benchmarks/results/tiny-recipe/README.md``).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_split  # noqa: E402  (the same jobs and runs)


def _wrap(table, obj, name: str, label: str, *, static: bool = False) -> None:
    fn = getattr(obj, name)

    def timed(*args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        table[label].append(time.perf_counter() - t)
        return out

    setattr(obj, name, staticmethod(timed) if static else timed)


def _jobs(scenes: int, weights) -> tuple:
    """The tiny backbone and the prepared jobs of ``benchmarks/pipeline_split.py``."""
    from mirage.backbones import load_backbone

    backbone = load_backbone("tiny", weights)
    size = (backbone.config.height, backbone.config.width)
    jobs = pipeline_split._jobs(scenes, 0, (("pan-return", 33), ("loop", 49)))
    return backbone, [pipeline_split._prepare(job, size) for job in jobs]


def benchmark(*, scenes: int = 4, repeats: int = 3, weights=None) -> tuple[dict, int]:
    """{label: [seconds per call]} over ``repeats`` passes, and the frames generated."""
    import mirage.memory.latent as latent
    import mirage.memory.store as store
    from mirage.pipeline import memory_modes

    table = collections.defaultdict(list)
    _wrap(table, memory_modes.LatentMode, "write", "write (all)")
    _wrap(table, memory_modes.LatentMode, "read_and_references", "read + references (all)")
    _wrap(table, latent, "reduce_depth_to_grid", "write: reduce_depth_to_grid")
    _wrap(table, latent, "check_finite", "write: check_finite(latents)")
    _wrap(table, store, "backproject_depth", "write: backproject_depth")
    _wrap(table, store.PointStore, "fusion_kernel", "write: fuse_write", static=True)
    _wrap(table, store.PointStore, "_register_frames", "write: _register_frames")
    _wrap(table, store.FrameIndex, "add", "write: covisibility index add")
    _wrap(table, store, "splat_zbuffer", "read: splat (views; append-mode writes)")
    _wrap(table, store.PointStore, "references", "read: references")
    _wrap(table, store.FrameIndex, "ious", "read: references: index lookup")
    _wrap(table, store, "cell_offsets", "read: cell_offsets")
    _wrap(table, store, "hides_trusted", "write: hides_trusted")
    _wrap(table, store.FarField, "write_grid", "write: far field")
    _wrap(table, store.FarField, "fill", "read: far field")
    backbone, prepared = _jobs(scenes, weights)
    for p in prepared:  # warm-up, not counted
        pipeline_split._run(backbone, p, "latent", backbone.config.steps, 0)
    table.clear()
    for _ in range(repeats):
        for p in prepared:
            pipeline_split._run(backbone, p, "latent", backbone.config.steps, 0)
    return dict(table), repeats * sum(len(p[1]) for p in prepared)


def far_field_ab(*, scenes: int = 4, repeats: int = 3, weights=None) -> dict:
    """The memory's time (the mode's ``write`` + ``read_and_references``) per frame with the far
    field on and off, in seconds: {"on": [...], "off": [...]} per pass. Within a pass every job
    runs with the far field on and off back to back (which first alternates by job and pass), so
    that the machine's drift over a pass falls on both arms alike."""
    from mirage.pipeline import memory_modes

    table = collections.defaultdict(list)
    _wrap(table, memory_modes.LatentMode, "write", "memory")
    _wrap(table, memory_modes.LatentMode, "read_and_references", "memory")
    backbone, prepared = _jobs(scenes, weights)
    frames = sum(len(p[1]) for p in prepared)
    passes = {"on": [], "off": []}
    for i in range(repeats + 1):  # the first pass warms up, not counted
        spent = {"on": 0.0, "off": 0.0}
        for j, p in enumerate(prepared):
            for label in (("on", "off") if (i + j) % 2 else ("off", "on")):
                table.clear()
                pipeline_split._run(backbone, p, "latent", backbone.config.steps, 0, far_field=label == "on")
                spent[label] += sum(table["memory"])
        if i:
            for label, seconds in spent.items():
                passes[label].append(seconds / frames)
    return passes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default=None, help="default: the shipped weights")
    p.add_argument("--far-field-ab", action="store_true",
                   help="instead: the memory's time with the far field on and off, passes alternating")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.far_field_ab:
        passes = far_field_ab(scenes=args.scenes, repeats=args.repeats, weights=args.weights)
        on, off = (statistics.median(passes[k]) for k in ("on", "off"))
        ratios = sorted(a / b - 1 for a, b in zip(passes["on"], passes["off"]))
        print(f"memory time per frame, median of {args.repeats} passes, {args.threads} thread(s): far field on "
              f"{1e6 * on:.1f} µs, off {1e6 * off:.1f} µs: the far field adds {on / off - 1:.1%} "
              f"(per pass {ratios[0]:+.1%} to {ratios[-1]:+.1%}, median {statistics.median(ratios):+.1%})")
        return 0
    table, frames = benchmark(scenes=args.scenes, repeats=args.repeats, weights=args.weights)
    print(f"{frames} frames, {args.threads} thread(s)")
    print("| call | calls | µs per frame | µs per call |\n|---|---|---|---|")
    for label, times in sorted(table.items(), key=lambda kv: -sum(kv[1])):
        print(f"| {label} | {len(times)} | {1e6 * sum(times) / frames:.1f} | "
              f"{1e6 * sum(times) / len(times):.1f} |")
    far = sum(sum(table.get(k, [])) for k in ("write: far field", "read: far field"))
    memory = sum(table["write (all)"]) + sum(table["read + references (all)"])
    print(f"far field (its write and read): {1e6 * far / frames:.1f} µs per frame, {far / memory:.1%} of the "
          f"memory's time, {far / (memory - far):.1%} over the rest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
