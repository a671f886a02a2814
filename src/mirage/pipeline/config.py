"""How a video is generated: :class:`PipelineConfig`, validated when built (STYLE rule 4)."""

from __future__ import annotations

from dataclasses import dataclass

from mirage.errors import ConfigError
from mirage.memory.store import FUSION_MODES
from mirage.pipeline.memory_modes import MEMORY_DTYPES, MEMORY_MODES

__all__ = ["PipelineConfig"]


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
        "bfloat16" (positions stay float32; reads come back in the backbone's dtype). float16
        halves the tokens' bytes (``benchmarks/memory_dtype.py`` measures what it costs).
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
    progress: tqdm bars per chunk and per denoising step.
    """

    memory_mode: str = "latent"
    fusion: str | None = None
    far_field: bool | None = None
    memory_dtype: str = "float32"
    steps: int = 6
    preceding: int = 1
    references: int = 1
    seed: int = 0
    decode_reads: bool = False
    paste_reads: float | None = 0.1
    progress: bool = False

    def __post_init__(self) -> None:
        if self.memory_mode not in MEMORY_MODES:
            raise ConfigError(f"`memory_mode` must be one of {MEMORY_MODES} but is {self.memory_mode!r}")
        if self.fusion not in (None, *FUSION_MODES):
            raise ConfigError(f"`fusion` must be None or one of {FUSION_MODES} but is {self.fusion!r}")
        if self.far_field not in (None, True, False):
            raise ConfigError(f"`far_field` must be None, True or False but is {self.far_field!r}")
        if self.memory_dtype not in MEMORY_DTYPES:
            raise ConfigError(f"`memory_dtype` must be one of {tuple(MEMORY_DTYPES)} but is {self.memory_dtype!r}")
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
