"""`Wan22Config`: the run-time options of the Wan2.2-TI2V-5B backbone, frozen and validated.

The network sizes come from the weights directory (``transformer/config.json``,
``vae/config.json``); this dataclass holds only how the backbone runs: device and dtype,
sampler, guidance, offload and the default video size. The constants fix the memory branch's
input layout (docs/design.md §4.3): 48 channels of memory-read latent + 48 channels carrying the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirage.errors import ConfigError
from mirage.frames import is_frame_count

__all__ = ["Wan22Config", "SAMPLERS", "OFFLOAD_MODES", "DTYPES", "CONTROL_CHANNELS",
           "DEFAULT_SHIFT", "resolve_device", "resolve_dtype"]

SAMPLERS = ("auto", "unipc", "euler", "few-step")  # auto: the weights' scheduler/, else UniPC
OFFLOAD_MODES = ("none", "model")  # model: text encoder + VAE live on the CPU between uses
DTYPES = ("float32", "bfloat16", "float16")
CONTROL_CHANNELS = 96  # memory branch input: 48 memory-read latent + 48 coverage-mask channels
DEFAULT_SHIFT = 5.0  # Wan2.2-TI2V-5B's flow_shift
TEMPORAL_STRIDE = 4  # Wan2.2's VAE: pixel frames 0, 4, 8, ... are latent frames 0, 1, 2, ...


@dataclass(frozen=True)
class Wan22Config:
    """How the Wan2.2 backbone samples and where it runs.

    height, width: default video size in pixels (the CLI's ``--size`` default), divisible by 32
        (VAE stride 16 × transformer patch 2).
    steps: default sampling steps per chunk (with "few-step": the number of ``timesteps``).
    max_frames: pixel frames per chunk (τ·k+1).
    sampler: "auto" | "unipc" | "euler" (diffusers' flow-matching schedulers) | "few-step" (a
        distilled model's x̂₀-and-re-noise sampling over ``timesteps``); shift: the schedulers'
        timestep shift (None: the weights' scheduler config, else 5.0).
    timesteps: the few-step sampler's timesteps in (0, 1000], decreasing, or a schedule name
        ("dmd-3", "sf-4"); None: "dmd-3". Only with ``sampler`` "few-step".
    guidance: classifier-free guidance scale; CFG runs only when > 1 and a text encoder exists.
        None: 5.0, and 1.0 (off) for "few-step", as distilled models sample without CFG.
    negative_prompt: the unconditional prompt for CFG. text_len: context tokens L.
    device: "cpu", "cuda", "cuda:1", … (None: cuda when available). dtype: transformer dtype
        (None: bfloat16 on GPU, float32 on CPU); the VAE always runs in float32.
    offload: "none" | "model" (text encoder and VAE on the CPU, moved to ``device`` only while
        used). vae_tiling: ``vae.enable_tiling()`` for large frames.
    """

    height: int = 704
    width: int = 1280
    steps: int = 50
    max_frames: int = 33
    sampler: str = "auto"
    shift: float | None = None
    timesteps: tuple[float, ...] | str | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    text_len: int = 512
    device: str | None = None
    dtype: str | None = None
    offload: str = "none"
    vae_tiling: bool = False

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 32 or v % 32:
                raise ConfigError(f"`{name}` must be a positive multiple of 32 but is {v!r}")
        for name in ("steps", "text_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{name}` must be an int ≥ 1 but is {v!r}")
        if not is_frame_count(self.max_frames, TEMPORAL_STRIDE):
            raise ConfigError(f"`max_frames` must be {TEMPORAL_STRIDE}·k+1 with k ≥ 1 but is {self.max_frames!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"`sampler` must be one of {SAMPLERS} but is {self.sampler!r}")
        if self.shift is not None and not (isinstance(self.shift, (int, float)) and self.shift > 0):
            raise ConfigError(f"`shift` must be > 0 but is {self.shift!r}")
        if self.timesteps is not None:
            if self.sampler != "few-step":
                raise ConfigError(f"`timesteps` is for `sampler` 'few-step' but `sampler` is {self.sampler!r}")
            from mirage.backbones.wan22.sampler import parse_timesteps

            object.__setattr__(self, "timesteps", parse_timesteps(self.timesteps))
        elif self.sampler == "few-step":
            object.__setattr__(self, "timesteps", _default_few_step())
        if self.sampler == "few-step":  # one model evaluation per listed timestep
            object.__setattr__(self, "steps", len(self.timesteps))
        if self.guidance is not None and not (isinstance(self.guidance, (int, float)) and self.guidance >= 1.0):
            raise ConfigError(f"`guidance` must be a number ≥ 1 (1 = no CFG) but is {self.guidance!r}")
        if self.offload not in OFFLOAD_MODES:
            raise ConfigError(f"`offload` must be one of {OFFLOAD_MODES} but is {self.offload!r}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError(f"`dtype` must be one of {DTYPES} but is {self.dtype!r}")
        if self.device is not None:
            resolve_device(self.device)

    @property
    def cfg_scale(self) -> float:
        """``guidance``, or its default: 5.0, and 1.0 (no CFG) for the few-step sampler."""
        if self.guidance is not None:
            return float(self.guidance)
        return 1.0 if self.sampler == "few-step" else 5.0


def _default_few_step() -> tuple[float, ...]:
    from mirage.backbones.wan22.sampler import FEW_STEP_SCHEDULES

    return FEW_STEP_SCHEDULES["dmd-3"]


def resolve_device(device):
    """``device`` (str, torch.device or None) → torch.device; None picks cuda when available."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"`device` must be a torch device such as 'cpu' or 'cuda' but is {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {device!r} but CUDA is not available on this machine")
    return dev


def resolve_dtype(dtype, device):
    """``dtype`` name (or None: bfloat16 on GPU, float32 on CPU) → torch.dtype."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"`dtype` must be one of {DTYPES} but is {dtype!r}")
    return getattr(torch, dtype)
