"""What compact memory tokens cost: revisit PSNR of the quick suite per family and token dtype (issue 28).

    nice python benchmarks/memory_dtype.py --out benchmarks/results/memory-dtype

Runs the quick eval suite's cases (``mirage eval --suite quick``: every family, its scenes,
presets and seeds) in the ``latent`` mode with the tiny backbone, once per token dtype
(``PipelineConfig.memory_dtype``), each case's ground truth rendered once for all dtypes, and
reports per family the mean revisit PSNR and closed-loop PSNR, their difference from float32
(mean and worst over the runs), how many runs are bit-identical to float32, and the cache bytes
at the end. Writes ``memory_dtype.json`` and ``memory_dtype.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DTYPES = ("float32", "float16", "bfloat16")


def main(argv=None) -> int:
    from mirage.backbones import load_backbone
    from mirage.evaluation.runs import evaluate_run, prepare_ground_truth
    from mirage.evaluation.suite import SUITES, suite_cases

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="quick")
    p.add_argument("--dtypes", nargs="*", default=list(DTYPES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N cases (a smoke run)")
    p.add_argument("--seeds", default=None, metavar="0,1,2", help="sampling seeds (default: the suite's)")
    p.add_argument("--out", default="benchmarks/results/memory-dtype")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    suite = SUITES[args.suite]
    backbone = load_backbone("tiny", None)
    cases = suite_cases(suite)
    # families interleaved, so that a run cut short still covers every family
    rank = {c: [x for x in cases if x.family == c.family].index(c) for c in cases}
    cases = sorted(cases, key=rank.get)[:args.limit]
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else suite.seeds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        gt = prepare_ground_truth(backbone, case, suite.frames, proxies=False)
        for seed in seeds:
            for dtype in args.dtypes:
                record, _ = evaluate_run(backbone, gt, "latent", seed, steps=suite.steps, proxies=False,
                                         options={"memory_dtype": dtype})
                runs.append({"case": case.id, "family": case.family, "seed": seed, "dtype": dtype,
                             "revisit_psnr": record["revisit_psnr"], "closed_loop_psnr": record["closed_loop_psnr"],
                             "psnr": record["psnr"], "cache_bytes": record["cache_bytes"][-1],
                             "cache_points": record["cache_points"][-1]})
        print(f"{i + 1}/{len(cases)} cases, {time.perf_counter() - t0:.0f} s", flush=True)
        summary = summarise(runs, args.dtypes)  # after every case: a cut-short run still reports
        (out / "memory_dtype.json").write_text(json.dumps(
            {"suite": suite.to_dict(), "seeds": list(seeds), "cases_done": i + 1, "cases": len(cases),
             "summary": summary, "runs": runs}, indent=1))
        (out / "memory_dtype.md").write_text(table(summary) + "\n")
    print(table(summary))
    return 0


def summarise(runs: list[dict], dtypes) -> list[dict]:
    base = {(r["case"], r["seed"]): r for r in runs if r["dtype"] == "float32"}
    rows = []
    for family in sorted({r["family"] for r in runs}):
        for dtype in dtypes:
            mine = [r for r in runs if r["family"] == family and r["dtype"] == dtype]
            diff = [r["revisit_psnr"] - base[(r["case"], r["seed"])]["revisit_psnr"] for r in mine]
            loop = [r["closed_loop_psnr"] - base[(r["case"], r["seed"])]["closed_loop_psnr"] for r in mine
                    if r["closed_loop_psnr"] is not None]
            rows.append({
                "family": family, "dtype": dtype, "runs": len(mine),
                "revisit_psnr": statistics.mean(r["revisit_psnr"] for r in mine),
                "revisit_delta_db": statistics.mean(diff), "revisit_worst_delta_db": min(diff),
                "closed_loop_delta_db": statistics.mean(loop) if loop else None,
                "identical_runs": sum(r["psnr"] == base[(r["case"], r["seed"])]["psnr"] for r in mine),
                "cache_bytes": statistics.mean(r["cache_bytes"] for r in mine),
                "bytes_per_point": statistics.mean(r["cache_bytes"] / max(r["cache_points"], 1) for r in mine)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| family | tokens | runs | revisit PSNR (dB) | Δ vs float32 (mean / worst) | closed-loop Δ | "
             "runs identical to float32 | cache bytes (end) | bytes / point |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loop = f"{r['closed_loop_delta_db']:+.3f}" if r["closed_loop_delta_db"] is not None else "-"
        lines.append(f"| {r['family']} | {r['dtype']} | {r['runs']} | {r['revisit_psnr']:.3f} | "
                     f"{r['revisit_delta_db']:+.3f} / {r['revisit_worst_delta_db']:+.3f} | {loop} | "
                     f"{r['identical_runs']}/{r['runs']} | {r['cache_bytes']:,.0f} | {r['bytes_per_point']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
