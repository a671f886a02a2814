"""One chunk as the Wan2.2 DiT sees it: the latent sequence, its control input and noise levels.

Layout along T (S = R + P + 1 + n latent frames):

    [references (R) … | preceding (P) … | first (1) | targets (n) …]

- References, preceding frames and the first frame are clean: their noise level is t = 0 and
  the sampler never changes them. Targets start as noise and are the only frames updated.
- Temporal RoPE positions are the stock Wan ones, 0..S−1 in that order. References thus sit
  just before the recent context rather than at their true (far) time: RoPE encodes order,
  not pose, and the memory branch and the LoRA learn to read them (docs/design.md §4.3, stages 1 and 2).
  Without references and preceding frames the layout is exactly Wan2.2 TI2V's
  [first image, targets].
- The control input (B, 96, S, h, w) is zero on clean frames; on target frames it holds the
  memory-read latent (48 channels, zeros where the mask is 0) followed by the coverage mask
  broadcast over 48 channels (1 = covered).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mirage.backbones.base import ChunkConditioning
from mirage.backbones.wan22.config import CONTROL_CHANNELS
from mirage.errors import ShapeError

__all__ = ["ChunkInputs", "assemble_chunk", "FRAME_KINDS"]

FRAME_KINDS = ("reference", "preceding", "first", "target")


@dataclass(frozen=True)
class ChunkInputs:
    """A chunk's model inputs, batch 1.

    latents: (1, C, S, h, w), clean frames in place and zeros at the n target frames.
    control: (1, 96, S, h, w), the memory branch input (see the module docstring).
    layout: S frame kinds ("reference" | "preceding" | "first" | "target"), in sequence order.
    """

    latents: Tensor
    control: Tensor
    layout: tuple[str, ...]

    @property
    def num_targets(self) -> int:
        return self.layout.count("target")

    @property
    def first_target(self) -> int:
        """Index along T of the first target frame (targets are the last n frames)."""
        return len(self.layout) - self.num_targets

    @property
    def clean(self) -> Tensor:
        """(S,) bool, True for frames handed to the model at t = 0."""
        return torch.tensor([k != "target" for k in self.layout], device=self.latents.device)

    def timesteps(self, t, batch: int = 1) -> Tensor:
        """(batch, S) noise levels: ``t`` (a number, or a (batch,) tensor) at targets, 0 elsewhere."""
        t = torch.as_tensor(t, dtype=torch.float32, device=self.latents.device).reshape(-1, 1)
        target = (~self.clean).to(torch.float32)[None]  # (1, S)
        return (t * target).expand(batch, -1)

    def with_targets(self, targets: Tensor) -> Tensor:
        """(B, C, S, h, w): the clean frames followed by ``targets`` (B, C, n, h, w)."""
        clean = self.latents[:, :, : self.first_target].to(targets)
        clean = clean.expand(targets.shape[0], *clean.shape[1:])
        return torch.cat([clean, targets], dim=2)


def assemble_chunk(cond: ChunkConditioning, device=None, dtype=torch.float32) -> ChunkInputs:
    """Lay out ``cond`` (latents (·, C, h, w)) as one sequence with its control input."""
    C, h, w = cond.first_latent.shape
    if h % 2 or w % 2:
        raise ShapeError(
            f"the Wan2.2 transformer needs an even latent grid (patch 2×2), i.e. a frame size "
            f"divisible by 32, but the latent grid is {h}x{w}")
    n = cond.num_targets
    R, P = cond.references.shape[0], cond.preceding.shape[0]
    layout = ("reference",) * R + ("preceding",) * P + ("first",) + ("target",) * n
    frames = torch.cat([cond.references, cond.preceding, cond.first_latent[None],
                        cond.first_latent.new_zeros(n, C, h, w)])  # (S, C, h, w)
    latents = frames.permute(1, 0, 2, 3)[None].to(device, dtype)  # (1, C, S, h, w)
    features, mask, _ = cond.model_read()  # an empty read for memory_input "inject"
    mask = mask.to(device, torch.float32)  # (n, h, w)
    read = features.to(device, torch.float32) * mask[:, None]  # zeros where not covered
    half = CONTROL_CHANNELS // 2
    if C > half:
        raise ShapeError(f"the memory read has {C} channels but the branch takes at most {half}")
    control = torch.zeros(1, CONTROL_CHANNELS, len(layout), h, w, device=device, dtype=dtype)  # (1, 96, S, h, w)
    targets = control[0, :, len(layout) - n:]  # (96, n, h, w), a view
    targets[:C] = read.permute(1, 0, 2, 3)
    targets[half:] = mask[None]  # over the 48 mask channels
    return ChunkInputs(latents=latents, control=control, layout=layout)
