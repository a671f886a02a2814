"""`TinyConfig`: every size of the tiny world model in one frozen, validated dataclass."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from mirage.errors import ConfigError
from mirage.frames import is_frame_count

__all__ = ["TinyConfig"]


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny backbone: VAE, memory-conditioned denoiser and depth estimator.

    The default image size is 64×64 with spatial stride 4 (a 16×16 latent grid, tokens of 2×2
    cells): the size the shipped weights were trained at, chosen so that data, training and
    generation fit a 2-core CPU. The networks are convolutional / token based, so any size
    divisible by ``spatial_stride·patch`` runs.
    """

    height: int = 64
    width: int = 64
    spatial_stride: int = 4  # 4 (two stride-2 stages) or 8 (three)
    # Wan-style: latent 0 = frame 0, latent k = frames 4k−3..4k. Any τ ≥ 1 works; τ = 1 gives
    # every frame its own latent (see benchmarks/results/tiny-tau1 for how that model fared).
    temporal_stride: int = 4
    latent_channels: int = 16
    max_frames: int = 17  # pixel frames per chunk: 5 latent frames
    vae_widths: tuple[int, ...] = (16, 32, 128, 128)  # channels at strides 1, 2, 4, 8 (8: if used)
    vae_blocks: int = 1  # residual blocks at the latent level (encoder and decoder; dilated in the decoder)
    vae_full_res_block: bool = False  # a residual block at full resolution in the decoder
    patch: int = 2  # denoiser tokens are patch×patch latent cells
    dim: int = 128  # denoiser token width
    layers: int = 4
    heads: int = 4
    # Feed the denoiser each covered cell's sub-cell offset (MemoryRead.offset): how far the
    # nearest-cell read is misaligned, so the network can trust exact reads and resample the rest.
    memory_offsets: bool = False
    preceding: int = 1  # clean latent frames before the chunk's first frame
    references: int = 1  # covisible past latent frames
    depth_widths: tuple[int, ...] = (16, 32, 48, 64)
    steps: int = 6  # default sampling steps
    schedule_shift: float = 1.0  # t' = shift·t / (1 + (shift − 1)·t) on the sampling grid

    def __post_init__(self) -> None:
        object.__setattr__(self, "vae_widths", tuple(int(w) for w in self.vae_widths))
        object.__setattr__(self, "depth_widths", tuple(int(w) for w in self.depth_widths))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "schedule_shift":
                if not value > 0:
                    raise ConfigError(f"`schedule_shift` must be > 0 but is {value}")
            elif f.name in ("vae_full_res_block", "memory_offsets"):
                if not isinstance(value, bool):
                    raise ConfigError(f"`{f.name}` must be a bool but is {value!r}")
            elif isinstance(value, tuple):
                if len(value) != 4 or min(value) < 1:
                    raise ConfigError(f"`{f.name}` must be 4 positive widths but is {value}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"`{f.name}` must be an int ≥ 0 but is {value!r}")
        if self.spatial_stride not in (4, 8):
            raise ConfigError(f"`spatial_stride` must be 4 or 8 but is {self.spatial_stride}")
        if self.patch < 1 or self.height % (self.spatial_stride * self.patch) or self.width % (
            self.spatial_stride * self.patch
        ):
            raise ConfigError(
                f"`height` and `width` ({self.height}, {self.width}) must be divisible by "
                f"spatial_stride·patch = {self.spatial_stride * self.patch}"
            )
        if self.temporal_stride < 1:
            raise ConfigError(f"`temporal_stride` must be ≥ 1 but is {self.temporal_stride}")
        if not is_frame_count(self.max_frames, self.temporal_stride):
            raise ConfigError(
                f"`max_frames` must be τ·k+1 with k ≥ 1 (τ = {self.temporal_stride}) but is "
                f"{self.max_frames}"
            )
        if self.dim % self.heads or self.dim % 4:
            raise ConfigError(f"`dim` ({self.dim}) must be divisible by `heads` ({self.heads}) and 4")
        if min(self.latent_channels, self.dim, self.layers, self.heads, self.steps, self.vae_blocks) < 1:
            raise ConfigError("`latent_channels`, `dim`, `layers`, `heads`, `steps` and `vae_blocks` must be ≥ 1")

    @property
    def max_latent_frames(self) -> int:
        return (self.max_frames - 1) // self.temporal_stride + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TinyConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"tiny config has unknown keys {sorted(unknown)}")
        return cls(**data)
