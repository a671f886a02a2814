"""The memory at world scale: time per chunk against points in memory, culling on and off (issue 28).

    nice python benchmarks/world_scale.py --out benchmarks/results/world-scale            # 0.1 → 10 M points
    python benchmarks/world_scale.py --quick --out /tmp/world-scale                       # a few minutes
    python benchmarks/world_scale.py --block-sizes 0.5 1 2 4 --points 1000000 --out ...   # the block size

The world is a street: one long analytic box room (:class:`mirage.bench.box_room.BoxRoom`,
``--length`` world units along x, 3 wide and 8 deep), a facade 4 units from a camera that walks
along it looking sideways (yawing ±15°), so every chunk sees about the same amount of surface
while the memory grows with the distance walked. A chunk is 9 latent frames at the 44×80 grid
(``--grid``) of 48-channel random tokens written with their exact depth. The walk is fast
(``--step``, 5 units a frame against a view 4.6 units wide) so the memory reaches 10 M points in
about 320 chunks; each chunk's first frame is the previous chunk's last, written again, so fusion
replaces as well as appends. The first frame of the walk is written at a
higher confidence (as the pipeline does), so the trusted-view test runs too.

Per chunk, on the same memory: the read of the chunk's 9 views (plus reference retrieval) with
culling on, then the write (whole ``write`` time, and the fusion kernel's own time inside it).
At ``--samples`` sizes the same chunk also runs with culling off, side by side: the read on the
same memory, the write on a copy of the memory made before the write (outside the timing); the
two reads and the two memories after the write are checked to be bit-identical. The no-culling
arm projects every point, so it is sampled at a few sizes rather than every chunk.

With ``--fill K`` only one chunk in K (and every sampled chunk) is a timed, full write; the cells
of the others are inserted directly into the blocks (:func:`fill_chunk`: the back-projected cells
their write would append, without fusion or covisibility entries), so that the walk reaches
10 M points in the time a shared 2-core machine allows. Every timed chunk is a complete read and
write of a memory of that size.

Writes ``world_scale.json`` (every chunk), ``world_scale.md`` (the table at the samples) and
``world_scale.png`` (time per chunk against points in memory, both arms). ``torch.set_num_threads``
is fixed (default 2). ``--device cuda`` runs the memory on a GPU (times synchronised).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from mirage.bench.box_room import BoxRoom
from mirage.geometry import Camera, look_at
from mirage.memory import LatentSpatialMemory
from mirage.memory.fusion import fuse_write

FOV_X = 60.0
WALL = 4.0  # distance of the facade


def street_cameras(chunk: int, frames: int, hw, step: float) -> Camera:
    """The ``frames`` views of chunk ``chunk``: the camera walks +x looking at +z, yawing."""
    k = torch.arange(chunk * (frames - 1), chunk * (frames - 1) + frames, dtype=torch.float64)
    x = k * step
    yaw = torch.deg2rad(torch.tensor(15.0, dtype=torch.float64)) * torch.sin(k * 0.7)
    eye = torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], dim=-1)
    target = eye + torch.stack([torch.sin(yaw), 0.05 * torch.cos(k), torch.cos(yaw)], dim=-1)
    return Camera.from_fov(look_at(eye, target).float(), hw[0], hw[1], FOV_X)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


class FusionTimer:
    """Wraps the fusion kernel of one memory and records its time per call."""

    def __init__(self, device) -> None:
        self.device, self.seconds = device, 0.0

    def __call__(self, *args, **kwargs):
        out, dt = timed(lambda: fuse_write(*args, **kwargs), self.device)
        self.seconds += dt
        return out


def chunk_step(memory, room, chunk, args, device, gen):
    """Read the chunk's views, then write them; returns the row of timings and sizes."""
    cams = street_cameras(chunk, args.frames, args.grid, args.step)
    latents = torch.randn(args.frames, args.channels, *args.grid, generator=gen).to(device)
    depth = room.depth(cams).to(device)
    cams = cams.to(device)
    row = {"chunk": chunk, "points": memory.num_points, "bytes": memory.nbytes}
    K = cams.K.float()
    row["points_in_view"] = int(memory.blocks.rows_in_views(K, cams.world2cam.float(), args.grid, 1e-3).shape[0])
    memory.cull = True
    read, row["read_s"] = timed(lambda: _read(memory, cams, args.grid), device)
    row["landed"] = int(read[0].mask.sum())
    timer = FusionTimer(device)
    memory.fusion_kernel = timer
    confidence = [2.0] + [1.0] * (args.frames - 1) if chunk == 0 else 1.0
    frame_ids = list(range(chunk * (args.frames - 1), chunk * (args.frames - 1) + args.frames))

    def write(m):
        return m.write(latents, depth, cams, frame_ids=frame_ids, confidence=confidence)

    sample = chunk in args.sample_chunks
    copy_off = copy.deepcopy(memory) if sample else None
    _, row["write_s"] = timed(lambda: write(memory), device)
    row["fusion_s"] = timer.seconds
    if sample:
        copy_off.cull = False
        timer_off = FusionTimer(device)
        copy_off.fusion_kernel = timer_off
        # the read without culling, on the memory as it was before the write
        read_off, row["read_off_s"] = timed(lambda: _read(copy_off, cams, args.grid), device)
        _, row["write_off_s"] = timed(lambda: write(copy_off), device)
        row["fusion_off_s"] = timer_off.seconds
        row["identical"] = _same_read(read, read_off) and _same_points(memory, copy_off)
        del copy_off
    return row


def fill_chunk(memory, room, chunk, args, gen) -> None:
    """Add the chunk's cells by direct insertion (no fusion, no covisibility entries): what its
    write would append, as its frames barely overlap. Only used between timed chunks."""
    from mirage.geometry import backproject_depth

    cams = street_cameras(chunk, args.frames, args.grid, args.step)
    depth = room.depth(cams)[1:]  # the first frame is the previous chunk's last
    K, c2w = cams.K[1:], cams.cam2world[1:]
    points = backproject_depth(depth, K, c2w).reshape(-1, 3)
    M = points.shape[0]
    ids = torch.arange(chunk * (args.frames - 1) + 1, (chunk + 1) * (args.frames - 1) + 1)
    memory.blocks.append({
        "points": points.to(memory.device),
        "features": torch.randn(M, args.channels, generator=gen).to(memory.device, memory.dtype),
        "frame_ids": ids.repeat_interleave(M // ids.shape[0]).to(memory.device),
        "uids": torch.arange(memory.next_uid, memory.next_uid + M, device=memory.device),
        "confidences": torch.ones(M, device=memory.device),
        "colors": torch.zeros(M, 3, dtype=torch.uint8, device=memory.device)})
    memory.next_uid += M


def _read(memory, cams, grid):
    read = memory.read(cams, grid)
    return read, memory.references(read, k=4, min_iou=0.04) if memory.grid_hw == tuple(grid) else []


def _same_read(a, b) -> bool:
    (ra, refs_a), (rb, refs_b) = a, b
    same = all(torch.equal(x, y) for x, y in zip((ra.features, ra.mask, ra.depth, ra.offset, ra.far),
                                                  (rb.features, rb.mask, rb.depth, rb.offset, rb.far)))
    return same and refs_a == refs_b


def _same_points(a, b) -> bool:
    """The same points with the same attributes, in any storage order."""
    from mirage.memory.attributes import POINT_ATTRIBUTES

    oa, ob = torch.argsort(a.uids), torch.argsort(b.uids)
    return all(torch.equal(getattr(a, n.name)[oa], getattr(b, n.name)[ob]) for n in POINT_ATTRIBUTES)


def walk(args, device, block_size: float, target_points: int, samples) -> list[dict]:
    room = BoxRoom(half=(args.length, 1.5, WALL))
    memory = LatentSpatialMemory(args.channels, block_size=block_size, dtype=args.dtype, device=device)
    gen = torch.Generator().manual_seed(0)
    rows, chunk = [], 0
    pending = sorted(samples)
    args.sample_chunks = set()
    # until the target size, and once more for a sample the last chunk reached
    while memory.num_points < target_points or (pending and memory.num_points >= pending[0]):
        if pending and memory.num_points >= pending[0]:
            args.sample_chunks.add(chunk)
            while pending and memory.num_points >= pending[0]:
                pending.pop(0)
        if args.fill > 1 and chunk % args.fill and chunk not in args.sample_chunks and chunk > 1:
            fill_chunk(memory, room, chunk, args, gen)
            chunk += 1
            continue
        row = chunk_step(memory, room, chunk, args, device, gen)
        rows.append(row)
        if len(rows) % 10 == 1 or "read_off_s" in row:
            print(f"chunk {chunk}: {row['points']:,} points, in view {row['points_in_view']:,}, "
                  f"read {row['read_s'] * 1e3:.0f} ms, write {row['write_s'] * 1e3:.0f} ms"
                  + (f" | off: read {row['read_off_s'] * 1e3:.0f} ms, write {row['write_off_s'] * 1e3:.0f} ms, "
                     f"identical {row['identical']}" if "read_off_s" in row else ""), flush=True)
        chunk += 1
    return rows


def summarise(rows: list[dict], low: int, high: int) -> dict:
    """Medians of read + write per chunk near ``low`` and ``high`` points; the samples' ratios."""
    def near(lo, hi):
        return [r["read_s"] + r["write_s"] for r in rows if lo <= r["points"] < hi]

    first, last = near(low, 2 * low), near(0.9 * high, math.inf) or [rows[-1]["read_s"] + rows[-1]["write_s"]]
    samples = [r for r in rows if "read_off_s" in r]
    return {
        "read_write_s_near_low": statistics.median(first) if first else None,
        "read_write_s_near_high": statistics.median(last),
        "growth": statistics.median(last) / statistics.median(first) if first else None,
        "points_in_view_near_low": statistics.median([r["points_in_view"] for r in rows if low <= r["points"] < 2 * low] or [0]),
        "points_in_view_near_high": statistics.median([r["points_in_view"] for r in rows if r["points"] >= 0.9 * high] or [0]),
        "samples": [{"points": r["points"], "points_in_view": r["points_in_view"], "bytes": r["bytes"],
                     "read_on_s": r["read_s"], "read_off_s": r["read_off_s"],
                     "fusion_on_s": r["fusion_s"], "fusion_off_s": r["fusion_off_s"],
                     "write_on_s": r["write_s"], "write_off_s": r["write_off_s"],
                     "speedup": (r["read_off_s"] + r["write_off_s"]) / (r["read_s"] + r["write_s"]),
                     "identical": r["identical"]} for r in samples],
    }


def table(summary: dict) -> str:
    lines = ["| points in memory | points in view | MiB | read on / off (ms) | fusion on / off (ms) | "
             "write on / off (ms) | read+write speed-up | identical |", "|---|---|---|---|---|---|---|---|"]
    for s in summary["samples"]:
        lines.append(f"| {s['points']:,} | {s['points_in_view']:,} | {s['bytes'] / 2**20:.0f} | "
                     f"{s['read_on_s'] * 1e3:.0f} / {s['read_off_s'] * 1e3:.0f} | "
                     f"{s['fusion_on_s'] * 1e3:.0f} / {s['fusion_off_s'] * 1e3:.0f} | "
                     f"{s['write_on_s'] * 1e3:.0f} / {s['write_off_s'] * 1e3:.0f} | {s['speedup']:.1f}x | "
                     f"{s['identical']} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([r["points"] for r in rows], [(r["read_s"] + r["write_s"]) * 1e3 for r in rows], lw=1,
            label="culling on (every timed chunk)")
    off = [r for r in rows if "read_off_s" in r]
    ax.plot([r["points"] for r in off], [(r["read_off_s"] + r["write_off_s"]) * 1e3 for r in off], "o-",
            label="culling off (sampled)")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("points in memory"), ax.set_ylabel("read + write per chunk (ms)")
    ax.grid(True, which="both", alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=float, default=10e6, help="grow the memory to this many points")
    p.add_argument("--samples", type=float, nargs="*", default=[1e5, 3e5, 1e6, 3e6, 1e7],
                   help="sizes at which the no-culling arm also runs")
    p.add_argument("--quick", action="store_true", help="to 0.4 M points, sampled at 0.1 and 0.3 M")
    p.add_argument("--block-size", type=float, default=None, help="default: the store's")
    p.add_argument("--block-sizes", type=float, nargs="*", default=None,
                   help="instead: one walk per block size (culling only), to pick the default")
    p.add_argument("--fill", type=int, default=1,
                   help="time one chunk in FILL; insert the others' cells directly (see fill_chunk)")
    p.add_argument("--grid", default="44x80")
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--step", type=float, default=5.0, help="world units walked per frame")
    p.add_argument("--length", type=float, default=1e5, help="half length of the street")
    p.add_argument("--dtype", default="float16", help="token dtype (float32 | float16 | bfloat16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/world-scale")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.grid = tuple(int(x) for x in args.grid.split("x"))
    args.dtype = getattr(torch, args.dtype)
    if args.quick:
        args.points, args.samples = 4e5, [1e5, 3e5]
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"grid": list(args.grid), "channels": args.channels, "frames": args.frames, "step": args.step,
            "dtype": str(args.dtype), "device": str(device), "fill": args.fill, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": platform.platform(), "cpus": os.cpu_count()}
    if args.block_sizes:
        result = {"meta": meta, "block_sizes": []}
        for size in args.block_sizes:
            rows = walk(args, device, size, int(args.points), [])
            tail = rows[-20:]
            result["block_sizes"].append({
                "block_size": size, "points": rows[-1]["points"],
                "read_write_ms_last20": statistics.median((r["read_s"] + r["write_s"]) * 1e3 for r in tail),
                "read_ms_last20": statistics.median(r["read_s"] * 1e3 for r in tail),
                "write_ms_last20": statistics.median(r["write_s"] * 1e3 for r in tail),
                "points_in_view": statistics.median(r["points_in_view"] for r in tail)})
            print(result["block_sizes"][-1], flush=True)
        (out / "block_size.json").write_text(json.dumps(result, indent=1))
        return 0
    from mirage.memory.blocks import DEFAULT_BLOCK_SIZE

    size = args.block_size or DEFAULT_BLOCK_SIZE
    meta["block_size"] = size
    rows = walk(args, device, size, int(args.points), [int(s) for s in args.samples])
    summary = summarise(rows, int(min(args.samples)), int(args.points))
    (out / "world_scale.json").write_text(json.dumps({"meta": meta, "summary": summary, "chunks": rows}, indent=1))
    (out / "world_scale.md").write_text(table(summary) + "\n")
    plot(rows, out / "world_scale.png")
    print(table(summary))
    print({k: v for k, v in summary.items() if k != "samples"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
