"""Ablation: the RGB baseline with our fusion, beside latent and the reference RGB baseline.

    python benchmarks/rgb_fusion.py --out benchmarks/results/rgb-fusion

``mirage eval`` compares ``latent`` (voxel fusion with write confidences) against ``rgb`` as the
reference implementation builds it (every point appended forever). Part of latent's lead can
then come from the fusion rather than from storing latent tokens. This script runs the quick
suite's paths (3 held-out scenes per family × pan-return, loop, orbit, 33 frames) and seeds
0, 1, 2 with the shipped tiny weights in three modes, one path at a time so all three see the
same load:

- ``latent``: the default (voxel fusion, first frame trusted over generated frames);
- ``rgb``: the reference baseline (append);
- ``rgb+voxel``: the RGB point cloud with the same voxel fusion and confidences
  (``PipelineConfig(memory_mode="rgb", fusion="voxel")``, ``mirage generate --memory rgb
  --fusion voxel``).

Every figure is a mean ± std over the seeds (each seed first averaged over the paths), as in
``mirage eval``. Writes ``rgb_fusion.json`` and ``rgb_fusion.txt`` with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

MODES = (("latent", "latent", None), ("rgb", "rgb", None), ("rgb+voxel", "rgb", "voxel"))
COLUMNS = (("revisit PSNR (dB)", "revisit_psnr", "{:.2f}"), ("closed-loop PSNR (dB)", "closed_loop_psnr", "{:.2f}"),
           ("all-frame PSNR (dB)", "psnr_all", "{:.2f}"), ("cache bytes (end)", "cache_bytes_end", "{:,.0f}"),
           ("read + update share", "memory_share", "{:.1%}"))


def _mean_std(values: list[float], spec: str) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{spec.format(mean)} ± {spec.format(std)}"


def main(argv=None) -> int:
    from tqdm.auto import tqdm

    from mirage.backbones import load_backbone
    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth
    from mirage.evaluation.suite import SUITES, suite_cases

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    backbone = load_backbone("tiny")
    cases = suite_cases(SUITES["quick"])
    rows = []  # one per (case, mode, seed)
    t0 = time.monotonic()
    with torch.no_grad():
        for case in tqdm(cases, desc="paths"):
            gt = prepare_ground_truth(backbone, case, SUITES["quick"].frames, proxies=False)
            for seed in seeds:
                for label, mode, fusion in MODES:
                    record, _ = evaluate_run(backbone, gt, mode, seed, fusion=fusion, proxies=False)
                    rows.append({"case": case.id, "mode": label, "seed": seed, "fusion": record["fusion"],
                                 "revisit_psnr": record["revisit_psnr"],
                                 "closed_loop_psnr": record["closed_loop_psnr"],
                                 "psnr_all": record["psnr_all"],
                                 "cache_bytes_end": record["cache_bytes"][-1],
                                 "memory_share": record["timing"]["memory_share"]})
    seconds = time.monotonic() - t0

    def per_seed(label: str, key: str) -> list[float]:
        out = []
        for seed in seeds:
            values = [r[key] for r in rows if r["mode"] == label and r["seed"] == seed and r[key] is not None]
            out.append(statistics.mean(values))
        return out

    lines = [f"Quick-suite paths ({len(cases)}), seeds {seeds}, tiny backbone, shipped weights; "
             f"{len(rows)} runs in {seconds:.0f} s. Mean ± std over seeds.", "",
             "| mode | fusion | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for label, _, fusion in MODES:
        used = next(r["fusion"] for r in rows if r["mode"] == label)
        cells = [_mean_std(per_seed(label, key), spec) for _, key, spec in COLUMNS]
        lines.append(f"| {label} | {used} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rgb_fusion.json").write_text(json.dumps({"seeds": seeds, "rows": rows}, indent=1))
        (out / "rgb_fusion.txt").write_text(
            table + f"\n\n    python benchmarks/rgb_fusion.py --seeds {args.seeds} --out {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
