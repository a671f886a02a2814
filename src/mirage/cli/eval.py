"""`mirage eval`: the A/B evaluation suite (latent vs rgb vs none) and its report.

    mirage eval --suite quick --out out/eval-quick
    mirage eval --suite full --out out/eval-full      # long; rerun the same command to resume

Writes into ``--out``: ``suite.json`` (what runs), ``runs/<id>.json`` + ``runs/<id>.npz`` (one
per scene × preset × mode × seed, written as each finishes; present ones are skipped, so an
interrupted suite resumes), then ``metrics.json``, ``report.md`` and the PNG plots. It prints the
main table and the exact-return table per family (its per-path table is in ``report.md`` and,
with the per-family one, under ``exact_return`` in ``metrics.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from mirage.errors import ConfigError

SUITE_FILE = "suite.json"


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="A/B evaluation of the memory modes against the world's ground truth")
    p.add_argument("--suite", default="quick", help="quick (≤ 10 min on 2 cores) | full (long, resumable)")
    p.add_argument("--backbone", default="tiny", help="tiny (default; the only one evaluated so far)")
    p.add_argument("--weights", metavar="PATH", help="weights file or folder (default: shipped)")
    p.add_argument("--out", default=None, metavar="DIR", help="default out/eval-<suite>")
    s = p.add_argument_group("overrides of the suite")
    s.add_argument("--scenes", type=int, default=None, metavar="N", help="scenes per family")
    s.add_argument("--first-scene", type=int, default=None, metavar="SEED", help="first scene seed (< 100)")
    s.add_argument("--presets", default=None, metavar="A,B", help="trajectory presets, comma separated")
    s.add_argument("--frames", type=int, default=None, help="frames per path (τ·k + 1)")
    s.add_argument("--seeds", default=None, metavar="0,1,2", help="sampling seeds, comma separated")
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default: the backbone's)")
    s.add_argument("--oracle-ablation", action="store_true", help="add latent with the world's exact update depth")
    s.add_argument("--rgb-far-field", action="store_true",
                   help="add rgb with an RGB far-field map (rgb+far-field): what the latent map adds over an RGB one")
    s.add_argument("--no-proxies", action="store_true", help="skip the OpenCV proxies")
    p.add_argument("--memory-dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="dtype of the latent memory's tokens (default float32)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: steadier timings on a shared CPU)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _int_list(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"`{name}` must be comma-separated ints but is {text!r}") from None


def build_suite(args):
    from mirage.evaluation.suite import SUITES

    if args.suite not in SUITES:
        raise ConfigError(f"`--suite` must be one of {sorted(SUITES)} but is {args.suite!r}")
    return SUITES[args.suite].with_overrides(
        scenes_per_family=args.scenes, first_scene=args.first_scene,
        presets=tuple(args.presets.split(",")) if args.presets else None, frames=args.frames,
        seeds=_int_list(args.seeds, "--seeds") if args.seeds else None, steps=args.steps,
        oracle_ablation=True if args.oracle_ablation else None, rgb_far_field=True if args.rgb_far_field else None,
        proxies=False if args.no_proxies else None)


def _load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def run(args) -> int:
    import os
    import sys
    import time
    from datetime import datetime, timezone

    import torch
    from tqdm.auto import tqdm

    from mirage.backbones import load_backbone
    from mirage.evaluation.plots import require_matplotlib, save_plots
    from mirage.evaluation.proxies import opencv_available
    from mirage.evaluation.report import aggregate, exact_return_family_table, main_table, save_report
    from mirage.evaluation.runs import (evaluate_run, load_run_frames, load_runs, prepare_ground_truth,
                                        run_id, save_run)
    from mirage.evaluation.suite import suite_cases, suite_modes
    from mirage.pipeline import check_frame_count

    started = time.perf_counter()
    load_start = _load_average()
    suite = build_suite(args)
    require_matplotlib()  # fail before any work when the [eval] extra is missing
    if args.backbone != "tiny":
        raise ConfigError(f"`--backbone` must be 'tiny' for `mirage eval` (the suite renders at the "
                          f"backbone's training size) but is {args.backbone!r}")
    if args.threads < 1:
        raise ConfigError(f"`--threads` must be ≥ 1 but is {args.threads}")
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone, args.weights)
    check_frame_count(suite.frames, backbone.temporal_stride, "--frames")
    out = Path(args.out or f"out/eval-{suite.name}")
    identity = {"suite": suite.to_dict(), "backbone": args.backbone, "weights": str(args.weights or "shipped")}
    if args.memory_dtype != "float32":  # float32 results keep the identity they always had
        identity["memory_dtype"] = args.memory_dtype
    suite_path = out / SUITE_FILE
    if suite_path.exists():
        previous = json.loads(suite_path.read_text())
        if previous != json.loads(json.dumps(identity)):
            raise ConfigError(f"`--out` {str(out)!r} holds results of a different suite or backbone "
                              f"({suite_path}); use another `--out` or delete it")
    out.mkdir(parents=True, exist_ok=True)
    suite_path.write_text(json.dumps(identity, indent=1))
    runs_dir = out / "runs"
    proxies = suite.proxies and opencv_available()
    if suite.proxies and not proxies:
        print("mirage eval: opencv not installed, the proxies are not computed "
              "(pip install 'mirage-world[eval]')", file=sys.stderr)

    cases, modes = suite_cases(suite), suite_modes(suite)
    expected = [(c, m, d, s, f) for c in cases for (m, d, f) in modes for s in suite.seeds]
    done = {r["id"] for r in load_runs(runs_dir)}
    todo = [job for job in expected if run_id(*job) not in done]
    reused = len(expected) - len(todo)
    bar = tqdm(total=len(todo), desc=f"eval {suite.name}", disable=args.no_progress)
    for case in cases:
        jobs = [job for job in todo if job[0] == case]
        if not jobs:
            continue
        gt = prepare_ground_truth(backbone, case, suite.frames, proxies=proxies)
        for _, mode, depth, seed, far_field in jobs:
            record, frames = evaluate_run(backbone, gt, mode, seed, depth=depth, far_field=far_field,
                                          steps=suite.steps, proxies=suite.proxies,
                                          options={"memory_dtype": args.memory_dtype})
            save_run(runs_dir, record, frames)
            bar.update(1)
    bar.close()

    wanted = {run_id(*job) for job in expected}
    records = [r for r in load_runs(runs_dir) if r["id"] in wanted]
    metrics = aggregate(records)
    info = {
        "suite": suite.to_dict(), "backbone": args.backbone, "weights": str(args.weights or "shipped"),
        "size": f"{backbone.config.height}x{backbone.config.width}",
        "steps": suite.steps or backbone.config.steps,
        "command": "mirage " + " ".join(sys.argv[1:]) if sys.argv and "mirage" in sys.argv[0] else "mirage eval",
        "wall_seconds": time.perf_counter() - started, "runs_done_now": len(todo), "runs_reused": reused,
        "threads": args.threads, "cpus": os.cpu_count(), "load_start": load_start, "load_end": _load_average(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "peak_memory_kind": records[0].get("peak_memory_kind") if records else None,
        "proxies_note": None if proxies else ("not computed (opencv not installed)" if suite.proxies
                                              else "not computed (--no-proxies)"),
    }
    contact_case = next((c for c in cases if c.preset == "pan-return"), cases[0])
    seed = suite.seeds[0]
    frames = {m: load_run_frames(runs_dir, run_id(contact_case, m, "tiny", seed)) for m in ("latent", "rgb", "none")}
    contact = {"ground_truth": frames["latent"]["ground_truth"], "indices": frames["latent"]["indices"],
               "videos": {m: f["video"] for m, f in frames.items()},
               "title": f"{contact_case.id}, seed {seed}: ground truth | latent | rgb | none"}
    save_plots(out, metrics, contact)
    info["wall_seconds"] = time.perf_counter() - started
    save_report(out, metrics, info)
    print(main_table(metrics))
    print("\nExact return (last frame at the start pose) per family; per path in report.md:\n")
    print(exact_return_family_table(metrics["exact_return"]))
    print(f"\nwrote {out / 'report.md'}, {out / 'metrics.json'} and plots "
          f"({len(todo)} runs now, {reused} reused, {info['wall_seconds']:.0f} s)")
    return 0
