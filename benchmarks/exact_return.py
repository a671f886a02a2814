"""The exact return per path: the frame at the start pose against ground truth, and the gap closed.

    python benchmarks/exact_return.py --threads 1 --out benchmarks/results/exact-return/before.json
    python benchmarks/exact_return.py --weights path/to/new.safetensors --before benchmarks/results/exact-return/before.json

For every held-out path (scene seeds < 100) that ends exactly on its start pose: the PSNR of the
last generated frame against ground truth (return), the return loss (decoded first frame −
return, in dB) and the gap closed, (return − none) / (decoded first − none), for each memory mode
(``mirage.evaluation.metrics.exact_return``; issue 20). Defaults: seeds 0–3 of both families ×
{pan-return, loop}, 65 frames, shipped tiny weights, sampling seed 0, modes latent / rgb / none
(``--modes`` takes ``mirage eval``'s labels: ``rgb+far-field`` is rgb with an RGB far-field map).
Runs go through ``mirage.evaluation`` (``prepare_ground_truth``, ``evaluate_run``) and the tables
are ``mirage eval``'s (``exact_return_summary`` and its two tables), so figures match a suite's.

Importable: :func:`measure` returns the run records, :func:`main` takes an argv list. ``--out``
writes JSON (the per-family and per-path summary plus each run's per-frame PSNR) and, beside it,
the tables as ``.md``; ``--before`` adds a before/after table against an earlier ``--out`` file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FAMILIES = ("courtyard", "room")
PRESETS = ("pan-return", "loop")
MODES = ("latent", "rgb", "none")
RECORD_KEYS = ("id", "case", "family", "scene", "preset", "mode", "seed", "frames", "steps",
               "exact_return", "revisit_psnr", "closed_loop_psnr", "psnr", "ceiling_psnr")


def default_cases(families=FAMILIES, scenes=(0, 1, 2, 3), presets=PRESETS) -> list:
    """(family, scene, preset) cases, as :class:`mirage.evaluation.suite.Case`."""
    from mirage.evaluation.suite import Case

    return [Case(f, s, p) for f in families for s in scenes for p in presets]


def measure(backbone, cases, frames: int = 65, *, seeds=(0,), modes=MODES, steps: int | None = None,
            progress: bool = True) -> list[dict]:
    """Run every case × mode × seed (ground truth rendered once per case); the run records of
    :func:`mirage.evaluation.runs.evaluate_run`, without proxies."""
    from tqdm.auto import tqdm

    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth
    from mirage.evaluation.suite import parse_mode_label

    arms = [parse_mode_label(label) for label in modes]
    records = []
    bar = tqdm(total=len(cases) * len(modes) * len(seeds), desc="exact return", disable=not progress)
    for case in cases:
        gt = prepare_ground_truth(backbone, case, frames, proxies=False)
        for mode, depth, far_field, memory_input, align in arms:
            for seed in seeds:
                records.append(evaluate_run(backbone, gt, mode, seed, depth=depth, far_field=far_field, steps=steps,
                                            proxies=False, memory_input=memory_input,
                                            options=None if align else {"depth_align": False})[0])
                bar.update(1)
    bar.close()
    return records


def compare_table(before: dict, after: dict, mode: str = "latent") -> str:
    """Markdown: per path, ``mode``'s return loss and gap closed before and after (two outputs
    of this script's JSON); paths present in both only."""
    def rows(result):
        return {(r["family"], r["scene"], r["preset"], r["seed"]): r
                for r in result["exact_return"]["paths"] if r["mode"] == mode}

    old, new = rows(before), rows(after)
    lines = [f"| family | scene | path | seed | {mode} loss before (dB) | after (dB) | gap closed before | after |",
             "|---|---|---|---|---|---|---|---|"]

    def num(v, spec):
        return "–" if v is None else format(v, spec)

    for key in [k for k in new if k in old]:
        a, b = old[key], new[key]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {num(a['return_loss_db'], '.2f')} | "
                     f"{num(b['return_loss_db'], '.2f')} | {num(a['gap_closed'], '.1%')} | {num(b['gap_closed'], '.1%')} |")
    return "\n".join(lines)


def _list(text: str, cast=str) -> tuple:
    return tuple(cast(v) for v in text.split(",") if v)


def main(argv=None) -> int:
    import torch

    from mirage.backbones import load_backbone
    from mirage.evaluation.report import exact_return_family_table, exact_return_path_table, exact_return_summary
    from mirage.evaluation.runs import _clean
    from mirage.errors import ConfigError
    from mirage.evaluation.suite import HELD_OUT_LIMIT, parse_mode_label
    from mirage.pipeline import check_frame_count

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=None, metavar="PATH", help="tiny weights file or folder (default: shipped)")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--scenes", default="0,1,2,3", metavar="0,1,…", help=f"scene seeds (held out: < {HELD_OUT_LIMIT})")
    p.add_argument("--presets", default=",".join(PRESETS), help="trajectory presets (closed ones return exactly)")
    p.add_argument("--frames", type=int, default=65)
    p.add_argument("--seeds", default="0", help="sampling seeds")
    p.add_argument("--modes", default=",".join(MODES),
                   help="memory modes, as mirage eval labels them (e.g. rgb+far-field: rgb with an RGB far-field map)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the backbone's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=None, metavar="FILE.json", help="write JSON here and the tables to FILE.md")
    p.add_argument("--before", default=None, metavar="FILE.json", help="an earlier --out: add a before/after table")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    scenes = _list(args.scenes, int)
    if not scenes or min(scenes) < 0 or max(scenes) >= HELD_OUT_LIMIT:
        p.error(f"`--scenes` must be held-out seeds in [0, {HELD_OUT_LIMIT}) but are {args.scenes!r}")
    torch.set_num_threads(args.threads)
    backbone = load_backbone("tiny", args.weights)
    check_frame_count(args.frames, backbone.temporal_stride, "--frames")
    cases = default_cases(_list(args.families), scenes, _list(args.presets))
    seeds, modes = _list(args.seeds, int), _list(args.modes)
    try:
        for label in modes:
            parse_mode_label(label)
    except ConfigError as e:
        p.error(str(e))
    started, load = time.perf_counter(), os.getloadavg()[0]
    with torch.no_grad():
        records = measure(backbone, cases, args.frames, seeds=seeds, modes=modes, steps=args.steps,
                          progress=not args.no_progress)
    summary = exact_return_summary(records)
    header = (f"Exact return: {len(cases)} held-out paths × {len(modes)} modes × seeds {list(seeds)}, "
              f"{args.frames} frames, tiny weights {args.weights or 'shipped'}, "
              f"{records[0]['steps']} steps, {args.threads} torch thread(s), "
              f"{time.perf_counter() - started:.0f} s (load {load:.1f} at start).")
    text = "\n\n".join([header, "Per family (mean ± std over seeds; range over paths):",
                        exact_return_family_table(summary), "Per path:", exact_return_path_table(summary)])
    if args.before:
        before = json.loads(Path(args.before).read_text())
        text += f"\n\nBefore ({args.before}) and after (this run):\n\n" + compare_table(before, {"exact_return": summary})
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        result = {"format": "mirage.exact-return", "version": 1,
                  "command": "python benchmarks/exact_return.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "weights": str(args.weights or "shipped"), "frames": args.frames, "seeds": list(seeds),
                  "modes": list(modes), "cases": [c.id for c in cases], "exact_return": summary,
                  "runs": [{k: r.get(k) for k in RECORD_KEYS} for r in records]}
        out.write_text(json.dumps(_clean(result), indent=1))
        out.with_suffix(".md").write_text(text + "\n")
        print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
