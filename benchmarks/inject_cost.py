"""What injecting the memory read costs in sampling time, side by side with the trained branch.

    python benchmarks/inject_cost.py --repeats 15 --out benchmarks/results/inject-cost

Two grids: the tiny model (shipped weights, its 16×16 latent grid, 4 target latent frames per
chunk, its 6 Euler steps) and Wan2.2's 44×80 grid (704×1280 frames) on the tiny-random Wan2.2
directory (``mirage.backbones.wan22.testing.save_tiny_wan``), 8 target latent frames (a 33-frame
chunk), 4 UniPC steps. For each, one chunk's ``backbone.sample`` runs with
``memory_input="branch"`` and ``"inject"`` back to back in every pass, alternating which goes
first; the figure is the median over passes of the per-pass ratio inject / branch, with its
quartiles, and the injector's own calls (``Injector.__call__``, timed in place) over the rest.
The read covers 60% of the cells (random, seeded). Tiny-random Wan2.2 weights make the model
call far cheaper than the 5B model's, so its ratio is an upper bound for the real model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def conditioning(C: int, n: int, h: int, w: int, steps: int, memory_input: str, hw: tuple[int, int]):
    from mirage.backbones import ChunkConditioning
    from mirage.geometry import Camera

    g = torch.Generator().manual_seed(0)
    cams = Camera.from_fov(torch.eye(4).expand(1 + n + 2, 4, 4), hw[0], hw[1], 60.0)
    mask = torch.rand(n, h, w, generator=g) < 0.6
    return ChunkConditioning(
        first_latent=torch.randn(C, h, w, generator=g), memory_features=torch.randn(n, C, h, w, generator=g) * mask[:, None],
        memory_mask=mask, preceding=torch.randn(1, C, h, w, generator=g), references=torch.randn(1, C, h, w, generator=g),
        first_camera=cams[[0]], target_cameras=cams[list(range(1, 1 + n))], preceding_cameras=cams[[1 + n]],
        reference_cameras=cams[[2 + n]], steps=steps, memory_input=memory_input)


class _TimedInjector:
    """Wrap ``ChunkConditioning.injector`` so the injector's own calls are timed in place."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        from mirage.backbones import base

        self.cls, self.original = base.ChunkConditioning, base.ChunkConditioning.injector
        timer = self

        def injector(cond, noise, layout, device=None):
            inner = timer.original(cond, noise, layout, device)
            if inner is None:
                return None

            def call(x, level):
                t = time.perf_counter()
                out = inner(x, level)
                timer.seconds += time.perf_counter() - t
                return out
            return call

        self.cls.injector = injector
        return self

    def __exit__(self, *exc):
        self.cls.injector = self.original


def measure(backbone, C, n, h, w, steps, hw, repeats: int) -> dict:
    conds = {m: conditioning(C, n, h, w, steps, m, hw) for m in ("branch", "inject")}
    times = {m: [] for m in conds}
    own = []
    for m in conds:  # warm-up, uncounted
        backbone.sample(conds[m], torch.Generator().manual_seed(0))
    for i in range(repeats):
        order = ("branch", "inject") if i % 2 == 0 else ("inject", "branch")
        for m in order:
            with _TimedInjector() as timer:
                t = time.perf_counter()
                backbone.sample(conds[m], torch.Generator().manual_seed(i))
                elapsed = time.perf_counter() - t
            times[m].append(elapsed)
            if m == "inject":
                own.append(timer.seconds / (elapsed - timer.seconds))
    ratios = [b / a for a, b in zip(times["branch"], times["inject"])]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"grid": f"{h}x{w}", "targets": n, "steps": steps,
            "branch_ms": 1e3 * statistics.median(times["branch"]), "inject_ms": 1e3 * statistics.median(times["inject"]),
            "inject_adds": statistics.median(ratios) - 1, "quartiles": [q[0] - 1, q[2] - 1],
            "injector_own_share": statistics.median(own)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="3 repeats and 2 Wan2.2 steps (a smoke run)")
    p.add_argument("--out", default=None, metavar="DIR")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    from mirage.backbones import load_backbone
    from mirage.backbones.wan22.testing import save_tiny_wan
    import warnings

    rows = []
    with torch.no_grad():
        tiny = load_backbone("tiny", None)
        rows.append({"backbone": "tiny (shipped)", **measure(tiny, tiny.latent_channels, 4, 16, 16, tiny.config.steps,
                                                              (64, 64), repeats)})
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wan = load_backbone("wan22", save_tiny_wan(Path(tmp) / "wan"), device="cpu")
            rows.append({"backbone": "wan22 (tiny-random)", **measure(wan, 48, 8, 44, 80, 2 if args.quick else 4,
                                                                       (704, 1280), repeats)})
    lines = [f"Inject against branch, {repeats} alternating passes, {args.threads} thread(s), load "
             f"{os.getloadavg()[0]:.1f} (a shared machine: the per-pass ratio is the steady figure).", "",
             "| backbone | grid | targets × steps | branch (ms) | inject (ms) | inject adds (median) | quartiles | injector's own calls |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {r['grid']} | {r['targets']} × {r['steps']} | {r['branch_ms']:.1f} | "
                     f"{r['inject_ms']:.1f} | {r['inject_adds']:+.1%} | {r['quartiles'][0]:+.1%} … {r['quartiles'][1]:+.1%} | "
                     f"{r['injector_own_share']:.2%} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/inject_cost.py " + " ".join(sys.argv[1:] if argv is None else argv)
        (out / "inject_cost.json").write_text(json.dumps({"format": "mirage.inject-cost", "version": 1,
                                                          "command": command, "repeats": repeats, "rows": rows}, indent=1))
        (out / "inject_cost.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
