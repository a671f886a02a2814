"""How well the tiny VAE decodes keyframes: from the pair (latent k−1, latent k), or from latent k
alone (as frame 0 always is, and as ``TinyVAE.decode_video`` now decodes every keyframe).

    python benchmarks/keyframe_decode.py --out benchmarks/results/keyframe-decode

Ground truth only: each held-out path (scene seeds 0–3 of both families × pan-return, loop,
orbit, forward-back, 33 frames) is encoded, and its keyframes 4k (k ≥ 1) are decoded both ways
with the shipped weights; the PSNR against the rendered frames is averaged per path.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

PRESETS = ("pan-return", "loop", "orbit", "forward-back")


def measure(backbone, families=("room", "courtyard"), scenes=range(4), presets=PRESETS, frames=33) -> list[dict]:
    from mirage.evaluation.metrics import frame_psnr
    from mirage.evaluation.runs import prepare_ground_truth
    from mirage.evaluation.suite import Case

    vae, tau = backbone.vae, backbone.temporal_stride
    rows = []
    for family in families:
        for scene in scenes:
            for preset in presets:
                gt = prepare_ground_truth(backbone, Case(family, scene, preset), frames, proxies=False)
                z = vae.denormalize(gt.latents.permute(1, 0, 2, 3))  # (T, C, h, w)
                with torch.no_grad():
                    pair = vae.decode_groups(torch.cat([z[:1], z[:-1]]), z)[1:, -3:].clamp(-1, 1)
                    alone = vae.decode_groups(z, z)[1:, -3:].clamp(-1, 1)
                keys = gt.rgb[tau::tau]
                rows.append({"family": family, "scene": scene, "preset": preset,
                             "pair_psnr": statistics.fmean(frame_psnr(pair, keys)),
                             "alone_psnr": statistics.fmean(frame_psnr(alone, keys))})
    return rows


def main(argv=None) -> int:
    from mirage.backbones import load_backbone

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, help="tiny weights (default: shipped)")
    p.add_argument("--out", default=None, metavar="DIR", help="write summary.json and README.md here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    rows = measure(load_backbone("tiny", args.weights))
    gain = [r["alone_psnr"] - r["pair_psnr"] for r in rows]
    summary = {"paths": len(rows), "pair_psnr": statistics.fmean(r["pair_psnr"] for r in rows),
               "alone_psnr": statistics.fmean(r["alone_psnr"] for r in rows),
               "gain_db": {"mean": statistics.fmean(gain), "min": min(gain), "max": max(gain)},
               "paths_better_alone": sum(g > 0 for g in gain)}
    lines = ["| family | scene | path | keyframe PSNR, from the pair (dB) | from its latent alone (dB) | gain |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['scene']} | {r['preset']} | {r['pair_psnr']:.2f} | {r['alone_psnr']:.2f} | "
              f"{r['alone_psnr'] - r['pair_psnr']:+.2f} |" for r in rows]
    head = (f"Keyframes of {len(rows)} held-out ground-truth paths (33 frames, shipped weights): "
            f"{summary['pair_psnr']:.2f} dB decoded from the pair, {summary['alone_psnr']:.2f} dB from the "
            f"latent alone ({summary['gain_db']['mean']:+.2f} dB; {summary['paths_better_alone']} of "
            f"{len(rows)} paths better).")
    print(head + "\n\n" + "\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"command": "python benchmarks/keyframe_decode.py --out "
                                                      + str(args.out), **summary, "rows": rows}, indent=1))
        (out / "README.md").write_text("# Keyframe decoding\n\n" + head + "\n\nReproduce: `python "
                                       f"benchmarks/keyframe_decode.py --out {args.out}`\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
