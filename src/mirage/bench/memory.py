"""The memory benchmark: latent read vs RGB render + VAE encode, kernel vs sort-per-view, bytes.

One static scene (the analytic box room) and one camera path that pans 150° away and back with
a period that is not a multiple of the VAE's temporal stride, so later passes revisit the scene
from new angles. The path is cut into chunks as the pipeline cuts it (33 pixel frames = 9 latent
frames, one latent frame of overlap). Per chunk, measured side by side in one run:

- latent read: ``LatentSpatialMemory.read`` of the chunk's 9 target views at latent resolution;
- RGB read path: ``RGBPointCloudMemory.render`` of the chunk's 33 pixel frames at full
  resolution, then the Wan2.2-TI2V-5B VAE encode (diffusers ``AutoencoderKLWan``, random
  weights: encode cost does not depend on weight values) of that render to 9 latents;
- the same latent points read by our kernel and by a straightforward sort-per-view
  implementation (the reference algorithm), checked to agree;
- cache bytes for latent-append, latent-voxel and RGB after the chunk is written.

The latent tokens written are random: timing and bytes do not depend on their values. The RGB
cache writes the same latent-aligned frames, at pixel resolution.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from mirage.bench.box_room import BoxRoom, pan_path
from mirage.errors import ConfigError
from mirage.geometry import pixel_index, project_points
from mirage.memory import LatentSpatialMemory, RGBPointCloudMemory
from mirage.memory.splat import DEFAULT_NEAR, splat_zbuffer

__all__ = ["MemoryBenchConfig", "run_memory_bench", "format_table", "read_sort_per_view",
           "wan22_vae"]

SPATIAL_STRIDE, TEMPORAL_STRIDE, LATENT_FRAMES = 16, 4, 9


@dataclass(frozen=True)
class MemoryBenchConfig:
    height: int = 176
    width: int = 320
    chunks: int = 10
    channels: int = 48
    period: int = 70  # pixel frames per look-away-and-back pass
    degrees: float = 150.0
    rgb: bool = True  # run the RGB baseline (cache, render, VAE encode)
    vae: bool = True  # time the RGB path's VAE encode (diffusers needed)
    vae_chunks: int = 0  # encode on the first N chunks only (0 = every chunk)
    repeats: int = 5  # reads are timed as the best of this many interleaved runs
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.height % SPATIAL_STRIDE or self.width % SPATIAL_STRIDE or min(self.height, self.width) <= 0:
            raise ConfigError(
                f"`size` must be positive multiples of {SPATIAL_STRIDE} but is "
                f"{self.height}x{self.width}"
            )
        if self.chunks < 1 or self.repeats < 1 or self.period < 2 or self.vae_chunks < 0:
            raise ConfigError(
                f"`chunks`, `repeats` must be ≥ 1, `period` ≥ 2 and `vae_chunks` ≥ 0 but are "
                f"{self.chunks}, {self.repeats}, {self.period}, {self.vae_chunks}"
            )

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // SPATIAL_STRIDE, self.width // SPATIAL_STRIDE


def wan22_vae(device: str = "cpu"):
    """diffusers ``AutoencoderKLWan`` in the Wan2.2-TI2V-5B configuration, random weights."""
    try:
        from diffusers import AutoencoderKLWan
    except ImportError:
        raise ConfigError(
            "the RGB read path needs diffusers: `pip install 'mirage-world[wan]'` "
            "(or run the benchmark with --no-vae)"
        ) from None
    vae = AutoencoderKLWan(
        base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
        temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
        out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
        latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
    )
    if device.startswith("cuda"):
        vae = vae.to(dtype=torch.bfloat16)
    return vae.to(device=device).eval()


def read_sort_per_view(
    points_world: Tensor,  # (N, 3)
    features: Tensor,  # (N, C)
    K: Tensor,  # (V, 3, 3)
    world2cam: Tensor,  # (V, 4, 4)
    hw: tuple[int, int],
) -> tuple[Tensor, Tensor]:  # features (V, C, h, w), index (V, h, w)
    """The reference algorithm: one view at a time, sort all landed points, keep the nearest.

    Stable sort by depth, then a stable sort by pixel: the first entry of each pixel's run is its
    nearest point (ties to the lower index). O(V·N log N).
    """
    h, w = hw
    out = features.new_zeros(K.shape[0], features.shape[1], h * w)
    index = torch.full((K.shape[0], h * w), -1, dtype=torch.long, device=points_world.device)
    for v in range(K.shape[0]):
        uv, z = project_points(points_world, K[v:v + 1], world2cam[v:v + 1])
        row, col = pixel_index(uv[0])
        z = z[0]
        ok = (z > DEFAULT_NEAR) & (row >= 0) & (row < h) & (col >= 0) & (col < w)
        ids = ok.nonzero(as_tuple=True)[0]
        pix = (row * w + col)[ids]
        by_depth = torch.sort(z[ids], stable=True).indices
        ids, pix = ids[by_depth], pix[by_depth]
        by_pixel = torch.sort(pix, stable=True).indices
        ids, pix = ids[by_pixel], pix[by_pixel]
        first = torch.ones_like(pix, dtype=torch.bool)
        first[1:] = pix[1:] != pix[:-1]
        index[v, pix[first]] = ids[first]
        out[v, :, pix[first]] = features[ids[first]].T
    return out.view(-1, features.shape[1], h, w), index.view(-1, h, w)


def _timed(*fns, repeats: int, device: str):
    """Best-of-``repeats`` seconds for each function, runs interleaved (A B A B ...).

    Interleaving puts every side under the same background load; the minimum is the least
    disturbed run. Returns ([seconds per fn], [last result per fn]).
    """
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    best = [float("inf")] * len(fns)
    results = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync()
            start = time.perf_counter()
            results[i] = fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
    return best, results


def run_memory_bench(config: MemoryBenchConfig, progress: bool = True) -> dict:
    """Run the benchmark and return its results as a JSON-ready dict."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    dev = config.device
    H, W = config.height, config.width
    h, w = config.latent_hw
    span = LATENT_FRAMES - 1  # new latent frames per chunk after the first
    pixel_frames = config.chunks * span * TEMPORAL_STRIDE + 1
    room = BoxRoom()
    cams_pixel = pan_path(pixel_frames, H, W, degrees=config.degrees,
                          passes=(pixel_frames - 1) / config.period).to(device=dev)
    cams_latent = cams_pixel[::TEMPORAL_STRIDE]  # pose of latent frame k = pixel frame 4k
    depth = room.depth(cams_latent.to("cpu")).to(dev)  # (T, H, W)
    images = room.rgb(cams_latent.to("cpu")).to(dev)  # (T, 3, H, W)
    gen = torch.Generator(device=dev).manual_seed(config.seed)
    latents = torch.randn(len(cams_latent), config.channels, h, w, generator=gen, device=dev)

    voxel = LatentSpatialMemory(config.channels, device=dev)
    append = LatentSpatialMemory(config.channels, fusion="append", device=dev)
    rgb = RGBPointCloudMemory(device=dev) if config.rgb else None
    vae = wan22_vae(dev) if config.rgb and config.vae else None

    def write(frames: slice) -> None:
        ids = list(range(frames.start, frames.stop))
        for memory in (voxel, append):
            memory.write(latents[frames], depth[frames], cams_latent[frames], frame_ids=ids)
        if rgb is not None:
            rgb.write(images[frames], depth[frames], cams_latent[frames], frame_ids=ids)

    write(slice(0, 1))  # initialise with the first frame
    rows = []
    for k in tqdm(range(config.chunks), desc="memory bench", unit="chunk", disable=not progress):
        targets = cams_latent[k * span: k * span + LATENT_FRAMES]
        targets_pixel = cams_pixel[k * span * TEMPORAL_STRIDE: (k * span + span) * TEMPORAL_STRIDE + 1]
        row = {"chunk": k, "views": len(targets), "pixel_frames": len(targets_pixel)}
        # ours (on the fused and on the append memory) vs the sort-per-view reference, on the
        # same (largest) point set
        small = targets.scaled(h, w)
        row["points_append"] = append.num_points
        (row["latent_read_s"], row["kernel_read_s"], row["sort_read_s"]), (read, _, ref) = _timed(
            lambda: voxel.read(targets, (h, w)),
            lambda: append.read(targets, (h, w)),
            lambda: read_sort_per_view(append.points, append.features, small.K, small.world2cam,
                                       (h, w)),
            repeats=config.repeats, device=dev)
        row["latent_coverage"] = float(read.mask.float().mean())
        ref_index = ref[1]
        ours_index = splat_zbuffer(append.points, small.K, small.world2cam, (h, w)).index
        row["kernel_matches_sort"] = bool(torch.equal(ours_index, ref_index))
        if rgb is not None:  # the RGB baseline's read path: render every pixel frame, encode
            (row["rgb_render_s"],), (render,) = _timed(
                lambda: rgb.render(targets_pixel, (H, W)), repeats=1, device=dev)
            row["rgb_coverage"] = float(render.mask.float().mean())
            if vae is not None and (config.vae_chunks == 0 or k < config.vae_chunks):
                video = render.features.permute(1, 0, 2, 3)[None].to(next(vae.parameters()).dtype)
                with torch.no_grad():
                    (row["vae_encode_s"],), (z,) = _timed(
                        lambda: vae.encode(video).latent_dist.mode(), repeats=1, device=dev)
                assert z.shape[2:] == (LATENT_FRAMES, h, w), z.shape
        write(slice(1 if k == 0 else k * span + 1, k * span + LATENT_FRAMES))
        row.update(bytes_latent_append=append.nbytes, bytes_latent_voxel=voxel.nbytes,
                   points_voxel=voxel.num_points)
        if rgb is not None:
            row.update(bytes_rgb=rgb.nbytes, points_rgb=rgb.num_points)
        rows.append(row)
    return {"config": asdict(config) | {"latent_hw": [h, w]}, "chunks": rows,
            "summary": _summarise(rows, config)}


def _summarise(rows: list[dict], config: MemoryBenchConfig) -> dict:
    # Medians over chunks: robust to a noisy machine. Ratios are taken per chunk (both sides
    # measured back to back) and then their median.
    def median(values):
        values = list(values)
        return statistics.median(values) if values else None

    last = rows[-1]
    # The first pass ends at the first chunk whose last frame is past the first return.
    span_pixels = (LATENT_FRAMES - 1) * TEMPORAL_STRIDE
    first_pass_chunk = min(len(rows) - 1, -(-config.period // span_pixels) - 1)
    points_first_pass = rows[first_pass_chunk]["points_voxel"]
    s = {
        "latent_read_s_per_chunk": median(r["latent_read_s"] for r in rows),
        "rgb_render_s_per_chunk": median(r["rgb_render_s"] for r in rows if "rgb_render_s" in r),
        "vae_encode_s_per_chunk": median(r["vae_encode_s"] for r in rows if "vae_encode_s" in r),
        "kernel_speedup_vs_sort": median(r["sort_read_s"] / r["kernel_read_s"] for r in rows),
        "kernel_matches_sort_all_chunks": all(r["kernel_matches_sort"] for r in rows),
        "throughput_mpoint_proj_per_s": median(
            r["points_append"] * r["views"] / r["kernel_read_s"] / 1e6 for r in rows),
        "points_append_final": last["points_append"],
        "first_pass_chunk": first_pass_chunk,
        "points_voxel_after_first_pass": points_first_pass,
        "points_voxel_final": last["points_voxel"],
        "voxel_growth_after_first_pass": last["points_voxel"] / points_first_pass - 1,
    }
    if "bytes_rgb" in last:
        s["bytes_rgb_over_latent_voxel"] = last["bytes_rgb"] / last["bytes_latent_voxel"]
        s["bytes_rgb_over_latent_append"] = last["bytes_rgb"] / last["bytes_latent_append"]
    if s["vae_encode_s_per_chunk"] is not None:
        rgb_path = [r["rgb_render_s"] + r["vae_encode_s"] for r in rows if "vae_encode_s" in r]
        s["rgb_read_path_s_per_chunk"] = median(rgb_path)
        s["rgb_path_over_latent_read"] = median(
            (r["rgb_render_s"] + r["vae_encode_s"]) / r["latent_read_s"]
            for r in rows if "vae_encode_s" in r)
    return s


def format_table(result: dict) -> str:
    """A plain-text report: per-chunk rows, then the headline ratios."""
    c, s = result["config"], result["summary"]
    h, w = c["latent_hw"]
    lines = [
        f"mirage memory benchmark — {c['height']}x{c['width']} pixels, latent {h}x{w}x"
        f"{c['channels']}, {c['chunks']} chunks x 9 latent frames, device {c['device']}",
        "",
        f"{'chunk':>5} {'latent read':>12} {'rgb render':>11} {'vae encode':>11} "
        f"{'kernel':>9} {'sort/view':>10} {'MiB latent-app':>15} {'MiB latent-vox':>15} "
        f"{'MiB rgb':>10}",
    ]
    mib = 2 ** 20
    for r in result["chunks"]:
        enc = f"{r['vae_encode_s']:.3f}s" if "vae_encode_s" in r else "-"
        render = f"{r['rgb_render_s']:.3f}s" if "rgb_render_s" in r else "-"
        rgb_mib = f"{r['bytes_rgb'] / mib:.2f}" if "bytes_rgb" in r else "-"
        lines.append(
            f"{r['chunk']:>5} {r['latent_read_s'] * 1e3:>10.2f}ms {render:>11} "
            f"{enc:>11} {r['kernel_read_s'] * 1e3:>7.2f}ms {r['sort_read_s'] * 1e3:>8.2f}ms "
            f"{r['bytes_latent_append'] / mib:>15.3f} {r['bytes_latent_voxel'] / mib:>15.3f} "
            f"{rgb_mib:>10}"
        )
    lines += [
        "",
        f"latent read per chunk (median):    {s['latent_read_s_per_chunk'] * 1e3:.2f} ms",
    ]
    if "rgb_read_path_s_per_chunk" in s:
        lines += [
            f"rgb render + VAE encode per chunk: {s['rgb_read_path_s_per_chunk']:.3f} s "
            f"(medians: render {s['rgb_render_s_per_chunk']:.3f} s, "
            f"encode {s['vae_encode_s_per_chunk']:.3f} s)",
            f"rgb read path / latent read:       {s['rgb_path_over_latent_read']:.0f}x",
        ]
    elif s["rgb_render_s_per_chunk"] is not None:
        lines.append(f"rgb render per chunk (no VAE):     {s['rgb_render_s_per_chunk']:.3f} s")
    lines += [
        f"kernel vs sort-per-view (median):  {s['kernel_speedup_vs_sort']:.2f}x faster "
        f"(indices identical on every chunk: {s['kernel_matches_sort_all_chunks']})",
        f"read throughput (median):          {s['throughput_mpoint_proj_per_s']:.1f} M point-projections/s "
        f"({s['points_append_final']} latent points at the end)",
    ]
    if "bytes_rgb_over_latent_voxel" in s:
        lines.append(
            f"bytes rgb / latent-voxel:          {s['bytes_rgb_over_latent_voxel']:.0f}x "
            f"(rgb / latent-append: {s['bytes_rgb_over_latent_append']:.1f}x)")
    lines += [
        f"latent-voxel growth after 1st pass: {100 * s['voxel_growth_after_first_pass']:+.2f}% "
        f"({s['points_voxel_after_first_pass']} points after chunk {s['first_pass_chunk']}, "
        f"{s['points_voxel_final']} at the end)",
    ]
    return "\n".join(lines)


def save_result(result: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_bench.json").write_text(json.dumps(result, indent=2))
    (out / "memory_bench.txt").write_text(format_table(result) + "\n")
    return out
