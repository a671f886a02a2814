"""The suite's report: ``metrics.json`` and ``report.md``, one table per question.

Every figure is a mean ± std over the sampling seeds: for each seed, a metric is first averaged
over the suite's runs of that seed (scenes × presets), then the seeds' values give the mean and
the (sample) standard deviation. Metrics that need weights we cannot ship are listed as not
computed, never estimated.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Callable

from mirage.evaluation.metrics import gap_closed

__all__ = ["aggregate", "format_report", "save_report", "NOT_COMPUTED", "METRICS", "main_table",
           "exact_return_paths", "exact_return_summary", "exact_return_family_table", "exact_return_path_table"]

TIME_KEYS = ("read", "denoise", "decode", "depth", "update")

NOT_COMPUTED = [
    ("LPIPS", "needs pretrained AlexNet/VGG weights"),
    ("CLIP score / CLIP-IQA", "needs CLIP weights"),
    ("DROID-SLAM camera error (WorldScore camera control)", "needs DROID-SLAM weights; the SIFT + essential-matrix PROXY stands in"),
    ("RAFT / SEA-RAFT flow metrics (WorldScore motion, VBench smoothness)", "need flow-network weights; the Farnebäck round-trip PROXY stands in"),
    ("FVD / FID", "need I3D / Inception weights"),
    ("MEt3R and other learned 3D-consistency scores", "need DUSt3R-class weights; the ground-truth warp error stands in"),
    ("Aesthetic / imaging quality (LAION aesthetic, MUSIQ)", "need their weights"),
    ("WorldScore normalised scores", "its normalisation constants are not used (raw errors are reported)"),
]


def _get(path: str) -> Callable[[dict], float | None]:
    keys = path.split(".")

    def get(record: dict):
        value = record
        for k in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(k)
        return value

    return get


def _share(key: str) -> Callable[[dict], float | None]:
    def get(record: dict):
        t = record["timing"]
        return t[f"{key}_s"] / t["total_s"] if t["total_s"] > 0 else None

    return get


def _mean_list(key: str) -> Callable[[dict], float | None]:
    def get(record: dict):
        values = record.get(key) or []
        return statistics.fmean(values) if values else None

    return get


def _last(key: str) -> Callable[[dict], float | None]:
    def get(record: dict):
        values = record.get(key) or []
        return values[-1] if values else None

    return get


def _pairs_ok(key: str) -> Callable[[dict], float | None]:
    def get(record: dict):
        cam = record.get(key)
        return cam["pairs_ok"] / cam["pairs"] if cam and cam.get("pairs") else None

    return get


# name → (how to read it from a run record, unit / format)
METRICS: dict[str, tuple[Callable[[dict], float | None], str]] = {
    "revisit_psnr": (_get("revisit_psnr"), ".2f"),
    "revisit_ssim": (_get("revisit_ssim"), ".3f"),
    "revisit_keyframe_psnr": (_get("revisit_keyframe_psnr"), ".2f"),
    "ceiling_revisit_psnr": (_get("ceiling_revisit_psnr"), ".2f"),
    "ceiling_keyframe_psnr": (_get("ceiling_keyframe_psnr"), ".2f"),
    "psnr_all": (_get("psnr_all"), ".2f"),
    "ssim_all": (_get("ssim_all"), ".3f"),
    "ceiling_all": (_get("ceiling_all"), ".2f"),
    "closed_loop_psnr": (_get("closed_loop_psnr"), ".2f"),
    "closed_loop_ssim": (_get("closed_loop_ssim"), ".3f"),
    "warp_error": (_get("warp_error"), ".4f"),
    "warp_error_gt": (_get("warp_error_gt"), ".4f"),
    "read_coverage": (_mean_list("read_coverage"), ".3f"),
    "read_latent_rmse": (_get("read_latent_rmse"), ".3f"),
    "read_latent_relative": (_get("read_latent_relative"), ".3f"),
    "cache_bytes": (_last("cache_bytes"), ",.0f"),
    "cache_points": (_last("cache_points"), ",.0f"),
    "s_per_frame": (_get("timing.s_per_frame"), ".4f"),
    **{f"share_{k}": (_share(k), ".1%") for k in TIME_KEYS},
    "memory_share": (_get("timing.memory_share"), ".1%"),
    "peak_memory_bytes": (_get("peak_memory_bytes"), ",.0f"),
    "proxy_flow_roundtrip_px": (_get("proxy_flow_roundtrip_px"), ".3f"),
    "proxy_flow_roundtrip_gt_px": (_get("proxy_flow_roundtrip_gt_px"), ".3f"),
    "proxy_rotation_deg": (_get("proxy_camera.rotation_deg"), ".2f"),
    "proxy_translation": (_get("proxy_camera.translation"), ".3f"),
    "proxy_pairs_ok": (_pairs_ok("proxy_camera"), ".1%"),
    "proxy_rotation_gt_deg": (_get("proxy_camera_gt.rotation_deg"), ".2f"),
    "proxy_translation_gt": (_get("proxy_camera_gt.translation"), ".3f"),
}


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _over_seeds(records: list[dict], get) -> dict | None:
    """mean ± std over seeds of the per-seed mean; None when no run has the metric."""
    per_seed = defaultdict(list)
    for r in records:
        per_seed[r["seed"]].extend(_finite([get(r)]))
    means = [statistics.fmean(v) for _, v in sorted(per_seed.items()) if v]
    if not means:
        return None
    return {"mean": statistics.fmean(means), "std": statistics.stdev(means) if len(means) > 1 else None,
            "seeds": len(means)}


def _modes(records: list[dict]) -> list[str]:
    order = {"latent": 0, "latent+inject": 0.5, "rgb": 1, "rgb+inject": 1.5, "rgb+far-field": 2, "none": 3}
    return sorted(dict.fromkeys(r["mode"] for r in records), key=lambda m: (order.get(m, 4), m))


EXACT_RETURN_KEYS = ("return_psnr", "decoded_first_psnr", "return_loss_db", "gap_closed")


def exact_return_paths(records: list[dict]) -> list[dict]:
    """One row per run on an exact-return path (``record["exact_return"]`` set; see
    :func:`mirage.evaluation.metrics.exact_return`): case, family, scene, preset, seed, mode,
    ``return_psnr``, ``decoded_first_psnr``, ``return_loss_db``, ``none_return_psnr`` and
    ``gap_closed`` against the ``none`` run of the same (case, seed) (None without one).
    Ordered by family, scene, preset, seed, mode."""
    none = {(r["case"], r["seed"]): r["exact_return"]["return_psnr"] for r in records
            if r["mode"] == "none" and r.get("exact_return")}
    modes = _modes(records)
    rows = []
    for r in records:
        er = r.get("exact_return")
        if not er:
            continue
        base = none.get((r["case"], r["seed"]))
        ok = base is not None and er["return_psnr"] is not None and er["decoded_first_psnr"] is not None
        rows.append({"case": r["case"], "family": r["family"], "scene": r["scene"], "preset": r["preset"],
                     "seed": r["seed"], "mode": r["mode"], **{k: er[k] for k in EXACT_RETURN_KEYS[:3]},
                     "none_return_psnr": base,
                     "gap_closed": gap_closed(er["return_psnr"], base, er["decoded_first_psnr"]) if ok else None})
    families = _families(records)
    return sorted(rows, key=lambda row: (families.index(row["family"]), row["scene"], row["preset"], row["seed"],
                                         modes.index(row["mode"])))


def exact_return_summary(records: list[dict]) -> dict:
    """The exact-return metric per family: ``by_family[family][mode][key]`` = {mean, std, seeds}
    over the sampling seeds (as :func:`aggregate`), with ``range[family][mode][key]`` = [min, max]
    over the paths, for ``return_psnr``, ``decoded_first_psnr``, ``return_loss_db`` and
    ``gap_closed``; ``paths``: :func:`exact_return_paths`."""
    rows = exact_return_paths(records)
    families = _families(rows)
    modes = [m for m in _modes(records) if any(r["mode"] == m for r in rows)]
    by_family, ranges = {}, {}
    for f in families:
        by_family[f], ranges[f] = {}, {}
        for m in modes:
            mine = [r for r in rows if r["family"] == f and r["mode"] == m]
            by_family[f][m] = {k: _over_seeds(mine, _get(k)) for k in EXACT_RETURN_KEYS}
            ranges[f][m] = {k: ([min(v), max(v)] if (v := _finite(r[k] for r in mine)) else None)
                            for k in EXACT_RETURN_KEYS}
    return {"families": families, "modes": modes, "by_family": by_family, "range": ranges, "paths": rows}


def _families(records: list[dict]) -> list[str]:
    order = {"room": 0, "courtyard": 1}
    return sorted(dict.fromkeys(r["family"] for r in records), key=lambda f: (order.get(f, 2), f))


def aggregate(records: list[dict]) -> dict:
    """Summaries of run records (see :func:`mirage.evaluation.runs.evaluate_run`):
    ``summary[mode][metric]`` and ``by_preset[preset][mode][metric]`` = {mean, std, seeds},
    and the per-frame / per-chunk means the plots need."""
    modes = _modes(records)
    summary = {m: {name: _over_seeds([r for r in records if r["mode"] == m], get)
                   for name, (get, _) in METRICS.items()} for m in modes}
    presets = list(dict.fromkeys(r["preset"] for r in records))
    by_preset = {p: {m: {name: _over_seeds([r for r in records if r["mode"] == m and r["preset"] == p], METRICS[name][0])
                         for name in ("revisit_psnr", "revisit_ssim", "closed_loop_psnr", "warp_error")}
                     for m in modes} for p in presets}
    curves = {}
    for p in presets:
        rs = [r for r in records if r["preset"] == p]
        curves[p] = {
            "revisit_frames": sorted(set().union(*[set(r["revisit_frames"]) for r in rs])),
            "psnr": {m: _mean_curve([r["psnr"] for r in rs if r["mode"] == m]) for m in modes},
            "ceiling_psnr": _mean_curve([r["ceiling_psnr"] for r in rs]),
        }
    cache = {m: {"frames": _first([r["cache_frames"] for r in records if r["mode"] == m]),
                 "bytes": _mean_curve([r["cache_bytes"] for r in records if r["mode"] == m])} for m in modes}
    timing = {m: {k: statistics.fmean(r["timing"][f"{k}_s"] / r["timing"]["frames"] for r in records if r["mode"] == m)
                  for k in (*TIME_KEYS, "init")} for m in modes}
    return {"modes": modes, "presets": presets, "runs": len(records),
            "seeds": sorted({r["seed"] for r in records}),
            "cases": sorted({r["case"] for r in records}),
            "summary": summary, "by_preset": by_preset, "exact_return": exact_return_summary(records),
            "curves": curves, "cache_curves": cache, "time_split_s_per_frame": timing,
            "not_computed": [{"metric": n, "why": w} for n, w in NOT_COMPUTED]}


def _first(lists):
    return lists[0] if lists else []


def _mean_curve(curves: list[list]) -> list[float | None]:
    """Element-wise mean of equal-length lists (None/non-finite entries skipped)."""
    if not curves:
        return []
    n = min(len(c) for c in curves)
    out = []
    for i in range(n):
        values = _finite(c[i] for c in curves)
        out.append(statistics.fmean(values) if values else None)
    return out


def _fmt(stat: dict | None, spec: str) -> str:
    if stat is None:
        return "–"
    text = format(stat["mean"], spec)
    if stat["std"] is not None:
        text += " ± " + format(stat["std"], spec)
    return text


def _table(metrics: dict, columns: list[tuple[str, str]], modes=None) -> list[str]:
    modes = modes or metrics["modes"]
    lines = ["| mode | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for m in modes:
        s = metrics["summary"][m]
        lines.append(f"| {m} | " + " | ".join(_fmt(s[name], METRICS[name][1]) for name, _ in columns) + " |")
    return lines


MAIN_COLUMNS = [("revisit_psnr", "revisit PSNR (dB)"), ("revisit_ssim", "revisit SSIM"),
                ("closed_loop_psnr", "closed-loop PSNR (dB)"), ("s_per_frame", "s/frame"),
                ("cache_bytes", "cache bytes (end)")]


def main_table(metrics: dict) -> str:
    """The headline table (markdown) plus the A/B differences of the means."""
    lines = _table(metrics, MAIN_COLUMNS)
    s = metrics["summary"]
    if all(m in s for m in ("latent", "rgb", "none")):
        def diff(a, b, key="revisit_psnr"):
            x, y = s[a][key], s[b][key]
            return f"{x['mean'] - y['mean']:+.2f} dB" if x and y else "–"

        ceiling = s["latent"]["ceiling_revisit_psnr"]
        latent = s["latent"]["revisit_psnr"]
        gap = f"{ceiling['mean'] - latent['mean']:.2f} dB" if ceiling and latent else "–"
        lines += ["", f"Revisit PSNR, latent − none: {diff('latent', 'none')}; latent − rgb: "
                      f"{diff('latent', 'rgb')}; VAE ceiling − latent: {gap}."]
        injected = [m for m in ("latent", "rgb") if f"{m}+inject" in s]
        if injected:
            lines += ["", "Training-free memory input against the trained branch, revisit PSNR: " + "; ".join(
                f"{m}+inject − {m}: {diff(f'{m}+inject', m)}" for m in injected)
                + (f"; latent+inject − rgb+inject: {diff('latent+inject', 'rgb+inject')}"
                   if len(injected) == 2 else "") + "."]
    return "\n".join(lines)


def _pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value, spec=".2f") -> str:
    return "–" if value is None else format(value, spec)


def exact_return_family_table(summary: dict) -> str:
    """Markdown: the exact return per family and mode (``summary``: :func:`exact_return_summary`),
    mean ± std over seeds, and the range over the paths of the loss and the gap closed."""
    if not summary["paths"]:
        return "No path of this run returns exactly to its start pose."
    lines = ["| family | mode | return PSNR (dB) | decoded first (dB) | return loss (dB) | gap closed "
             "| loss, paths (dB) | gap closed, paths |", "|---|---|---|---|---|---|---|---|"]
    for f in summary["families"]:
        for m in summary["modes"]:
            s, rng = summary["by_family"][f][m], summary["range"][f][m]
            gap = s["gap_closed"]
            gap_text = "–" if gap is None else (_pct(gap["mean"]) + ("" if gap["std"] is None else f" ± {gap['std']:.1%}"))
            loss_range = "–" if rng["return_loss_db"] is None else "{:.2f} – {:.2f}".format(*rng["return_loss_db"])
            gap_range = "–" if rng["gap_closed"] is None else f"{_pct(rng['gap_closed'][0])} – {_pct(rng['gap_closed'][1])}"
            lines.append(f"| {f} | {m} | {_fmt(s['return_psnr'], '.2f')} | {_fmt(s['decoded_first_psnr'], '.2f')} | "
                         f"{_fmt(s['return_loss_db'], '.2f')} | {gap_text} | {loss_range} | {gap_range} |")
    return "\n".join(lines)


def exact_return_path_table(summary: dict) -> str:
    """Markdown: one line per exact-return path and sampling seed, per mode the return PSNR, the
    return loss (decoded first − return) and the gap closed."""
    if not summary["paths"]:
        return "No path of this run returns exactly to its start pose."
    modes = summary["modes"]
    head = "".join(f" {m} return (dB) | {m} loss (dB) | {m} gap closed |" for m in modes)
    lines = ["| family | scene | path | seed |" + head, "|---|---|---|---|" + "---|---|---|" * len(modes)]
    by_path = defaultdict(dict)
    for r in summary["paths"]:
        by_path[(r["family"], r["scene"], r["preset"], r["seed"])][r["mode"]] = r
    for (f, scene, preset, seed), runs in by_path.items():
        cells = "".join(f" {_num(runs[m]['return_psnr'])} | {_num(runs[m]['return_loss_db'])} | {_pct(runs[m]['gap_closed'])} |"
                        if m in runs else " – | – | – |" for m in modes)
        lines.append(f"| {f} | {scene} | {preset} | {seed} |" + cells)
    return "\n".join(lines)


def format_report(metrics: dict, info: dict) -> str:
    """report.md: the main table, one table per question, the proxies, what is not computed."""
    suite = info.get("suite", {})
    lines = [
        f"# mirage eval: suite `{suite.get('name', '?')}`",
        "",
        f"Backbone `{info.get('backbone', '?')}` ({info.get('weights', '?')}), {info.get('size', '?')} pixels, "
        f"{suite.get('frames', '?')} frames per path, {info.get('steps', '?')} sampling steps. "
        f"Scenes (held out, seeds < 100): {', '.join(metrics['cases'])}. Seeds {metrics['seeds']}; "
        f"{metrics['runs']} runs. Every figure is mean ± std over the seeds (each seed averaged over "
        "scenes and presets first). Update depth: the tiny estimator on generated frames, unless "
        "the mode says `oracle-depth` (an ablation that hands the model the true geometry).",
        "",
        f"Run: {info.get('command', '')}; wall time {info.get('wall_seconds', 0):.0f} s "
        f"(this invocation; {info.get('runs_done_now', '?')} runs computed now, {info.get('runs_reused', 0)} reused); "
        f"torch threads {info.get('threads', '?')}; load average {info.get('load_start', '?')} at start, "
        f"{info.get('load_end', '?')} at end ({info.get('cpus', '?')} CPUs); {info.get('date', '')}.",
        "",
        "## Main table",
        "",
        main_table(metrics),
        "",
        "## 1. Revisits: does a revisited view come back as it was?",
        "",
        "Frames after the first chunk whose camera is back within 30° and 0.3 units of frame 0. "
        "Keyframes are the latent-aligned frames τk (the tiny VAE interpolates the frames between). "
        "The VAE ceiling is the reconstruction PSNR decode(encode(ground truth)) on the same frames.",
        "",
        *_table(metrics, [("revisit_psnr", "revisit PSNR (dB)"), ("revisit_ssim", "revisit SSIM"),
                          ("revisit_keyframe_psnr", "revisit keyframes (dB)"),
                          ("ceiling_revisit_psnr", "VAE ceiling, revisits (dB)"),
                          ("ceiling_keyframe_psnr", "VAE ceiling, keyframes (dB)"),
                          ("psnr_all", "all-frame PSNR (dB)"), ("ssim_all", "all-frame SSIM")]),
        "",
        "Revisit PSNR by preset:",
        "",
        "| preset | " + " | ".join(metrics["modes"]) + " |",
        "|---|" + "---|" * len(metrics["modes"]),
        *[f"| {p} | " + " | ".join(_fmt(metrics["by_preset"][p][m]["revisit_psnr"], ".2f") for m in metrics["modes"]) + " |"
          for p in metrics["presets"]],
        "",
        "## 2. Closed loops: does a returning path end where it started?",
        "",
        "The last generated frame against the first, on paths whose last pose equals the first.",
        "",
        *_table(metrics, [("closed_loop_psnr", "closed-loop PSNR (dB)"), ("closed_loop_ssim", "closed-loop SSIM")]),
        "",
        "**Exact return.** On paths whose last pose equals the first exactly, the last generated frame "
        "against the ground truth (`return`), and generated frame 0 against ground-truth frame 0 "
        "(`decoded first`: the decoded encoding of the given first frame, the ceiling). Return loss = "
        "decoded first − return; gap closed = (return − none) / (decoded first − none), with `none` the "
        "return PSNR of the same scene, path and seed without memory (so `none` closes 0). Per family, "
        "mean ± std over the seeds, and the range over the paths:",
        "",
        exact_return_family_table(metrics["exact_return"]),
        "",
        "Per path:",
        "",
        exact_return_path_table(metrics["exact_return"]),
        "",
        "## 3. Geometric consistency: does the video follow the scene's geometry?",
        "",
        "Frame t warped into t + τ with ground-truth depth and poses, occlusion-tested against the "
        "ground-truth depth of t + τ; mean absolute colour error in [0, 1] units over the visible "
        "pixels (lower is better). The same on the ground-truth frames is the resampling floor.",
        "",
        *_table(metrics, [("warp_error", "warp error"), ("warp_error_gt", "ground-truth floor")]),
        "",
        "## 4. The memory itself",
        "",
        "Coverage: the share of target latent cells the read covers (mean over chunks). Read "
        "error: RMS difference between the read and the VAE encoding of the ground-truth view, "
        "over covered cells (relative: over the RMS of that encoding). Cache: bytes and points "
        "after the last chunk (per chunk in `cache_bytes.png`).",
        "",
        *_table(metrics, [("read_coverage", "read coverage"), ("read_latent_rmse", "read latent RMSE"),
                          ("read_latent_relative", "read error (relative)"), ("cache_bytes", "cache bytes"),
                          ("cache_points", "cache points")]),
        "",
        "## 5. Time and memory",
        "",
        f"Seconds per generated frame and the share of each lifecycle step. Peak memory: "
        f"{info.get('peak_memory_kind', 'peak RSS increase (sampled)')} during generation.",
        "",
        *_table(metrics, [("s_per_frame", "s/frame"), *[(f"share_{k}", k) for k in TIME_KEYS],
                          ("memory_share", "read + update"), ("peak_memory_bytes", "peak memory (bytes)")]),
        "",
        "## 6. Classical PROXIES (not the learned metrics)",
        "",
    ]
    if info.get("proxies_note"):
        lines += [info["proxies_note"], ""]
    else:
        lines += [
            "PROXY flow round trip: Farnebäck flow t → t+1 → t, mean ‖f + b‖ in pixels (consecutive "
            "frames). PROXY camera error: SIFT + essential matrix on consecutive frames, WorldScore's "
            "rotation (degrees) and translation (world units after its scale fit) formulas, without "
            "its normalisation constants; `pairs ok` is the share of pairs where two-view geometry "
            "succeeded. Ground-truth values are the proxies' own floor on these small frames. Read "
            "them with care: blurry frames give smooth, self-consistent flow, so a round trip *below* "
            "the ground truth's means blur, not better motion; and where SIFT finds too few matches "
            "on generated frames (low `pairs ok`), the camera errors rest on few pairs.",
            "",
            *_table(metrics, [("proxy_flow_roundtrip_px", "flow round trip (px)"),
                              ("proxy_flow_roundtrip_gt_px", "… on ground truth"),
                              ("proxy_rotation_deg", "rotation error (°)"), ("proxy_translation", "translation error"),
                              ("proxy_pairs_ok", "pairs ok"), ("proxy_rotation_gt_deg", "rotation, ground truth (°)"),
                              ("proxy_translation_gt", "translation, ground truth")]),
        ]
    lines += ["", "## Not computed", "", "Metrics that need network weights we cannot ship:", ""]
    lines += [f"- **{n}**: {w}." for n, w in NOT_COMPUTED]
    lines += ["", "## Plots", "",
              "- `per_frame_psnr.png`: per-frame PSNR per mode and preset, revisit frames shaded, VAE ceiling dashed.",
              "- `cache_bytes.png`: cache bytes against frames generated, per mode.",
              "- `time_split.png`: seconds per frame split into read / denoise / decode / depth / update, per mode.",
              "- `contact_sheet.png`: key frames of one path: ground truth | latent | rgb | none.", ""]
    return "\n".join(lines)


def save_report(folder, metrics: dict, info: dict) -> list[Path]:
    """Write ``metrics.json`` (info + aggregates), ``report.md`` and ``summary.md`` (the main
    table, which ``mirage train tiny --install`` puts in the model card) into ``folder``."""
    from mirage.files import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "metrics.json", folder / "report.md", folder / "summary.md"]
    texts = [json.dumps({"format": "mirage.eval-metrics", "version": 1, "info": info, **metrics}, indent=1),
             format_report(metrics, info),
             f"Suite `{info.get('suite', {}).get('name', '?')}` of `mirage eval` (mean ± std over seeds "
             f"{metrics['seeds']}; {len(metrics['cases'])} held-out paths):\n\n{main_table(metrics)}\n"]
    for path, text in zip(paths, texts):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return paths
