"""Tiny-VAE variants at a fixed wall-clock budget: held-out reconstruction PSNR per frame kind.

    python benchmarks/vae_variants.py --variants tau4,tau2 --seconds 480 --out DIR

Each variant trains the VAE stage of ``mirage train tiny`` (same batches, loss and lr; the lr
stays at its peak, as the budget, not a step count, ends the run) for ``--seconds`` of wall
time, fits the latent normalisation, then reconstructs the quick suite's 18 held-out paths
(33 frames) and reports the PSNR of decode(encode(ground truth)) on: all frames, keyframes
(every 4th frame), in-between frames (the rest) and the revisit frames of the eval suite. Run
variants side by side (one process each, ``--threads 1``) so they see the same machine load.
Training clips are rendered once and cached under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

VARIANTS = {
    "tau4": {},  # the shipped architecture
    "tau2": dict(temporal_stride=2, max_frames=9),
    "tau1": dict(temporal_stride=1, max_frames=5),
    "wide": dict(vae_widths=(32, 64, 192, 192), vae_blocks=3, vae_full_res_block=True),
    "dilated": dict(vae_blocks=3),
}


def run_variant(name: str, seconds: float, data: dict, batch: int, out: Path) -> dict:
    from mirage.backbones.tiny import TinyBackbone, TinyConfig
    from mirage.evaluation.metrics import revisit_frames
    from mirage.evaluation.runs import prepare_ground_truth
    from mirage.evaluation.suite import SUITES, suite_cases
    from mirage.train.loop import LoopConfig, train_loop
    from mirage.train.tiny import TinyTrainConfig
    from mirage.train.tiny_stages import fit_latent_norm, vae_batch, vae_loss

    cfg = TinyTrainConfig(model=TinyConfig(**VARIANTS[name]), vae_batch=batch)
    torch.manual_seed(0)
    backbone = TinyBackbone(cfg.model)
    t0 = time.monotonic()
    state = train_loop("vae", backbone, backbone.vae.parameters(), lambda i: vae_batch(data, cfg, i), vae_loss,
                       LoopConfig(10**6, lr=1e-3, checkpoint_every=10**6, max_seconds=seconds),
                       out / f"{name}.ckpt.safetensors", resume=False, progress=False, log=lambda *a: None)
    train_seconds = time.monotonic() - t0
    fit_latent_norm(backbone, data)
    backbone.eval()
    psnr = {"all": [], "keyframes": [], "in-between": [], "revisit": []}
    for case in suite_cases(SUITES["quick"]):
        gt = prepare_ground_truth(backbone, case, 33, proxies=False)  # the eval suite's ceiling
        p = gt.ceiling_psnr
        psnr["all"] += p
        psnr["keyframes"] += p[::4]
        psnr["in-between"] += [v for k, v in enumerate(p) if k % 4]
        psnr["revisit"] += [p[k] for k in revisit_frames(gt.cameras, 16)]
    return {"variant": name, "config": VARIANTS[name], "steps": state["step"],
            "train_seconds": round(train_seconds, 1),
            "params": sum(p.numel() for p in backbone.vae.parameters()),
            **{f"psnr_{k}": round(sum(v) / len(v), 3) for k, v in psnr.items()}}


def main() -> None:
    from mirage.files import load_safetensors, save_safetensors
    from mirage.train.tiny_data import DataConfig, render_clips

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="tau4,tau2", help=f"comma separated, of {sorted(VARIANTS)}")
    p.add_argument("--seconds", type=float, default=480.0, help="training wall time per variant")
    p.add_argument("--batch", type=int, default=4, help="VAE windows per step")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    names = args.variants.split(",")
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        p.error(f"unknown variants {bad}; choose from {sorted(VARIANTS)}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = out / "clips.safetensors"
    if not clips.exists():
        save_safetensors(clips, render_clips(DataConfig()), {})
    data = load_safetensors(clips, "training clips")[0]
    for name in names:
        row = run_variant(name, args.seconds, data, args.batch, out)
        print(json.dumps(row))
        (out / f"{name}.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
