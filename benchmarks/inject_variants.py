"""Which training-free injection to ship: variants of ``memory_input="inject"`` side by side.

    python benchmarks/inject_variants.py --threads 2 --out benchmarks/results/inject-variants/variants.json

The tiny model (shipped weights) generates tuning paths that are neither the training scenes
(seeds ≥ 1000) nor the held-out paths the goals are reported on (scenes 0–3): by default scenes
50–51 of both families × {pan-return, loop}, 65 frames, sampling seed 0. Every variant runs on
the same paths and seeds; the table gives the mean PSNR of the last 8 frames (the return), the
worst exact-return loss over the paths, the mean over all frames, and the model calls per chunk.

Variants (``PipelineConfig`` fields; docs/design.md §3.8):
- the stop level ``inject_until`` (inject at every sampling level ≥ it);
- a hard mask or a feathered one (``inject_feather``);
- offset-aware: skip cells whose read is off-centre by more than ``inject_max_offset`` cells;
- RePaint resampling (Lugmayr et al. 2022): at each injected level, ``k`` extra passes that
  re-noise the model's x̂₀ to the same level with fresh noise, inject again and re-denoise.
  It costs ``k`` model calls per injected step. It is measured here by wrapping the tiny
  model's Euler loop, not shipped unless it wins.
- with and without ``paste_reads`` and references given to the model;
- the sampler: the tiny model's denoiser run through Wan2.2's loop over diffusers' UniPC
  (``mirage.backbones.wan22.sampler.sample_flow``), with UniPC's corrector skipped on injected
  steps (as shipped) or kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FAMILIES = ("room", "courtyard")
PRESETS = ("pan-return", "loop")


def variants() -> list[tuple[str, str, dict, int]]:
    """(name, memory mode, PipelineConfig options, RePaint passes or the UniPC sampler)."""
    inj = {"memory_input": "inject"}
    out = [("none", "none", {}, 0), ("branch (trained)", "latent", {"memory_input": "branch"}, 0),
           ("both", "latent", {"memory_input": "both"}, 0)]
    for until in (0.0, 0.2, 0.4, 0.6, 0.8):
        out.append((f"inject, until {until}", "latent", {**inj, "inject_until": until}, 0))
    out += [
        ("inject, feather 1", "latent", {**inj, "inject_feather": 1}, 0),
        ("inject, max offset 0.25", "latent", {**inj, "inject_max_offset": 0.25}, 0),
        ("inject, max offset 0.1", "latent", {**inj, "inject_max_offset": 0.1}, 0),
        ("inject, no references", "latent", {**inj, "references": 0}, 0),
        ("inject, no paste", "latent", {**inj, "paste_reads": None}, 0),
        ("inject, RePaint 1 pass", "latent", inj, 1),
        ("inject, RePaint 2 passes", "latent", inj, 2),
        ("branch, UniPC", "latent", {"memory_input": "branch"}, "unipc"),
        ("inject, UniPC", "latent", inj, "unipc"),
        ("inject, UniPC keeping its corrector", "latent", inj, "unipc-corrector"),
    ]
    return out


class _UniPC:
    """Run the tiny model's x₀ denoiser through Wan2.2's sampler loop (diffusers' UniPC, flow
    sigmas, shift 1 as the tiny schedule) instead of its Euler loop, with the velocity
    v = (x_t − x̂₀)/σ; ``keep_corrector`` ignores the loop's skipping of UniPC's corrector on
    injected steps, to show what that skip is for."""

    def __init__(self, keep_corrector: bool):
        self.keep_corrector = keep_corrector

    def __enter__(self):
        import mirage.backbones.tiny.model as tiny
        from mirage.backbones.wan22.sampler import make_scheduler, sample_flow

        self.module, self.original = tiny, tiny.sample_euler
        keep = self.keep_corrector

        def sample_euler(denoise, x, times, callback=None, *, inject=None):
            scheduler = make_scheduler("unipc", 1.0)
            if keep:
                type(scheduler).disable_corrector = property(lambda self: [], lambda self, value: None)
            steps = len(times) - 1
            calls = iter(range(steps))

            def velocity(x_t, t):
                sigma = float(scheduler.sigmas[next(calls)])
                return (x_t - denoise(x_t, sigma)) / sigma

            try:
                return sample_flow(velocity, x, scheduler, steps, inject=inject)
            finally:
                if keep:
                    del type(scheduler).disable_corrector

        tiny.sample_euler = sample_euler
        return self

    def __exit__(self, *exc):
        self.module.sample_euler = self.original


class _RePaint:
    """Replace the tiny model's Euler loop with one that adds ``passes`` RePaint passes at every
    injected level (context manager; restores the loop on exit)."""

    def __init__(self, passes: int, seed: int = 1234):
        self.passes, self.seed, self.calls = passes, seed, 0

    def __enter__(self):
        import torch

        import mirage.backbones.tiny.model as tiny

        self.module, self.original = tiny, tiny.sample_euler
        generator = torch.Generator().manual_seed(self.seed)
        passes = self.passes

        def sample_euler(denoise, x, times, callback=None, *, inject=None):
            for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
                x_in = x if inject is None else inject(x, t)
                x0 = denoise(x_in, t)
                self.calls += 1
                if inject is not None and x_in is not x:  # an injected level: resample
                    for _ in range(passes):
                        eps = torch.randn(x.shape, generator=generator).to(x)
                        x0 = denoise(inject((1 - t) * x0 + t * eps, t), t)
                        self.calls += 1
                x = x0 if t_next == 0.0 else x_in + (t_next - t) * (x_in - x0) / t
            return x

        tiny.sample_euler = sample_euler
        return self

    def __exit__(self, *exc):
        self.module.sample_euler = self.original


def measure(backbone, cases, frames: int, seeds, chosen=None, progress=True) -> list[dict]:
    import contextlib

    from tqdm.auto import tqdm

    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth

    arms = [v for v in variants() if chosen is None or v[0] in chosen]
    gts = [prepare_ground_truth(backbone, case, frames, proxies=False) for case in cases]
    rows = []
    bar = tqdm(total=len(arms) * len(gts) * len(seeds), desc="inject variants", disable=not progress)
    for name, mode, options, passes in arms:
        for gt in gts:
            for seed in seeds:
                ctx = (_UniPC(passes == "unipc-corrector") if isinstance(passes, str)
                       else _RePaint(passes) if passes else contextlib.nullcontext())
                started = time.perf_counter()
                with ctx:
                    record, _ = evaluate_run(backbone, gt, mode, seed, proxies=False, options=options)
                psnr = record["psnr"]
                rows.append({"variant": name, "mode": mode, "options": options, "repaint_passes": passes,
                             "case": gt.case.id, "family": gt.case.family, "seed": seed,
                             "last8_psnr": sum(psnr[-8:]) / 8, "psnr_all": record["psnr_all"],
                             "exact_return_loss_db": (record["exact_return"] or {}).get("return_loss_db"),
                             "seconds": time.perf_counter() - started,
                             "model_calls": getattr(ctx, "calls", None)})
                bar.update(1)
    bar.close()
    return rows


def summarise(rows: list[dict], steps: int, chunks: int) -> list[dict]:
    import numpy as np

    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == name]
        losses = [r["exact_return_loss_db"] for r in rs if r["exact_return_loss_db"] is not None]
        fam = {f: float(np.mean([r["last8_psnr"] for r in rs if r["family"] == f])) for f in FAMILIES}
        calls = rs[0]["model_calls"]
        out.append({"variant": name, "last8_psnr": float(np.mean([r["last8_psnr"] for r in rs])),
                    **{f"last8_{f}": v for f, v in fam.items()},
                    "psnr_all": float(np.mean([r["psnr_all"] for r in rs])),
                    "worst_return_loss_db": max(losses) if losses else None,
                    "model_calls_per_chunk": calls / chunks if calls else steps,
                    "seconds_per_run": float(np.mean([r["seconds"] for r in rs]))})
    return out


def table(summary: list[dict]) -> str:
    lines = ["| variant | last 8 frames (dB) | room | courtyard | all frames (dB) | worst return loss (dB) | model calls / chunk | s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        loss = "–" if s["worst_return_loss_db"] is None else f"{s['worst_return_loss_db']:.2f}"
        lines.append(f"| {s['variant']} | {s['last8_psnr']:.2f} | {s['last8_room']:.2f} | {s['last8_courtyard']:.2f} | "
                     f"{s['psnr_all']:.2f} | {loss} | {s['model_calls_per_chunk']:.1f} | {s['seconds_per_run']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from mirage.backbones import load_backbone
    from mirage.evaluation.runs import _clean
    from mirage.evaluation.suite import Case
    from mirage.pipeline import chunk_plan

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", default="50,51", help="tuning scene seeds (not 0–3: the goals' held-out paths)")
    p.add_argument("--frames", type=int, default=65)
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", default=None, help="only these variant names, separated by ';'")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, metavar="FILE.json")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = load_backbone("tiny", None)
    scenes = [int(s) for s in args.scenes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = [Case(f, s, pr) for f in FAMILIES for s in scenes for pr in PRESETS]
    chosen = None if args.variants is None else set(args.variants.split(";"))
    started, load = time.perf_counter(), os.getloadavg()[0]
    with torch.no_grad():
        rows = measure(backbone, cases, args.frames, seeds, chosen, progress=not args.no_progress)
    chunks = len(chunk_plan(args.frames, backbone.temporal_stride, backbone.max_frames))
    summary = summarise(rows, backbone.config.steps, chunks)
    text = (f"Inject variants: {len(cases)} tuning paths (scenes {scenes}, both families, {', '.join(PRESETS)}), "
            f"{args.frames} frames, seeds {seeds}, shipped tiny weights, {backbone.config.steps} steps, "
            f"{args.threads} thread(s), {time.perf_counter() - started:.0f} s (load {load:.1f} at start; "
            f"the machine was shared, so the seconds are indicative only).\n\n" + table(summary))
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {"format": "mirage.inject-variants", "version": 1,
                  "command": "python benchmarks/inject_variants.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "cases": [c.id for c in cases], "frames": args.frames, "seeds": seeds,
                  "summary": summary, "runs": rows}
        out.write_text(json.dumps(_clean(result), indent=1))
        out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
