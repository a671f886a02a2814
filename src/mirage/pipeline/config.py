"""How a video is generated: :class:`PipelineConfig`, validated when built."""

from __future__ import annotations

from dataclasses import dataclass

from mirage.backbones.base import MEMORY_INPUTS, Injection
from mirage.errors import ConfigError
from mirage.memory.store import FUSION_MODES
from mirage.pipeline.memory_modes import MEMORY_DTYPES, MEMORY_MODES

__all__ = ["PipelineConfig", "DEFAULT_INJECT_UNTIL"]

# The lowest noise level "inject" injects at. Measured on 8 tuning paths (scenes 50–51, both
# families, 65 frames; benchmarks/results/inject-variants): last-8-frames PSNR 19.73 dB injecting
# at every level (0.0), 19.69 from 0.2, 19.60 from 0.4, 18.99 from 0.8; the trained branch 19.61.
# The best variant measured (one RePaint pass per level, twice the model calls) gave 19.82, a
# feathered mask 19.74, an offset filter less: a hard mask at every level is within 0.1 dB.
DEFAULT_INJECT_UNTIL = 0.0


@dataclass(frozen=True)
class PipelineConfig:
    """How a video is generated.

    memory_mode: "latent" (Mirage), "rgb" (point-cloud baseline) or "none".
    fusion: how a point memory fuses writes, "voxel" or "append" (see
        :mod:`mirage.memory.store`); None = the mode's default (latent: voxel; rgb: append, as
        the reference implementation). ``rgb`` with "voxel" is the baseline given our fusion.
    far_field: keep content without depth (sky) in a far-field map by direction, composited
        behind the points (:mod:`mirage.memory.far_field`); None = the mode's default (latent:
        on; rgb: off, as the reference drops the sky, so ``rgb`` with True is the baseline with
        an RGB far field).
    memory_dtype: the dtype the latent memory stores its tokens in, "float32", "float16" or
        "bfloat16" (positions stay float32; reads come back in the backbone's dtype); None = the
        backbone's ``default_memory_dtype``: float16 for Wan2.2, float32 for the tiny model (so
        its outputs stay as they were). float16 halves the tokens' bytes and moved revisit PSNR
        by under 0.0002 dB per family on the quick suite (``benchmarks/memory_dtype.py``).
    steps: sampling steps per chunk.
    preceding: clean latent frames before each chunk's first frame handed to the model.
    references: covisible past latent frames retrieved per chunk (top-k by voxel IoU).
    seed: seeds the sampling noise (one CPU generator for the whole video; a chunk may
        re-seed it, see :meth:`mirage.pipeline.session.Session.step`).
    decode_reads: also decode each chunk's memory read into pixels (for side-by-side videos;
        not counted in the timings).
    paste_reads: after denoising, a covered cell whose read is aligned within this many cells
        (``max |read.offset| ≤ paste_reads``) takes the read's token instead of the generated
        one; None keeps what the model generated everywhere, 0.5 pastes every covered cell.
        The default 0.1 was chosen on tuning scenes (``benchmarks/tune_scenes.py``; revisit PSNR
        was flat from 0.05 to 0.25). A read cell whose source point projects that close to its
        centre is the stored token itself, which the small denoiser reproduces less well than a
        copy. Counted in the denoise time.
    depth_align: with a relative depth estimator (``kind = "relative"``), fit each generated
        frame's inverse depth to the memory before writing it, and skip frames that cannot be
        aligned (:mod:`mirage.pipeline.depth_align`). False is an ablation: every frame goes
        through the first frame's map. Metric estimators are never aligned.
    progress: tqdm bars per chunk and per denoising step.
    memory_input: how the read reaches the backbone (:mod:`mirage.backbones.inject`):
        "branch" (its trained memory branch reads it), "inject" (no training: the model is
        given an empty read, and at each sampling step whose noise level is at least
        ``inject_until`` the covered target cells of x_t are set to the read noised to that
        level) or "both"; None = the backbone's default (``default_memory_input``: the tiny
        model "branch"; Wan2.2 "both" with a memory branch loaded, "inject" without).
    inject_until: the lowest noise level in [0, 1] at which "inject" and "both" inject.
    inject_max_offset: inject only covered cells whose read is within this many cells of
        their centre (None: every covered cell).
    inject_feather: 0 = a hard mask; k > 0 weights covered cells near the border of the
        covered region down (:class:`mirage.backbones.inject.Injection`).
    memory_device: where the memory lives ("cpu", "cuda", "cuda:1", …): its points, tokens and
        far field, the covisibility index, the reads, fusion and the depth-to-grid reduction of
        an update. None: the backbone's device. It changes where the memory computes, not what
        (its kernels follow their inputs' device), and a session file does not record it, so a
        session saved with the memory on one device loads with it on another.
    """

    memory_mode: str = "latent"
    fusion: str | None = None
    far_field: bool | None = None
    memory_dtype: str | None = None
    steps: int = 6
    preceding: int = 1
    references: int = 1
    seed: int = 0
    decode_reads: bool = False
    paste_reads: float | None = 0.1
    progress: bool = False
    memory_input: str | None = None
    inject_until: float = DEFAULT_INJECT_UNTIL
    inject_max_offset: float | None = None
    inject_feather: int = 0
    memory_device: str | None = None
    depth_align: bool = True

    def __post_init__(self) -> None:
        if self.memory_input not in (None, *MEMORY_INPUTS):
            raise ConfigError(f"`memory_input` must be None or one of {MEMORY_INPUTS} but is {self.memory_input!r}")
        if self.memory_input in ("inject", "both") and self.memory_mode == "none":
            raise ConfigError(f"`memory_input` {self.memory_input!r} injects the memory read, but `memory_mode` "
                              f"'none' has no memory: use memory_mode 'latent' or 'rgb'")
        self.injection  # validates the inject_* fields
        if self.memory_mode not in MEMORY_MODES:
            raise ConfigError(f"`memory_mode` must be one of {MEMORY_MODES} but is {self.memory_mode!r}")
        if self.fusion not in (None, *FUSION_MODES):
            raise ConfigError(f"`fusion` must be None or one of {FUSION_MODES} but is {self.fusion!r}")
        if not isinstance(self.depth_align, bool):
            raise ConfigError(f"`depth_align` must be True or False but is {self.depth_align!r}")
        if self.far_field not in (None, True, False):
            raise ConfigError(f"`far_field` must be None, True or False but is {self.far_field!r}")
        if self.memory_dtype is not None and self.memory_dtype not in MEMORY_DTYPES:
            raise ConfigError(f"`memory_dtype` must be None or one of {tuple(MEMORY_DTYPES)} but is "
                              f"{self.memory_dtype!r}")
        for name in ("steps",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{name}` must be an int ≥ 1 but is {v!r}")
        for name in ("preceding", "references", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"`{name}` must be an int ≥ 0 but is {v!r}")
        if self.paste_reads is not None and not (isinstance(self.paste_reads, (int, float))
                                                 and not isinstance(self.paste_reads, bool)
                                                 and 0 <= self.paste_reads <= 0.5):
            raise ConfigError(f"`paste_reads` must be None or a number in [0, 0.5] but is {self.paste_reads!r}")
        if self.memory_device is not None:
            import torch

            try:
                device = torch.device(self.memory_device)
            except (RuntimeError, TypeError):
                raise ConfigError(f"`memory_device` must be None or a torch device such as 'cpu' or 'cuda:0' "
                                  f"but is {self.memory_device!r}") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ConfigError(f"`memory_device` is {self.memory_device!r} but CUDA is not available on this machine")
            object.__setattr__(self, "memory_device", str(device))

    @property
    def injection(self) -> Injection:
        """The injection settings as one :class:`~mirage.backbones.inject.Injection`."""
        return Injection(until=self.inject_until, max_offset=self.inject_max_offset, feather=self.inject_feather)

    def resolve_memory_dtype(self, backbone) -> str:
        """``memory_dtype``, or the backbone's default when it is None."""
        return self.memory_dtype or getattr(backbone, "default_memory_dtype", "float32")

    def resolve_memory_input(self, backbone) -> str:
        """``memory_input``, or the backbone's default when it is None."""
        if self.memory_input is not None:
            return self.memory_input
        return getattr(backbone, "default_memory_input", "branch")
