"""Revisit PSNR on *tuning* scenes: held out from training, and not the scenes the quick suite reports.

    python benchmarks/tune_scenes.py --weights runs/x/tiny.safetensors --modes latent,none
    python benchmarks/tune_scenes.py --min-valid-fraction 1.0      # latent memory: full cells only
    python benchmarks/tune_scenes.py --frames 65 --presets pan-return,loop --modes latent  # returns

Choices made while developing the tiny model (sampling steps, the latent memory's partial-cell
fraction, which training run to ship) are compared here, on scene seeds 50–52 of both families
(training used ≥ 1000, the quick suite uses 0–2), the quick suite's presets and 33 frames,
sampling seed 0, one torch thread. Prints the mean revisit PSNR per mode and the VAE ceiling on
the same frames, as JSON; and per family and mode, the mean PSNR of the last 8 frames and, on
paths that end at their start pose, the exact-return loss (decoded first frame − return).
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
    p.add_argument("--frames", type=int, default=33, help="frames per path (τ·k + 1)")
    p.add_argument("--presets", default=None, help="trajectory presets, comma separated (default: the quick suite's)")
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
    presets = {} if args.presets is None else {"presets": tuple(args.presets.split(","))}
    suite = SuiteConfig(first_scene=args.first_scene, scenes_per_family=args.scenes, seeds=(0,), proxies=False,
                        frames=args.frames, **presets)
    psnr = {m: [] for m in modes}
    ceiling = []
    last8 = {f: {m: [] for m in modes + ["ceiling"]} for f in suite.families}
    loss = {f: {m: [] for m in modes} for f in suite.families}
    for case in suite_cases(suite):
        gt = prepare_ground_truth(backbone, case, suite.frames, proxies=False)
        for mode in modes:
            record, _ = evaluate_run(backbone, gt, mode, 0, steps=args.steps, proxies=False,
                                     options=options)
            if record["revisit_psnr"] is not None:
                psnr[mode].append(record["revisit_psnr"])
            last8[case.family][mode].append(statistics.fmean(record["psnr"][-8:]))
            if record["exact_return"] is not None:
                loss[case.family][mode].append(record["exact_return"]["return_loss_db"])
        last8[case.family]["ceiling"].append(statistics.fmean(record["ceiling_psnr"][-8:]))
        if record["ceiling_revisit_psnr"] is not None:
            ceiling.append(record["ceiling_revisit_psnr"])
    out = {m: round(statistics.fmean(v), 3) for m, v in psnr.items() if v}
    out["ceiling"] = round(statistics.fmean(ceiling), 3) if ceiling else None
    print(json.dumps({"weights": args.weights or "shipped", "steps": args.steps, "shift": args.shift,
                      "min_valid_fraction": args.min_valid_fraction,
                      "paste_reads": args.paste_reads, "frames": args.frames, "revisit_psnr": out,
                      "last8_psnr": {f: {m: round(statistics.fmean(v), 3) for m, v in by.items() if v}
                                     for f, by in last8.items()},
                      "return_loss_db": {f: {m: round(statistics.fmean(v), 3) for m, v in by.items() if v}
                                         for f, by in loss.items()}}))


if __name__ == "__main__":
    main()
