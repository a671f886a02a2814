"""`mirage data import` + `mirage data build` throughput, disk, and resume after a kill (issue 19).

    python benchmarks/data_import.py --out benchmarks/results/data-import

Input: ``--clips`` procedural clips (``--frames`` frames of ``--size``², room/courtyard scenes,
orbit paths) rendered once (not timed) and written as real footage would arrive:

- a folder of RealEstate10K camera files + PNG frames named by timestamp + metric ``.npy`` depth;
- one COLMAP project per clip (binary model with sparse points from the true depth) + PNG frames.

Runs, each through the CLI in a subprocess (``python -m mirage``), CPU only, side by side:

- ``re10k+depth-dir``: all clips, depth from ``--depth-dir``;
- ``colmap+depth-model``: all clips, depth from ``--depth-model`` = a tiny *random* Depth Anything
  saved locally (the loading/batching/alignment plumbing; a real Depth Anything V2 costs far more
  per frame on a CPU), ``--max-residual 1e9`` so that its meaningless depth is kept;
- ``re10k+triangulation``: ``--tri-clips`` clips, depth from a stand-in relative model (the true
  inverse depth through a per-frame scale and shift) aligned to triangulated SIFT matches (in
  process: the stand-in is not a transformers model);
- ``build``: ``mirage data build --backbone tiny`` (shipped weights) of the re10k clips, once
  uninterrupted (timed), once killed (SIGKILL) when a third of its shards are recorded and rerun;
  then checked: every clip's samples present once, equal to the uninterrupted build;
- ``import-kill``: the re10k import killed when a third of its clips are recorded and rerun;
  checked: every clip once, equal to the uninterrupted import.

Writes ``data_import.json`` and ``data_import.md`` under ``--out``; per-1,000-clip figures are
extrapolated linearly from this small run and labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def render_inputs(work: Path, clips: int, frames: int, size: int, colmap: bool = True) -> dict:
    import torch

    from mirage.geometry import backproject_depth
    from mirage.world import generate_scene, make_trajectory
    from mirage.cameras import write_colmap, write_realestate10k
    from mirage.world.dataset import render_clip_arrays
    from tests.data.conftest import save_png

    re, cm = work / "re10k", work / "colmap"
    t0 = time.perf_counter()
    for c in range(clips):
        scene = generate_scene(("room", "courtyard")[c % 2], 2000 + c)
        cams = make_trajectory("orbit", scene, frames, size, size, turns=0.2)
        arr = render_clip_arrays(scene, cams, 16.0)
        depth = np.where(np.isfinite(arr["depths"]), arr["depths"], 0.0).astype(np.float32)
        name = f"clip{c:04d}"
        stamps = np.arange(frames) * 62_500
        write_realestate10k(re / "cameras" / f"{name}.txt", cams, stamps)
        grid = np.stack(np.meshgrid(np.arange(2, size, 6), np.arange(3, size, 6), indexing="ij"), -1).reshape(-1, 2)
        points, obs = [], []
        for k in range(frames):
            save_png(re / "frames" / name / f"{stamps[k]}.png", arr["frames"][k])
            (re / "depth" / name).mkdir(parents=True, exist_ok=True)
            np.save(re / "depth" / name / f"{stamps[k]}.npy", depth[k])
            if not colmap:
                continue
            save_png(cm / name / "images" / f"{k:05d}.png", arr["frames"][k])
            world = backproject_depth(torch.from_numpy(depth[k:k + 1]).double(), cams.K[k:k + 1].double(),
                                      cams.cam2world[k:k + 1].double())[0]
            ok = depth[k][grid[:, 0], grid[:, 1]] > 0
            sel = grid[ok]
            base = sum(len(p) for p in points)
            points.append(world[sel[:, 0], sel[:, 1]].numpy())
            obs.append(np.column_stack([sel[:, 1], sel[:, 0], base + np.arange(len(sel))]).astype(float))
        if colmap:
            write_colmap(cm / name / "sparse" / "0", cams, [f"{k:05d}.png" for k in range(frames)],
                         np.concatenate(points), obs)
    return {"render_s": time.perf_counter() - t0, "re10k": re, "colmap": cm}


def tiny_depth_model(path: Path) -> Path:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2"], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, reassemble_factors=[2, 1],
                              neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=16, patch_size=14)
    DepthAnythingForDepthEstimation(cfg).save_pretrained(path)
    DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=False, ensure_multiple_of=14).save_pretrained(path)
    return path


def cli(args: list[str], env: dict, kill_when=None) -> tuple[float, bool]:
    """Run ``python -m mirage ARGS``; SIGKILL it once ``kill_when()`` is true. (seconds, killed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mirage", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if kill_when is not None:
        while proc.poll() is None:
            if kill_when():
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                return time.perf_counter() - t0, True
            time.sleep(0.02)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"mirage {' '.join(args)} failed:\n{err[-3000:]}")
    return time.perf_counter() - t0, False


def count(path: Path, key: str) -> int:
    try:
        return len(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError):
        return 0


def check_build(built: Path, clips: list[str], per_clip: int) -> dict:
    from mirage.data import SampleIndex

    index = json.loads((built / "index.json").read_text())
    keys = [k for s in index["shards"] for k in s["keys"]]
    data = SampleIndex(built)
    metas = [data[i][1] for i in range(len(data))]
    per = {c: sorted(m["start"] for m in metas if m["clip"] == c) for c in clips}
    return {"complete": index["complete"], "samples": len(keys), "unique_keys": len(set(keys)),
            "every_clip_whole": all(v == list(range(per_clip)) for v in per.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/data-import")
    ap.add_argument("--work", default="out/bench-data-import")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--tri-clips", type=int, default=20)
    ap.add_argument("--tri-size", type=int, default=192,
                    help="source size of the triangulation clips (imported at --size): SIFT needs real resolution")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    inputs = render_inputs(work, args.clips, args.frames, args.size)
    model_dir = tiny_depth_model(work / "tiny-depth-anything")
    re, cm = inputs["re10k"], inputs["colmap"]
    F = args.clips * args.frames
    runs = {}

    def imp(name, cameras, images, depth, out, extra=(), kill=None):
        a = ["data", "import", "--cameras", str(cameras), "--out", str(out), "--no-progress", *depth, *extra]
        if images is not None:
            a += ["--images", str(images)]
        return cli(a, env, kill)

    s, _ = imp("re10k", re / "cameras", re / "frames", ["--depth-dir", str(re / "depth")], work / "clips-re10k")
    runs["re10k+depth-dir"] = {"clips": args.clips, "frames": F, "seconds": s}
    s, _ = imp("colmap", cm, None, ["--depth-model", str(model_dir), "--max-residual", "1e9"], work / "clips-colmap")
    runs["colmap+depth-model"] = {"clips": args.clips, "frames": F, "seconds": s}

    # triangulation, in process (the stand-in relative model is a callable, not a transformers folder)
    from mirage.data.importers import import_clips

    class StandIn:
        name = "stand-in"

        def __init__(self, depth_root):
            self.root = depth_root
            self.calls = 0

        def __call__(self, frames):
            clip = f"clip{self.calls:04d}"
            self.calls += 1
            d = np.stack([np.load(p) for p in sorted((self.root / clip).glob("*.npy"), key=lambda p: int(p.stem))])
            from mirage.data.importers import _resize_depth

            d = _resize_depth(d, frames.shape[1:3])  # the importer's nearest-pixel-centre rule
            k = np.arange(len(d))[:, None, None]
            with np.errstate(divide="ignore"):
                return ((2.0 + 0.3 * k) / d + 0.1).astype(np.float32)

    from mirage.data.importers import ImportConfig

    tri_in = render_inputs(work / "tri", args.tri_clips, args.frames, args.tri_size, colmap=False)["re10k"]
    t0 = time.perf_counter()
    tri = import_clips(tri_in / "cameras", work / "clips-tri", ImportConfig(size=(args.size, args.size)),
                       images=tri_in / "frames", depth_model=StandIn(tri_in / "depth"), progress=False)
    runs["re10k+triangulation"] = {"source_size": args.tri_size, "clips": args.tri_clips, "frames": args.tri_clips * args.frames,
                                   "seconds": time.perf_counter() - t0, "imported": len(tri["clips"]),
                                   "fit_residual_median": float(np.median([c["depth"]["fit_residual"] for c in tri["clips"]]))
                                   if tri["clips"] else None,
                                   "skipped_reasons": sorted({s["reason"].split(":")[0] for s in tri["skipped"]})}
    for r in runs.values():
        r["clips_per_s"] = r["clips"] / r["seconds"]
        r["frames_per_s"] = r["frames"] / r["seconds"]

    # import killed (once a third of the clips are recorded) and resumed
    kill_out = work / "clips-kill"
    _, killed = imp("re10k", re / "cameras", re / "frames", ["--depth-dir", str(re / "depth")], kill_out,
                    kill=lambda: count(kill_out / "index.json", "clips") >= args.clips // 3)
    partial = count(kill_out / "index.json", "clips")
    s2, _ = imp("re10k", re / "cameras", re / "frames", ["--depth-dir", str(re / "depth")], kill_out)
    final = json.loads((kill_out / "index.json").read_text())
    names = [c["name"] for c in final["clips"]]
    runs["import-kill"] = {"killed": killed, "clips_before_kill": partial, "rerun_seconds": s2,
                           "clips_after": len(names), "unique": len(set(names)),
                           "identical_to_uninterrupted": all(
                               np.array_equal(np.load(kill_out / n / "geometry.npz")["depths"],
                                              np.load(work / "clips-re10k" / n / "geometry.npz")["depths"]) for n in names)}

    # build: uninterrupted, then killed (once a third of the shards are recorded) and resumed
    def build(out):
        return ["data", "build", "--clips", str(work / "clips-re10k"), "--backbone", "tiny", "--out", str(out),
                "--no-progress"]

    full_s, _ = cli(build(work / "built-full"), env)
    shards = len(list((work / "built-full" / "records").glob("*.json")))
    records = work / "built" / "records"
    s1, killed = cli(build(work / "built"), env,
                     lambda: records.is_dir() and len(list(records.glob("*.json"))) >= shards // 3)
    done = len(list(records.glob("*.json"))) if records.is_dir() else 0
    s2, _ = cli(build(work / "built"), env)
    from mirage.backbones import load_backbone
    from mirage.data import SampleIndex

    bb = load_backbone("tiny")
    latent = (args.frames - 1) // bb.temporal_stride + 1
    per_clip = latent - 1 if args.frames >= bb.max_frames else 0
    names = sorted(c["name"] for c in json.loads((work / "clips-re10k" / "index.json").read_text())["clips"])
    a, b = SampleIndex(work / "built-full"), SampleIndex(work / "built")
    same = len(a) == len(b) and all(
        a[i][1] == b[i][1] and all(np.array_equal(a[i][0][k].numpy(), b[i][0][k].numpy()) for k in a[i][0])
        for i in range(len(a)))
    runs["build"] = {"seconds": full_s, "clips": len(names), "seconds_per_clip": full_s / len(names),
                     "killed": killed, "killed_after_s": s1, "shards_before_kill": done, "shards": shards,
                     "rerun_seconds": s2, "identical_to_uninterrupted": same,
                     **check_build(work / "built", names, per_clip)}

    disk = {"inputs_re10k_bytes": du(re), "inputs_colmap_bytes": du(cm), "clips_bytes": du(work / "clips-re10k"),
            "built_bytes": du(work / "built")}
    per1000 = {
        "import_minutes": runs["re10k+depth-dir"]["seconds"] / args.clips * 1000 / 60,
        "import_depth_model_minutes": runs["colmap+depth-model"]["seconds"] / args.clips * 1000 / 60,
        "import_triangulation_minutes": runs["re10k+triangulation"]["seconds"] / args.tri_clips * 1000 / 60,
        "build_minutes": runs["build"]["seconds_per_clip"] * 1000 / 60,
        "clips_GiB": disk["clips_bytes"] / args.clips * 1000 / 2**30,
        "built_GiB": disk["built_bytes"] / args.clips * 1000 / 2**30,
        "inputs_GiB": disk["inputs_re10k_bytes"] / args.clips * 1000 / 2**30,
    }
    result = {"benchmark": "data_import", "clips": args.clips, "frames": args.frames, "size": args.size,
              "threads": args.threads, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                   "load_1min": os.getloadavg()[0]},
              "render_s": inputs["render_s"], "runs": runs, "disk": disk,
              "per_1000_clips_extrapolated": per1000}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_import.json").write_text(json.dumps(result, indent=1))
    lines = [f"# data import + build: {args.clips} clips of {args.frames} frames at {args.size}x{args.size}, "
             f"{args.threads} threads, CPU (load {result['machine']['load_1min']:.1f})", "",
             "Seconds are wall time of one CLI process, its start-up (torch, transformers) included; the "
             "triangulation run is in process.", "",
             "| run | clips | frames | seconds | clips/s | frames/s |", "| --- | --- | --- | --- | --- | --- |"]
    for name in ("re10k+depth-dir", "colmap+depth-model", "re10k+triangulation"):
        r = runs[name]
        label = f"{name} ({args.tri_size}² → {args.size}²)" if name == "re10k+triangulation" else name
        lines.append(f"| {label} | {r['clips']} | {r['frames']} | {r['seconds']:.1f} | {r['clips_per_s']:.2f} | "
                     f"{r['frames_per_s']:.1f} |")
    b, k = runs["build"], runs["import-kill"]
    lines += ["", f"- data build (tiny backbone, shipped weights): {b['clips']} clips in {b['seconds']:.1f} s "
              f"({b['clips'] / b['seconds']:.2f} clips/s, start-up included)",
              f"- import killed (SIGKILL) with {k['clips_before_kill']} clips recorded; rerun "
              f"{k['rerun_seconds']:.1f} s → {k['clips_after']} clips, {k['unique']} unique, identical to the "
              f"uninterrupted import: {k['identical_to_uninterrupted']}",
              f"- build killed (SIGKILL) after {b['killed_after_s']:.1f} s with {b['shards_before_kill']} of "
              f"{b['shards']} shards recorded; rerun {b['rerun_seconds']:.1f} s → complete {b['complete']}, "
              f"{b['samples']} samples, {b['unique_keys']} unique keys, every clip whole: {b['every_clip_whole']}, "
              f"identical to the uninterrupted build: {b['identical_to_uninterrupted']}",
              "", "Per 1,000 clips, **extrapolated linearly from this run**:", "",
              "| step | time | disk |", "| --- | --- | --- |",
              f"| inputs (PNG frames + .npy depth + camera files) | – | {per1000['inputs_GiB']:.2f} GiB |",
              f"| import, --depth-dir | {per1000['import_minutes']:.1f} min | {per1000['clips_GiB']:.2f} GiB |",
              f"| import, --depth-model (tiny random model) | {per1000['import_depth_model_minutes']:.1f} min | same |",
              f"| import, triangulated alignment | {per1000['import_triangulation_minutes']:.1f} min | same |",
              f"| data build (tiny, 64x64) | {per1000['build_minutes']:.1f} min | {per1000['built_GiB']:.2f} GiB |"]
    (out / "data_import.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
