"""Where the tiny model's revisit PSNR is lost: a decomposition on revisit key frames.

    python benchmarks/revisit_bound.py --out benchmarks/results/revisit-bound

Issue 4 asks for latent revisit PSNR ≥ none + 6 dB. This script measures, on the frames where
the camera comes back (``mirage.evaluation.metrics.revisit_frames``) and that are latent-aligned
(frame τk, so each has its own latent), how far each link of the chain falls below the VAE's
own reconstruction (the ceiling):

- ``generated``: the latent-mode pipeline's output (tiny update depth, built-in masker);
- ``decoded read``: what a perfect copier of the memory would give: the pipeline's memory read
  for those frames decoded, the generated latent where the read is empty;
- ``decoded read, oracle update depth``: the same with the world's exact depth for the updates;
- ``GT memory (frames 0..end of chunk 1)``: a memory written with the VAE latents of the
  *ground-truth* latent frames of the first chunk and exact depth, read at the revisit frames
  and decoded, the generated latent where the read is empty, as for ``decoded read`` (what the
  read would give if the first chunk had been generated perfectly);
- ``GT memory (frame 0 only)``: the same with the first frame alone;
- ``none``: the no-memory pipeline;
- ``ceiling``: decode(encode(ground truth)).

All runs use the shipped tiny weights, held-out scenes (seeds < 100), sampling seed 0 and
``torch.set_num_threads(1)``. Means are over every (case, revisit key frame) pair. Writes
``revisit_bound.json`` and ``revisit_bound.txt`` with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

ROWS = ("generated", "decoded read", "decoded read, oracle update depth",
        "GT memory (frames 0..end of chunk 1)", "GT memory (frame 0 only)", "none", "ceiling")


def _decode_mixed(backbone, latents, read, mask):
    """Decode (C, T, h, w) latents with ``read`` substituted where ``mask``: (F, 3, H, W)."""
    mixed = torch.where(mask[None], read, latents.float())
    return backbone.decode(mixed[None])[0].permute(1, 0, 2, 3).clamp(-1, 1)


def measure_case(backbone, case, frames: int) -> dict[str, list[float]] | None:
    from mirage.evaluation.metrics import frame_psnr, revisit_frames
    from mirage.evaluation.runs import prepare_ground_truth
    from mirage.memory import LatentSpatialMemory
    from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, TinyDepthEstimator, generate
    from mirage.world.oracle import OracleDepthEstimator
    from mirage.pipeline.memory_modes import GRID_PLANARITY_TOL

    tau = backbone.temporal_stride
    gt = prepare_ground_truth(backbone, case, frames, proxies=False)
    depth = torch.where(gt.exclude, torch.full_like(gt.depth, float("inf")), gt.depth).float()
    out = {name: [] for name in ROWS}

    def run(mode, estimator):
        config = PipelineConfig(memory_mode=mode, seed=0, progress=False)
        return generate(backbone, gt.rgb[0], gt.cameras, config, depth_estimator=estimator,
                        masker=LatentDisagreementMasker(), first_depth=depth[0],
                        first_exclude=gt.exclude[0])

    latent = run("latent", TinyDepthEstimator(backbone))
    keys = [k for k in revisit_frames(gt.cameras, latent.plan[0].end_frame) if k % tau == 0]
    if not keys:
        return None
    oracle = run("latent", OracleDepthEstimator(gt.scene, 16))
    none = run("none", TinyDepthEstimator(backbone))

    def psnr(video):
        values = frame_psnr(video.float().clamp(-1, 1), gt.rgb)
        return [values[k] for k in keys]

    out["generated"] = psnr(latent.video)
    out["decoded read"] = psnr(_decode_mixed(backbone, latent.latents, latent.read_latents, latent.read_mask))
    out["decoded read, oracle update depth"] = psnr(
        _decode_mixed(backbone, oracle.latents, oracle.read_latents, oracle.read_mask))
    out["none"] = psnr(none.video)
    out["ceiling"] = [gt.ceiling_psnr[k] for k in keys]
    chunk1 = list(range(0, latent.plan[0].end_frame + 1, tau))
    for name, written in (("GT memory (frames 0..end of chunk 1)", chunk1), ("GT memory (frame 0 only)", [0])):
        memory = LatentSpatialMemory(backbone.latent_channels)
        memory.write(gt.latents[:, [k // tau for k in written]].permute(1, 0, 2, 3), depth[written],
                     gt.cameras[written], exclude=gt.exclude[written], frame_ids=written,
                     planarity_tol=GRID_PLANARITY_TOL)
        read = memory.read(gt.cameras[keys], gt.latents.shape[-2:])
        full = torch.zeros_like(gt.latents)
        mask = torch.zeros(gt.latents.shape[1:], dtype=torch.bool)
        for i, k in enumerate(keys):
            full[:, k // tau], mask[k // tau] = read.features[i], read.mask[i]
        out[name] = psnr(_decode_mixed(backbone, latent.latents, full, mask))  # empty cells: generated
    return out


def main(argv=None) -> int:
    from tqdm.auto import tqdm

    from mirage.backbones import load_backbone
    from mirage.evaluation.suite import Case

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", type=int, default=3, help="scenes per family (seeds 0..N−1; default 3)")
    p.add_argument("--presets", default="pan-return,loop,orbit")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    backbone = load_backbone("tiny")
    cases = [Case(f, s, preset) for f in ("room", "courtyard") for s in range(args.scenes)
             for preset in args.presets.split(",")]
    families = ("room", "courtyard")
    values = {f: {name: [] for name in ROWS} for f in families}
    used = 0
    with torch.no_grad():
        for case in tqdm(cases, desc="cases"):
            result = measure_case(backbone, case, args.frames)
            if result is None:
                continue
            used += 1
            for name in ROWS:
                values[case.family][name] += result[name]
    both = {name: values["room"][name] + values["courtyard"][name] for name in ROWS}
    lines = [f"Revisit key frames (τk): {len(both['ceiling'])} frames from {used} of {len(cases)} cases"
             + ("" if used == len(cases) else " (the others have no revisit key frame)")
             + "; tiny backbone, shipped weights, seed 0. Columns: PSNR (dB), and in brackets the "
             "distance below the ceiling.",
             "", "| chain link | all | room | courtyard |", "|---|---|---|---|"]

    def cell(v: dict, name: str) -> str:
        if not v["ceiling"]:
            return "–"
        mean = statistics.mean(v[name])
        return f"{mean:.2f} ({statistics.mean(v['ceiling']) - mean:.2f})"

    for name in ROWS:
        lines.append(f"| {name} | {cell(both, name)} | {cell(values['room'], name)} | "
                     f"{cell(values['courtyard'], name)} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "revisit_bound.json").write_text(json.dumps(
            {"cases": [c._asdict() for c in cases], "frames": args.frames, "psnr_by_family": values},
            indent=1))
        (out / "revisit_bound.txt").write_text(
            table + f"\n\n    python benchmarks/revisit_bound.py --scenes {args.scenes} "
                    f"--presets {args.presets} --frames {args.frames} --out {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
