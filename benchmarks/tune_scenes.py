"""Revisit PSNR on *tuning* scenes: held out from training, and not the scenes the quick suite reports.

    python benchmarks/tune_scenes.py --weights runs/x/tiny.safetensors --modes latent,none
    python benchmarks/tune_scenes.py --min-valid-fraction 1.0      # latent memory: full cells only

Choices made while developing the tiny model (sampling steps, the latent memory's partial-cell
fraction, which training run to ship) are compared here, on scene seeds 50–52 of both families
(training used ≥ 1000, the quick suite uses 0–2), the quick suite's presets and 33 frames,
sampling seed 0, one torch thread. Prints the mean revisit PSNR per mode and the VAE ceiling on
the same frames, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, help="tiny weights (default: shipped)")
    p.add_argument("--modes", default="latent,none", help="memory modes, comma separated")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--shift", type=float, default=None, help="sampling schedule shift (default: the model's)")
    p.add_argument("--min-valid-fraction", type=float, default=None,
                   help="the latent memory's partial-cell fraction (default: the pipeline's)")
    p.add_argument("--paste-reads", default=None,
                   help="PipelineConfig.paste_reads: a number in [0, 0.5], or `off` (default: the pipeline's)")
    p.add_argument("--first-scene", type=int, default=50)
    p.add_argument("--scenes", type=int, default=3)
    args = p.parse_args()

    import mirage.pipeline.memory_modes as memory_modes
    from mirage.cli.options import parse_paste_reads
    from mirage.backbones.tiny import TinyBackbone
    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth
    from mirage.evaluation.suite import SuiteConfig, suite_cases

    if args.min_valid_fraction is not None:
        fraction = args.min_valid_fraction

        class Latent(memory_modes.LatentMode):  # what make_memory_mode("latent") builds
            def __init__(self, channels, **options):
                super().__init__(channels, min_valid_fraction=fraction, **options)

        memory_modes.LatentMode = Latent
    torch.set_num_threads(1)
    backbone = TinyBackbone.load(args.weights)
    if args.shift is not None:
        backbone.config = replace(backbone.config, schedule_shift=args.shift)
    modes = args.modes.split(",")
    options = {} if args.paste_reads is None else {"paste_reads": parse_paste_reads(args.paste_reads)}
    suite = SuiteConfig(first_scene=args.first_scene, scenes_per_family=args.scenes, seeds=(0,), proxies=False)
    psnr = {m: [] for m in modes}
    ceiling = []
    for case in suite_cases(suite):
        gt = prepare_ground_truth(backbone, case, suite.frames, proxies=False)
        for mode in modes:
            record, _ = evaluate_run(backbone, gt, mode, 0, steps=args.steps, proxies=False,
                                     options=options)
            if record["revisit_psnr"] is not None:
                psnr[mode].append(record["revisit_psnr"])
        if record["ceiling_revisit_psnr"] is not None:
            ceiling.append(record["ceiling_revisit_psnr"])
    out = {m: round(statistics.fmean(v), 3) for m, v in psnr.items() if v}
    out["ceiling"] = round(statistics.fmean(ceiling), 3) if ceiling else None
    print(json.dumps({"weights": args.weights or "shipped", "steps": args.steps, "shift": args.shift,
                      "min_valid_fraction": args.min_valid_fraction,
                      "paste_reads": args.paste_reads, "revisit_psnr": out}))


if __name__ == "__main__":
    main()
