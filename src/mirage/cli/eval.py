"""`mirage eval`: the A/B evaluation suite (latent vs rgb vs none) and its report.

    mirage eval --suite quick --out out/eval-quick
    mirage eval --suite full --out out/eval-full      # long; rerun the same command to resume
    torchrun --nproc_per_node 8 -m mirage eval --suite full --out out/eval-full   # 8 ranks

Writes into ``--out``: ``suite.json`` (what runs), ``runs/<id>.json`` + ``runs/<id>.npz`` (one
per scene × preset × mode × seed, written as each finishes; present ones are skipped, so an
interrupted suite resumes), then ``metrics.json``, ``report.md`` and the PNG plots. It prints the
main table and the exact-return table per family (its per-path table is in ``report.md`` and,
with the per-family one, under ``exact_return`` in ``metrics.json``).

Under ``torchrun`` / ``accelerate launch`` the paths still to run are split over the ranks (one
device each; see :mod:`mirage.cli.ranks`); each rank writes its runs, and rank 0 merges them
into the report once every rank is done.
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
    s.add_argument("--inject-arms", action="store_true",
                   help="add latent+inject and rgb+inject: the training-free memory input beside the trained branch")
    s.add_argument("--memory-input", default=None, metavar="MODE",
                   help="branch | inject | both: the memory input of the latent and rgb arms (default: the backbone's)")
    s.add_argument("--inject-until", type=float, default=None, metavar="LEVEL",
                   help="inject at every sampling noise level ≥ LEVEL in [0, 1] (arms that inject)")
    s.add_argument("--relative-ablation", action="store_true",
                   help="add latent with oracle-relative update depth (the world's exact depth through a random "
                        "affine map in inverse depth per chunk), aligned to the memory and not (+no-align)")
    s.add_argument("--depth-model", default=None, metavar="DIR",
                   help="add latent with the update depth of a local transformers depth model folder (latent+model-depth)")
    s.add_argument("--no-proxies", action="store_true", help="skip the OpenCV proxies")
    p.add_argument("--memory-dtype", default=None, choices=("float32", "float16", "bfloat16"),
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
        inject_arms=True if args.inject_arms else None, memory_input=args.memory_input,
        inject_until=args.inject_until, relative_ablation=True if args.relative_ablation else None,
        depth_model=_depth_model(args.depth_model), proxies=False if args.no_proxies else None)


def _depth_model(path):
    if path is not None and not Path(path).is_dir():
        raise ConfigError(f"`--depth-model` must be an existing model folder but {path!r} is not a folder")
    return path


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
    from mirage.cli.ranks import gather, progress, rank_device, rank_state
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
    state = rank_state()
    backbone = load_backbone(args.backbone, args.weights, device=rank_device(state, None))
    check_frame_count(suite.frames, backbone.temporal_stride, "--frames")
    out = Path(args.out or f"out/eval-{suite.name}")
    identity = {"suite": suite.to_dict(), "backbone": args.backbone, "weights": str(args.weights or "shipped")}
    if args.memory_dtype not in (None, "float32"):  # the tiny model's float32 keeps the identity it had
        identity["memory_dtype"] = args.memory_dtype
    suite_path = out / SUITE_FILE
    if suite_path.exists():
        previous = json.loads(suite_path.read_text())
        if previous != json.loads(json.dumps(identity)):
            raise ConfigError(f"`--out` {str(out)!r} holds results of a different suite or backbone "
                              f"({suite_path}); use another `--out` or delete it")
    state.wait_for_everyone()  # every rank has checked the folder before rank 0 writes to it
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        suite_path.write_text(json.dumps(identity, indent=1))
    state.wait_for_everyone()
    runs_dir = out / "runs"
    proxies = suite.proxies and opencv_available()
    if suite.proxies and not proxies:
        print("mirage eval: opencv not installed, the proxies are not computed "
              "(pip install 'mirage-world[eval]')", file=sys.stderr)

    cases, modes = suite_cases(suite), suite_modes(suite)
    expected = [(c, m, d, s, f, i, a) for c in cases for (m, d, f, i, a) in modes for s in suite.seeds]
    done = {r["id"] for r in load_runs(runs_dir)}
    todo = [job for job in expected if run_id(*job) not in done]
    reused = len(expected) - len(todo)
    state.wait_for_everyone()  # every rank has listed what is done before any run is written
    # The paths with runs to do, split over the ranks (a path's ground truth is rendered once).
    open_cases = [case for case in cases if any(job[0] == case for job in todo)]
    made = 0
    with state.split_between_processes(open_cases) as mine:
        mine_jobs = [job for job in todo if job[0] in mine]
        rank = f" rank {state.process_index}/{state.num_processes}" if state.num_processes > 1 else ""
        bar = tqdm(total=len(mine_jobs), desc=f"eval {suite.name}{rank}", disable=args.no_progress,
                   position=state.process_index)
        for case in mine:
            gt = prepare_ground_truth(backbone, case, suite.frames, proxies=proxies)
            for _, mode, depth, seed, far_field, memory_input, align in [job for job in mine_jobs if job[0] == case]:
                until = {} if suite.inject_until is None else {"inject_until": suite.inject_until}
                options = (until if memory_input in ("inject", "both") else {}) | ({} if align else {"depth_align": False})
                record, frames = evaluate_run(backbone, gt, mode, seed, depth=depth, far_field=far_field,
                                              steps=suite.steps, proxies=suite.proxies, memory_input=memory_input,
                                              options=(options | {"memory_dtype": args.memory_dtype})
                                              if args.memory_dtype else options or None,
                                              depth_model=suite.depth_model)
                save_run(runs_dir, record, frames)
                made += 1
                bar.update(1)
        bar.close()
        if state.num_processes > 1:
            progress(state, f"{made} runs over {len(mine)} paths done")
    made_by_rank = gather(state, [made])
    state.wait_for_everyone()  # every rank's runs are written
    if not state.is_main_process:
        return 0

    wanted = {run_id(*job) for job in expected}
    records = [r for r in load_runs(runs_dir) if r["id"] in wanted]
    metrics = aggregate(records)
    info = {
        "suite": suite.to_dict(), "backbone": args.backbone, "weights": str(args.weights or "shipped"),
        "size": f"{backbone.config.height}x{backbone.config.width}",
        "steps": suite.steps or backbone.config.steps,
        "command": "mirage " + " ".join(sys.argv[1:]) if sys.argv and "mirage" in sys.argv[0] else "mirage eval",
        "wall_seconds": time.perf_counter() - started, "runs_done_now": sum(made_by_rank), "runs_reused": reused,
        "processes": state.num_processes, "runs_by_rank": made_by_rank,
        "threads": args.threads, "cpus": os.cpu_count(), "load_start": load_start, "load_end": _load_average(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "peak_memory_kind": records[0].get("peak_memory_kind") if records else None,
        "proxies_note": None if proxies else ("not computed (opencv not installed)" if suite.proxies
                                              else "not computed (--no-proxies)"),
    }
    contact_case = next((c for c in cases if c.preset == "pan-return"), cases[0])
    seed = suite.seeds[0]
    main_arms = [a for a in modes if a.depth == "tiny" and a.far_field is None
                 and (a.mode == "none" or a.memory_input == suite.memory_input)]
    frames = {a.mode: load_run_frames(runs_dir, run_id(contact_case, a.mode, a.depth, seed, a.far_field, a.memory_input))
              for a in main_arms}
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
          f"({sum(made_by_rank)} runs now, {reused} reused, {info['wall_seconds']:.0f} s)")
    return 0
