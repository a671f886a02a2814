"""The training-free memory input on held-out paths: inject and both against the trained branch.

    python benchmarks/memory_input.py --threads 2 --out benchmarks/results/memory-input/held_out.json

Held-out scenes 0–3 of both families × {pan-return, loop}, 65 frames, shipped tiny weights,
sampling seed 0 (``benchmarks/exact_return.py``'s paths and runs), in the arms ``latent``
(the trained branch, the tiny model's default), ``latent+inject`` (the model is given no read;
it is injected into x_t), ``latent+both``, ``rgb``, ``rgb+inject`` and ``none``. Reported, with
the goals of the memory-input work beside them:

- the mean PSNR of the last 8 frames (the return) per arm, overall and per family;
- inject − branch and inject − none (means), and per path both − branch (last 8 frames);
- the exact-return loss on every path (decoded first frame − return, dB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exact_return import default_cases, measure  # noqa: E402

ARMS = ("latent", "latent+inject", "latent+both", "rgb", "rgb+inject", "none")


def last8(record: dict) -> float:
    return statistics.fmean(record["psnr"][-8:])


def summarise(records: list[dict]) -> dict:
    by_arm = {}
    for r in records:
        by_arm.setdefault(r["mode"], []).append(r)
    paths = sorted({(r["family"], r["scene"], r["preset"], r["seed"]) for r in records})
    per_path = []
    for key in paths:
        row = {"family": key[0], "scene": key[1], "preset": key[2], "seed": key[3]}
        for arm, rs in by_arm.items():
            r = next(r for r in rs if (r["family"], r["scene"], r["preset"], r["seed"]) == key)
            row[arm] = {"last8": last8(r), "return_loss_db": (r["exact_return"] or {}).get("return_loss_db")}
        per_path.append(row)
    arms = {arm: {"last8": statistics.fmean(last8(r) for r in rs),
                  **{f"last8_{f}": statistics.fmean(last8(r) for r in rs if r["family"] == f)
                     for f in sorted({r["family"] for r in rs})},
                  "worst_return_loss_db": max((r["exact_return"] or {}).get("return_loss_db", float("-inf")) for r in rs)}
            for arm, rs in by_arm.items()}
    goals = {}
    if {"latent", "latent+inject", "none"} <= set(arms):
        goals["inject_minus_branch_db"] = arms["latent+inject"]["last8"] - arms["latent"]["last8"]
        goals["inject_minus_none_db"] = arms["latent+inject"]["last8"] - arms["none"]["last8"]
        goals["inject_worst_return_loss_db"] = arms["latent+inject"]["worst_return_loss_db"]
    if {"latent", "latent+both"} <= set(arms):
        goals["both_minus_branch_worst_path_db"] = min(p["latent+both"]["last8"] - p["latent"]["last8"] for p in per_path)
    if {"rgb", "rgb+inject"} <= set(arms):
        goals["rgb_inject_minus_rgb_db"] = arms["rgb+inject"]["last8"] - arms["rgb"]["last8"]
    return {"arms": arms, "goals": goals, "paths": per_path}


def tables(summary: dict) -> str:
    arms = list(summary["arms"])
    fams = sorted(k[6:] for k in summary["arms"][arms[0]] if k.startswith("last8_"))
    lines = ["| arm | last 8 frames (dB) | " + " | ".join(fams) + " | worst exact-return loss (dB) |",
             "|---|---|" + "---|" * len(fams) + "---|"]
    for arm in arms:
        a = summary["arms"][arm]
        lines.append(f"| {arm} | {a['last8']:.2f} | " + " | ".join(f"{a['last8_' + f]:.2f}" for f in fams)
                     + f" | {a['worst_return_loss_db']:.2f} |")
    g = summary["goals"]
    goal_lines = ["", "| goal | measured | target |", "|---|---|---|"]
    targets = {"inject_minus_branch_db": ("inject − branch, last 8 (mean)", "≥ −0.3 dB"),
               "inject_minus_none_db": ("inject − none, last 8 (mean)", "≥ +2.5 dB"),
               "inject_worst_return_loss_db": ("inject, worst exact-return loss", "≤ 0.5 dB"),
               "both_minus_branch_worst_path_db": ("both − branch, last 8, worst path", "≥ −0.1 dB"),
               "rgb_inject_minus_rgb_db": ("rgb+inject − rgb, last 8 (mean)", "(the RGB baseline's own gain)")}
    for key, (name, target) in targets.items():
        if key in g:
            goal_lines.append(f"| {name} | {g[key]:+.2f} dB | {target} |")
    path_lines = ["", "| family | scene | path | " + " | ".join(f"{a} last 8 / return loss" for a in arms) + " |",
                  "|---|---|---|" + "---|" * len(arms)]
    for p in summary["paths"]:
        path_lines.append(f"| {p['family']} | {p['scene']} | {p['preset']} | " + " | ".join(
            f"{p[a]['last8']:.2f} / {p[a]['return_loss_db']:.2f}" for a in arms) + " |")
    return "\n".join(lines + goal_lines + path_lines)


def main(argv=None) -> int:
    import torch

    from mirage.backbones import load_backbone
    from mirage.evaluation.runs import _clean
    from mirage.evaluation.suite import parse_mode_label

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenes", default="0,1,2,3")
    p.add_argument("--frames", type=int, default=65)
    p.add_argument("--seeds", default="0")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, metavar="FILE.json")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    arms = args.arms.split(",")
    for arm in arms:
        parse_mode_label(arm)
    backbone = load_backbone("tiny", None)
    cases = default_cases(scenes=tuple(int(s) for s in args.scenes.split(",")))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    started, load = time.perf_counter(), os.getloadavg()[0]
    with torch.no_grad():
        records = measure(backbone, cases, args.frames, seeds=seeds, modes=arms, progress=not args.no_progress)
    summary = summarise(records)
    text = (f"Memory input on {len(cases)} held-out paths (scenes {args.scenes}, both families, pan-return and loop), "
            f"{args.frames} frames, seeds {list(seeds)}, shipped tiny weights, {time.perf_counter() - started:.0f} s "
            f"(load {load:.1f} at start).\n\n" + tables(summary))
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {"format": "mirage.memory-input", "version": 1,
                  "command": "python benchmarks/memory_input.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  **summary}
        out.write_text(json.dumps(_clean(result), indent=1))
        out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
