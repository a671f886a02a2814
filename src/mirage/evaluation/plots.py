"""The report's PNG plots (matplotlib, the ``[eval]`` extra, imported here only).

- ``per_frame_psnr.png``: mean per-frame PSNR per mode, one panel per preset, revisit frames
  shaded and the VAE ceiling dashed;
- ``cache_bytes.png``: cache bytes against frames generated, per mode;
- ``time_split.png``: seconds per frame split by lifecycle step, per mode;
- ``contact_sheet.png``: key frames of one path, rows ground truth | latent | rgb | none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mirage.errors import ConfigError
from mirage.evaluation.metrics import frame_segments

__all__ = ["require_matplotlib", "plot_per_frame_psnr", "plot_cache_bytes", "plot_time_split",
           "plot_contact_sheet", "save_plots", "PLOTS"]

PLOTS = ("per_frame_psnr.png", "cache_bytes.png", "time_split.png", "contact_sheet.png")
_COLOURS = {"latent": "tab:blue", "rgb": "tab:orange", "rgb+far-field": "tab:brown", "none": "tab:gray",
            "latent+oracle-depth": "tab:green"}
_STEPS = ("init", "read", "denoise", "decode", "depth", "update")


def require_matplotlib():
    """``matplotlib.pyplot`` with the Agg backend, or a ConfigError naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("`mirage eval` draws its plots with matplotlib, which is not installed: "
                          "pip install 'mirage-world[eval]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_per_frame_psnr(metrics: dict):
    """Figure: per-frame PSNR (dB) against frame index, one panel per preset."""
    plt = require_matplotlib()
    presets = metrics["presets"]
    fig, axes = plt.subplots(1, len(presets), figsize=(4.2 * len(presets), 3.4), squeeze=False, sharey=True)
    for ax, preset in zip(axes[0], presets):
        curve = metrics["curves"][preset]
        for a, b in frame_segments(curve["revisit_frames"]):
            ax.axvspan(a - 0.5, b + 0.5, color="gold", alpha=0.3, lw=0)
        for mode, values in curve["psnr"].items():
            ax.plot(range(len(values)), [np.nan if v is None else v for v in values], label=mode,
                    color=_COLOURS.get(mode), lw=1.5)
        ceiling = curve["ceiling_psnr"]
        ax.plot(range(len(ceiling)), [np.nan if v is None else v for v in ceiling], "k--", lw=1, label="VAE ceiling")
        ax.set_title(preset)
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][-1].legend(fontsize=8, title="shaded: revisits", title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_cache_bytes(metrics: dict):
    """Figure: memory cache bytes against frames generated, per mode (log scale)."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for mode, curve in metrics["cache_curves"].items():
        if curve["bytes"] and any(b for b in curve["bytes"]):
            ax.plot(curve["frames"], curve["bytes"], "o-", label=mode, color=_COLOURS.get(mode))
        else:
            ax.plot([], [], "o-", label=f"{mode} (0 bytes)", color=_COLOURS.get(mode))
    ax.set_yscale("log")
    ax.set_xlabel("frames generated")
    ax.set_ylabel("cache bytes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_time_split(metrics: dict):
    """Figure: stacked bars of seconds per frame by lifecycle step, per mode."""
    plt = require_matplotlib()
    split = metrics["time_split_s_per_frame"]
    modes = list(split)
    fig, ax = plt.subplots(figsize=(1.6 * len(modes) + 2.5, 3.4))
    bottom = np.zeros(len(modes))
    for step in _STEPS:
        values = np.array([split[m].get(step, 0.0) for m in modes])
        ax.bar(modes, values, bottom=bottom, label=step)
        bottom += values
    ax.set_ylabel("seconds per frame")
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def plot_contact_sheet(ground_truth: np.ndarray, videos: dict[str, np.ndarray], indices, title: str = ""):
    """Figure: rows ground truth then each mode; columns the key frames.

    ground_truth and every video: (n, H, W, 3) uint8; ``indices``: the n frame numbers.
    """
    plt = require_matplotlib()
    rows = [("ground truth", ground_truth), *videos.items()]
    n = len(indices)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.5 * n + 0.8, 1.5 * len(rows) + 0.4), squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(frames[c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {int(indices[c])}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_plots(folder, metrics: dict, contact: dict | None) -> list[Path]:
    """Write the PNGs into ``folder``. ``contact``: {"ground_truth", "videos", "indices",
    "title"} for the contact sheet (skipped when None)."""
    from mirage.files import atomic_path

    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = [("per_frame_psnr.png", plot_per_frame_psnr(metrics)), ("cache_bytes.png", plot_cache_bytes(metrics)),
               ("time_split.png", plot_time_split(metrics))]
    if contact is not None:
        figures.append(("contact_sheet.png", plot_contact_sheet(contact["ground_truth"], contact["videos"],
                                                                contact["indices"], contact.get("title", ""))))
    paths = []
    for name, fig in figures:
        with atomic_path(folder / name, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        paths.append(folder / name)
    return paths
