"""Write ``docs/results.md`` from the benchmark JSON committed under ``benchmarks/results/``.

    python docs/make_results.py            # rewrite docs/results.md
    python docs/make_results.py --check    # exit 1 when docs/results.md is not what this writes

The page is ``docs/results_notes.md`` (the introduction and the dated notes that have no JSON)
with the generated tables put in place of its ``<!-- generated tables -->`` line. Each table is
made from one committed JSON file, named under the table; nothing else is read, so the page
changes only when a JSON or the template does. Needs ``mirage`` importable (for the eval tables).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "docs" / "results_notes.md"
OUTPUT = ROOT / "docs" / "results.md"
MARKER = "<!-- generated tables -->"


def _load(rel: str) -> dict:
    return json.loads((RESULTS / rel).read_text())


def _source(*rels: str) -> str:
    return "Source: " + ", ".join(f"[`benchmarks/results/{r}`](../benchmarks/results/{r})" for r in rels) + "."


def _rows(head: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])


def _pct(x: float | None, signed: bool = True) -> str:
    return "–" if x is None else (f"{x:+.1%}" if signed else f"{x:.1%}")


def eval_quick() -> list[str]:
    from mirage.evaluation.report import exact_return_family_table, main_table

    m = _load("eval-quick/metrics.json")
    info = m["info"]
    out = ["## The quick evaluation suite", "",
           f"`{info['command']}`, measured {info['date']} ({info['runs_done_now'] + info['runs_reused']} runs, "
           f"{info['wall_seconds']:.0f} s wall, {info['threads']} torch thread on {info['cpus']} CPUs, "
           f"load {info['load_start']} at the start). Shipped tiny weights, pipeline defaults; "
           "held-out scenes (3 rooms, 3 courtyards) × pan-return, loop, orbit × 3 sampling seeds, "
           "33 frames. Mean ± std over the seeds. Seconds per frame depend on the machine's load. "
           "Closed-loop PSNR compares the last frame with the first; on these paths the camera comes back "
           "exactly, and the latent memory hands back frame 0's own tokens there.", "",
           main_table(m), ""]
    by = m.get("by_preset", {})
    if by and all(mode in by.get(p, {}) for p in by for mode in ("latent", "none")):
        out += ["Revisit PSNR by preset (dB):", ""]
        out += _rows(["preset", *m["modes"], "latent − none"],
                     [[p, *(f"{by[p][mode]['revisit_psnr']['mean']:.2f}" for mode in m["modes"]),
                       f"{by[p]['latent']['revisit_psnr']['mean'] - by[p]['none']['revisit_psnr']['mean']:+.2f}"]
                      for p in sorted(by)])
        out.append("")
    if m.get("exact_return"):
        out += ["Exact return (paths whose last pose is the first; loss against the decoded first "
                "frame, and the share of the gap to `none` closed):", "",
                exact_return_family_table(m["exact_return"]), ""]
    return out + [_source("eval-quick/metrics.json"), ""]


def revisit_bound() -> list[str]:
    r = _load("revisit-bound/revisit_bound.json")
    fams = list(r["psnr_by_family"])
    links = list(r["psnr_by_family"][fams[0]])
    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None
    rows = []
    for link in links:
        every = [v for f in fams for v in r["psnr_by_family"][f][link]]
        rows.append([link, f"{mean(every):.2f}", *(f"{mean(r['psnr_by_family'][f][link]):.2f}" for f in fams)])
    return ["## Revisit fidelity, link by link", "",
            f"Revisit key frames of {len(r['cases'])} held-out paths ({r['frames']} frames), shipped tiny "
            "weights: what the model makes, what its memory read holds, what a memory of the ground "
            "truth would give, and the VAE's ceiling. PSNR in dB.", "",
            *_rows(["link", "all", *fams], rows), "", _source("revisit-bound/revisit_bound.json"), ""]


def exact_return() -> list[str]:
    from mirage.evaluation.report import exact_return_family_table

    after, before = _load("exact-return/after.json"), _load("exact-return/before.json")
    bound = _load("return-bound/return_bound.json")
    gains = bound["gain_over_before"]
    arms = list(next(iter(gains.values())))
    return ["## Exact return and the far field", "",
            f"`{after['command']}`: {len(after['cases'])} held-out paths of {after['frames']} frames "
            "whose last pose is the first. The loss is the return frame's PSNR below the decoded "
            "first frame; the gap closed is (return − none) / (decoded first − none).", "",
            exact_return_family_table(after["exact_return"]), "",
            "The same paths with the code before the far field (latent only):", "",
            exact_return_family_table(before["exact_return"]), "",
            f"Over the last {bound['last_frames']} frames, the gain over the code before the far field, "
            "and what a better memory of frame 0 could give at most (frame 0's sky, or everything it "
            "saw, replaced by the VAE's reconstruction or by ground truth), in dB:", "",
            *_rows(["family", *arms], [[f, *(f"{gains[f][a]:+.2f}" for a in arms)] for f in gains]), "",
            _source("exact-return/after.json", "exact-return/before.json", "return-bound/return_bound.json"),
            "The same measurement on 16 other held-out scenes is in "
            "[`benchmarks/results/exact-return-unseen/`](../benchmarks/results/exact-return-unseen/README.md).", ""]


def far_field_cost() -> list[str]:
    r = _load("far-field/far_field_cost.json")
    rows = [[f"{a}×{b}", "×".join(str(v) for v in row["latent"]), row["chunk"], f"{row['off_ms']:.2f}",
             f"{row['on_ms']:.2f}", _pct(row["adds"]),
             f"{_pct(row['adds_quartiles'][0])} – {_pct(row['adds_quartiles'][1])}", _pct(row["calls_over_rest"])]
            for row in r["rows"] for a, b in [row["size"]]]
    return ["## What the far field costs", "",
            f"`{r['command']}`: latent memory read + write per chunk on a courtyard loop, far field "
            "off and on back to back in each pass, median over passes.", "",
            *_rows(["pixels", "latent (C×h×w)", "latent frames per chunk", "off (ms/chunk)", "on (ms/chunk)",
                    "far field adds", "quartiles over passes", "its own calls over the rest"], rows), "",
            _source("far-field/far_field_cost.json"), ""]


def memory_bench() -> list[str]:
    rows = []
    for rel in ("memory-176x320/memory_bench.json", "memory-704x1280/memory_bench.json"):
        r = _load(rel)
        c, s = r["config"], r["summary"]
        rgb = s.get("rgb_read_path_s_per_chunk")
        rows.append([f"{c['height']}×{c['width']}", f"{1000 * s['latent_read_s_per_chunk']:.2f}",
                     "–" if rgb is None else f"{rgb:.2f}",
                     "–" if s.get("rgb_path_over_latent_read") is None else f"{s['rgb_path_over_latent_read']:,.0f}×",
                     f"{s['kernel_speedup_vs_sort']:.2f}×", f"{s['throughput_mpoint_proj_per_s']:.1f}",
                     f"{s['points_append_final']:,}", f"{s['points_voxel_final']:,}",
                     "–" if s.get("bytes_rgb_over_latent_voxel") is None else f"{s['bytes_rgb_over_latent_voxel']:.0f}×"])
    return ["## The memory on its own", "",
            "`mirage bench memory` (CPU, 48 channels, 10 chunks of 9 views on a path that looks away "
            "and comes back): the latent read against the RGB baseline's render + Wan2.2 VAE encode, "
            "the z-buffer kernel against a sort-per-view implementation on the same points, and the "
            "memory's size with and without fusion.", "",
            *_rows(["size", "latent read (ms/chunk)", "rgb render + encode (s/chunk)", "rgb / latent",
                    "kernel vs sort", "M point-projections/s", "points, append", "points, fused",
                    "rgb bytes / fused latent bytes"], rows), "",
            _source("memory-176x320/memory_bench.json", "memory-704x1280/memory_bench.json"), ""]


def long_horizon() -> list[str]:
    r = _load("long-horizon/long_horizon.json")
    rows = [[run["mode"], run["frames"], f"{run['memory_share']:.1%}", f"{1000 * run['s_per_frame']:.1f}",
             f"{run['chunks_16_31_median_ms']:.1f}", f"{run['last_16_median_ms']:.1f}",
             f"{run['last_16_over_16_31']:.2f}"] for run in r["runs"]]
    agree = [[a["frames"], a["k"], a["chunks"], a["same"], a["same_set"], f"{a['iou_ratio']:.2f}"]
             for a in r["agreement"]]
    return ["## Long walks", "",
            f"Memory time per chunk over walks of up to 4097 frames ({r['scene'][0]}, "
            f"{r['size'][0]}×{r['size'][1]}, {r['threads']} threads), with the code before "
            f"({r['before_commit']}) and after references were indexed by voxel.", "",
            *_rows(["run", "frames", "memory share", "ms/frame", "chunks 16–31, median ms", "last 16, median ms",
                    "last 16 / chunks 16–31"], rows), "",
            "How often the indexed references equal those of scoring every frame by what it sees now:", "",
            *_rows(["frames", "k", "chunks", "same first", "same set", "IoU ratio"], agree), "",
            _source("long-horizon/long_horizon.json") + " Commands in its README.", ""]


def wan_chunk() -> list[str]:
    r = _load("wan-chunk-cpu-small/wan_chunk.json")
    c = r["config"]
    keys = ["read_s", "denoise_s", "decode_s", "depth_s", "update_s", "s_per_frame", "memory_share", "cache_bytes"]
    rows = [[mode, *(f"{b[k]:.1%}" if k == "memory_share" else f"{b[k]:,}" if k == "cache_bytes" else f"{b[k]:.3f}"
                     for k in keys)] for mode, b in r["best"].items()]
    return ["## Wan2.2's pipeline on a CPU (reduced size, random weights)", "",
            f"`python benchmarks/wan_chunk.py --cpu-small`: the Wan2.2 code path at {c['size'][0]}×{c['size'][1]}, "
            f"{c['frames']} frames in chunks of {c['chunk_frames']}, {c['steps']} steps, a {c['dit']['num_layers']}-layer "
            "random DiT; best of the repeats. This measures the mechanics, not a real model.", "",
            *_rows(["mode", "read (s)", "denoise (s)", "decode (s)", "depth (s)", "update (s)", "s/frame",
                    "read + update share", "cache bytes"], rows), "", _source("wan-chunk-cpu-small/wan_chunk.json"), ""]


def explore_latency() -> list[str]:
    r = _load("explore/latency.json")
    s, w, t, lw = r["single"], r["walking"], r["tabs"], r["long"]
    rss = lw["rss_mib_by_step"]
    rows = [["key → first new frame, median (1 tab)", f"{s['median_ms']:.0f} ms", "≤ 250 ms"],
            ["key → first new frame, p95 (1 tab)", f"{s['p95_ms']:.0f} ms", "≤ 500 ms"],
            ["frames drawn per second, key held", f"{w['frames_per_s']:.1f}", "≥ 15"],
            [f"{t['tabs']} tabs at once: median latency", f"{t['median_ms']:.0f} ms ({t['median_over_single']:.2f}× 1 tab)",
             "≤ 4× 1 tab"],
            [f"{lw['frames']}-frame walk: last 10 / first 10 steps",
             f"{lw['last10_median_ms']:.0f} / {lw['first10_median_ms']:.0f} ms = {lw['last_over_first']:.2f}", "≤ 1.5"],
            [f"{lw['frames']}-frame walk: server RSS, first → last sample", f"{rss[0][1]:.0f} → {rss[-1][1]:.0f} MiB "
             f"({lw['rss_growth_mib_per_1000_frames']:.0f} MiB / 1000 frames)", "bounded by `--max-frames`"]]
    m = r["machine"]
    return ["## The explorer in a browser", "",
            f"`python benchmarks/explore_latency.py`: tiny backbone, {r['setup']['scene']}, headless Chromium on "
            f"the same {m['cpus']}-CPU machine (load {m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after).", "",
            *_rows(["measure", "value", "goal"], rows), "", _source("explore/latency.json"), ""]


def data_import() -> list[str]:
    r = _load("data-import/data_import.json")
    runs = [[name, v["clips"], v["frames"], f"{v['seconds']:.1f}", f"{v['clips_per_s']:.2f}", f"{v['frames_per_s']:.1f}"]
            for name, v in r["runs"].items() if "clips_per_s" in v]
    x = r["per_1000_clips_extrapolated"]
    per = [["import, --depth-dir", f"{x['import_minutes']:.1f} min", f"{x['clips_GiB']:.2f} GiB"],
           ["import, --depth-model (tiny random model)", f"{x['import_depth_model_minutes']:.1f} min", "same"],
           ["import, triangulated alignment", f"{x['import_triangulation_minutes']:.1f} min", "same"],
           ["data build (tiny, 64×64)", f"{x['build_minutes']:.1f} min", f"{x['built_GiB']:.2f} GiB"]]
    return ["## Importing footage and building samples", "",
            f"`python benchmarks/data_import.py`: {r['clips']} clips of {r['frames']} frames at {r['size']}×{r['size']} "
            f"(load {r['machine']['load_1min']:.1f} on {r['machine']['cpus']} CPUs: noisy). Seconds include each "
            "CLI process's start-up.", "",
            *_rows(["run", "clips", "frames", "seconds", "clips/s", "frames/s"], runs), "",
            "Per 1,000 clips, **extrapolated linearly** from this run:", "",
            *_rows(["step", "time", "disk"], per), "",
            "A killed import resumed to output identical to an uninterrupted one: "
            f"{'yes' if r['runs']['import-kill']['identical_to_uninterrupted'] else 'no'}; a killed build: "
            f"{'yes' if r['runs']['build']['identical_to_uninterrupted'] else 'no'}.", "",
            _source("data-import/data_import.json"), ""]


def keyframe_decode() -> list[str]:
    r = _load("keyframe-decode/summary.json")
    g = r["gain_db"]
    return ["## Keyframe decoding", "",
            f"`{r['command']}`: over {r['paths']} paths, decoding each keyframe from its own latent gives "
            f"{r['alone_psnr']:.2f} dB against {r['pair_psnr']:.2f} dB from a pair "
            f"({g['mean']:+.2f} dB, {g['min']:+.2f} to {g['max']:+.2f}; better on {r['paths_better_alone']} of "
            f"{r['paths']} paths).", "", _source("keyframe-decode/summary.json"), ""]


def pipeline_split() -> list[str]:
    rows = []
    for rel in ("tiny-recipe/pipeline_split_1thread.json", "tiny-recipe/pipeline_split_2threads.json"):
        r = _load(rel)
        for mode, m in r["summary"].items():
            sh = m["share"]
            rows.append([r["threads"], mode, f"{1000 * m['s_per_frame']:.1f}",
                         *(f"{sh[k]:.1%}" for k in ("read", "denoise", "decode", "depth", "update")),
                         f"{m['memory_share']:.1%}", f"{m['memory_ms_per_frame']:.2f}"])
    r = _load("tiny-recipe/pipeline_split_1thread.json")
    return ["## Where the time goes in `generate`", "",
            f"`python benchmarks/pipeline_split.py --threads 1|2`: tiny backbone, shipped weights, "
            f"{r['size'][0]}×{r['size'][1]}, {r['steps']} steps, {len(r['jobs'])} held-out jobs, median of "
            f"{r['repeats']} repeats per job and mode, modes interleaved. Shares are of the whole run.", "",
            *_rows(["threads", "mode", "ms/frame", "read", "denoise", "decode", "depth", "update",
                    "read + update", "memory ms/frame"], rows), "",
            _source("tiny-recipe/pipeline_split_1thread.json", "tiny-recipe/pipeline_split_2threads.json"),
            "Earlier before/after runs of the memory code are in "
            "[`benchmarks/results/pipeline-64x64/`](../benchmarks/results/pipeline-64x64/pipeline_split.txt).", ""]


def rgb_fusion() -> list[str]:
    r = _load("rgb-fusion/rgb_fusion.json")
    keys = [("revisit_psnr", ".2f"), ("closed_loop_psnr", ".2f"), ("cache_bytes_end", ",.0f"), ("memory_share", ".1%")]
    arms = list(dict.fromkeys((row["mode"], row["fusion"]) for row in r["rows"]))
    rows = []
    for mode, fusion in arms:
        cells = []
        for key, spec in keys:
            per_seed = [statistics.fmean(row[key] for row in r["rows"]
                                         if (row["mode"], row["fusion"], row["seed"]) == (mode, fusion, seed))
                        for seed in r["seeds"]]
            cells.append(f"{format(statistics.fmean(per_seed), spec)} ± {format(statistics.stdev(per_seed), spec)}")
        rows.append([mode, fusion, *cells])
    return ["## The RGB baseline given our fusion", "",
            f"`python benchmarks/rgb_fusion.py --seeds {','.join(map(str, r['seeds']))}`: the quick suite's paths "
            "with the weights of that time (not today's), latent against rgb as the reference "
            "(append) and rgb with our voxel fusion. Mean ± std over seeds.", "",
            *_rows(["mode", "fusion", "revisit PSNR (dB)", "closed-loop PSNR (dB)", "cache bytes (end)",
                    "read + update share"], rows), "", _source("rgb-fusion/rgb_fusion.json"), ""]


def memory_input() -> list[str]:
    h, v = _load("memory-input/held_out.json"), _load("inject-variants/variants.json")
    cost = _load("inject-cost/inject_cost.json")
    arms = h["arms"]
    fams = sorted(k[6:] for k in next(iter(arms.values())) if k.startswith("last8_"))
    return ["## Memory input: the trained branch against injection", "",
            f"`{h['command']}`: 16 held-out 65-frame paths (scenes 0–3, both families, pan-return and "
            "loop), shipped tiny weights, seed 0. Mean PSNR of the last 8 frames (the return) and the worst "
            "exact-return loss over the paths, in dB.", "",
            *_rows(["arm", "last 8 frames", *fams, "worst exact-return loss"],
                   [[a, f"{r['last8']:.2f}", *(f"{r['last8_' + f]:.2f}" for f in fams),
                     f"{r['worst_return_loss_db']:.2f}"] for a, r in arms.items()]), "",
            f"The variants, on 8 tuning paths (scenes 50–51), `{v['command']}`:", "",
            *_rows(["variant", "last 8 frames", "worst return loss", "model calls / chunk"],
                   [[r["variant"], f"{r['last8_psnr']:.2f}",
                     "–" if r["worst_return_loss_db"] is None else f"{r['worst_return_loss_db']:.2f}",
                     f"{r['model_calls_per_chunk']:.0f}"] for r in v["summary"]]), "",
            f"What injection costs, `{cost['command']}` (inject against branch in alternating passes; the "
            "injector's own calls timed in place):", "",
            *_rows(["backbone", "grid", "inject adds (median)", "injector's own calls"],
                   [[r["backbone"], r["grid"], _pct(r["inject_adds"]), f"{r['injector_own_share']:.2%}"]
                    for r in cost["rows"]]), "",
            _source("memory-input/held_out.json", "inject-variants/variants.json", "inject-cost/inject_cost.json"), ""]


def world_scale() -> list[str]:
    r = _load("world-scale/world_scale.json")
    rows = [[f"{x['points']:,}", f"{x['points_in_view']:,}",
             f"{1e3 * x['read_on_s']:.0f} / {1e3 * x['read_off_s']:.0f}",
             f"{1e3 * x['write_on_s']:.0f} / {1e3 * x['write_off_s']:.0f}",
             f"{x['speedup']:.1f}×", "yes" if x["identical"] else "NO"] for x in r["summary"]["samples"]]
    m = r["meta"]
    return ["## The memory at world scale", "",
            f"`python benchmarks/world_scale.py --fill 8 --samples 100000 1000000 10000000`: a street walk "
            f"growing the memory to 10 M points, {m['grid'][0]}×{m['grid'][1]} grid, {m['channels']} channels, "
            f"{m['frames']} views per chunk, {m['dtype'].replace('torch.', '')} tokens, block size "
            f"{m['block_size']:g}; culling on against projecting every point, side by side on the same chunk. "
            f"Read + write at the largest size over the smallest (culling on): {r['summary']['growth']:.2f}×.", "",
            *_rows(["points in memory", "points in view", "read on / off (ms)", "write on / off (ms)",
                    "read + write speed-up", "identical"], rows), "",
            _source("world-scale/world_scale.json"), ""]


SECTIONS = [eval_quick, memory_input, world_scale, pipeline_split, rgb_fusion, revisit_bound, exact_return, far_field_cost, memory_bench, long_horizon, wan_chunk,
            explore_latency, data_import, keyframe_decode]


def other_results(used: set[str]) -> list[str]:
    """Every folder of benchmarks/results with no table above, so nothing committed is hidden."""
    out = ["## Other committed results", "",
           "These folders hold earlier or more detailed runs; their README or tables say what they are.", ""]
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        if folder.name in used:
            continue
        readme = folder / "README.md"
        link = f"[`{folder.name}/`](../benchmarks/results/{folder.name}/{'README.md' if readme.exists() else ''})"
        files = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file()))
        out.append(f"- {link}: {files}")
    return out + [""]


def render() -> str:
    template = TEMPLATE.read_text()
    if MARKER not in template:
        raise SystemExit(f"{TEMPLATE} has no {MARKER!r} line")
    lines: list[str] = []
    for section in SECTIONS:
        lines += section()
    text = "\n".join(lines)
    used = set(re.findall(r"benchmarks/results/([\w.-]+)", text))
    lines += other_results({u for u in used if (RESULTS / u).is_dir()})
    head, tail = template.split(MARKER, 1)
    body = "<!-- generated by docs/make_results.py from benchmarks/results/*.json: do not edit -->\n\n" + "\n".join(lines)
    return head + body.rstrip("\n") + "\n" + tail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when the page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python docs/make_results.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
