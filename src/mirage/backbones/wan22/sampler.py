"""Flow-matching sampling of a chunk's target frames: diffusers' schedulers, or few-step.

The schedulers are diffusers' ``UniPCMultistepScheduler`` (flow sigmas, ``flow_shift``; Wan2.2's
default) and ``FlowMatchEulerDiscreteScheduler`` (``shift``) (Lipman et al. 2023, rectified
flow). The loop is ours: it updates only the target frames, with clean frames held at t = 0,
and applies classifier-free guidance (Ho & Salimans 2022) when an unconditional velocity
function is given. Noise comes from a CPU ``torch.Generator``, so a seed gives the same chunk on
any device.

:func:`sample_few_step` is the sampling of distilled few-step models (DMD, consistency and
Self-Forcing distillation; diffusers' ``LCMScheduler``): at each listed timestep predict x̂₀,
then re-noise to the next listed level with fresh noise.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from mirage.errors import ConfigError

__all__ = ["make_scheduler", "sample_flow", "scheduler_name", "sample_few_step", "FEW_STEP_SCHEDULES",
           "parse_timesteps", "few_step_name"]

# Named few-step schedules, timesteps in [0, 1000] (noise level t/1000), highest first. Both were
# read from the checkpoints' own inference code (no checkpoint was run here). Both use the same
# update as sample_few_step (x̂₀ = x_t − σ·v, then fresh noise to the next level), no CFG, and
# t/1000 as the noise level; their schedulers snap σ to a 1000-entry table, a difference under
# 0.001 in σ.
FEW_STEP_SCHEDULES = {
    # FastWan2.2-TI2V-5B (FastVideo, DMD): `dmd_denoising_steps` of its pipeline config, given to
    # the model unwarped by FastVideo's DMD denoising stage.
    "dmd-3": (1000.0, 757.0, 522.0),
    # Wan2.2-TI2V-5B-Turbo (Self-Forcing): the `denoising_step_list` of its released inference
    # config, unwarped. Its training config warps the same list by shift 5 (1000, 937.5, 833.3,
    # 625); pass that as a list to sample as it was trained.
    "sf-4": (1000.0, 750.0, 500.0, 250.0),
}


def make_scheduler(sampler: str, shift: float | None, saved_config: dict | None = None):
    """A fresh diffusers scheduler. ``sampler``: "auto" | "unipc" | "euler".

    ``saved_config`` is the weights' ``scheduler/scheduler_config.json`` (or None); "auto" uses
    its class, and its shift unless ``shift`` is given; without one, UniPC with shift 5.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    classes = {"unipc": UniPCMultistepScheduler, "euler": FlowMatchEulerDiscreteScheduler}
    saved = dict(saved_config or {})
    if sampler == "auto":
        name = saved.get("_class_name", "UniPCMultistepScheduler")
        by_class = {cls.__name__: key for key, cls in classes.items()}
        if name not in by_class:
            raise ConfigError(
                f"the weights' scheduler is {name!r}; `sampler` 'auto' supports "
                f"{sorted(by_class)}: pass `--sampler unipc` or `--sampler euler`")
        sampler = by_class[name]
    if sampler == "few-step":
        raise ConfigError("`sampler` 'few-step' has no diffusers scheduler: it is `sample_few_step` "
                          "over `timesteps`")
    if sampler not in classes:
        raise ConfigError(f"`sampler` must be one of ('auto', 'unipc', 'euler') but is {sampler!r}")
    same = saved.get("_class_name") == classes[sampler].__name__
    base = {k: v for k, v in saved.items() if not k.startswith("_")} if same else {}
    if sampler == "unipc":
        base.update(prediction_type="flow_prediction", use_flow_sigmas=True)
        base["flow_shift"] = shift if shift is not None else base.get("flow_shift") or 5.0
        return UniPCMultistepScheduler.from_config(base)
    base["shift"] = shift if shift is not None else (base.get("shift") if same else None) or 5.0
    return FlowMatchEulerDiscreteScheduler.from_config(base)


def scheduler_name(scheduler) -> str:
    shift = getattr(scheduler.config, "flow_shift", None) or getattr(scheduler.config, "shift", None)
    return f"{type(scheduler).__name__}(shift={shift})"


def sample_flow(
    velocity: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,  # (B, C, n, h, w) at t = 1
    scheduler,
    steps: int,
    *,
    uncond_velocity: Callable[[Tensor, Tensor], Tensor] | None = None,
    guidance: float = 1.0,
    callback: Callable[[int, int], None] | None = None,
    inject: Callable[[Tensor, float], Tensor] | None = None,
) -> Tensor:
    """Integrate ``velocity(x_t, t) → v`` from noise to x₀ with ``scheduler`` in ``steps`` steps.

    ``x_t`` is (B, C, n, h, w) (targets only) and ``t`` the scheduler's timestep (scalar tensor,
    in [0, 1000]). With ``uncond_velocity`` and ``guidance`` > 1, v = v_u + g·(v_c − v_u).
    ``inject(x_t, σ) → x_t``, when given, is applied right before each model call at the step's
    noise level σ = ``scheduler.sigmas[i]`` (:class:`mirage.backbones.inject.Injector`).
    Returns x₀ (B, C, n, h, w) in float32.

    UniPC and injection: UniPC's corrector (UniC) rebuilds the current sample from the previous
    one and the model outputs, ignoring the sample it is handed, so it would undo a replacement
    made before the model call. On every step where ``inject`` changed x_t the corrector is
    skipped (``disable_corrector``): the step is UniPC's predictor alone, from the injected x_t.
    """
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise.float()
    for i, t in enumerate(scheduler.timesteps):
        if inject is not None:
            injected = inject(x, float(scheduler.sigmas[i]))
            if injected is not x and i > 0 and hasattr(scheduler, "disable_corrector"):
                # UniPC uses its corrector at step i unless i − 1 is listed (module docstring)
                scheduler.disable_corrector = [*scheduler.disable_corrector, i - 1]
            x = injected
        v = velocity(x, t).float()
        if uncond_velocity is not None and guidance > 1.0:
            v_u = uncond_velocity(x, t).float()
            v = v_u + guidance * (v - v_u)
        x = scheduler.step(v, t, x, return_dict=False)[0].float()
        if callback is not None:
            callback(i + 1, steps)
    return x


def parse_timesteps(spec) -> tuple[float, ...]:
    """A few-step schedule: a name in :data:`FEW_STEP_SCHEDULES`, "1000,757,522", or a sequence
    of numbers → timesteps (floats), checked: strictly decreasing, each in (0, 1000]."""
    if isinstance(spec, str):
        if spec in FEW_STEP_SCHEDULES:
            return FEW_STEP_SCHEDULES[spec]
        try:
            values = tuple(float(v) for v in spec.split(","))
        except ValueError:
            raise ConfigError(f"`timesteps` must be a schedule name {sorted(FEW_STEP_SCHEDULES)} or numbers "
                              f"such as '1000,757,522' but is {spec!r}") from None
    else:
        try:
            values = tuple(float(v) for v in spec)
        except (TypeError, ValueError):
            raise ConfigError(f"`timesteps` must be a sequence of numbers but is {spec!r}") from None
    if not values or not all(0.0 < v <= 1000.0 for v in values) or any(
            a <= b for a, b in zip(values, values[1:])):
        raise ConfigError(f"`timesteps` must be strictly decreasing numbers in (0, 1000] but are {list(values)}")
    return values


def few_step_name(timesteps: Sequence[float]) -> str:
    """The label run.json gives the few-step sampler, e.g. ``FewStep(timesteps=[1000, 757, 522])``."""
    return f"FewStep(timesteps={[round(float(t), 3) for t in timesteps]})"


def sample_few_step(
    velocity: Callable[[Tensor, Tensor], Tensor],
    noise: Tensor,  # (B, C, n, h, w), x at the first listed timestep
    timesteps: Sequence[float],
    *,
    generator: torch.Generator,
    uncond_velocity: Callable[[Tensor, Tensor], Tensor] | None = None,
    guidance: float = 1.0,
    callback: Callable[[int, int], None] | None = None,
    inject: Callable[[Tensor, float], Tensor] | None = None,
) -> Tensor:
    """Few-step sampling of a distilled flow model (DMD, Yin et al. 2024; LCM, Luo et al. 2023).

    Rectified flow: x_t = (1 − σ)·x₀ + σ·ε with σ = t/1000, and the model predicts v = ε − x₀.
    At each listed timestep t_i: x̂₀ = x − σ_i·v(x, t_i); if a level follows, x ← (1 − σ_{i+1})·x̂₀
    + σ_{i+1}·ε_i with fresh ε_i (B, C, n, h, w) drawn from the CPU ``generator``; the last x̂₀
    is returned (float32). ``noise`` is taken as x at t_0 (pure noise for t_0 = 1000).
    ``inject(x, σ_i) → x`` (optional) edits x right before each model evaluation.
    With ``uncond_velocity`` and ``guidance`` > 1, v = v_u + g·(v_c − v_u).
    """
    levels = parse_timesteps(timesteps)
    x = noise.float()
    steps = len(levels)
    for i, t in enumerate(levels):
        sigma = t / 1000.0
        if inject is not None:
            x = inject(x, sigma)
        t_model = torch.tensor(t, dtype=torch.float32, device=x.device)
        v = velocity(x, t_model).float()
        if uncond_velocity is not None and guidance > 1.0:
            v_u = uncond_velocity(x, t_model).float()
            v = v_u + guidance * (v - v_u)
        x0 = x - sigma * v
        if i + 1 < steps:
            nxt = levels[i + 1] / 1000.0
            eps = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=generator.device).to(x.device)
            x = (1.0 - nxt) * x0 + nxt * eps
        else:
            x = x0
        if callback is not None:
            callback(i + 1, steps)
    return x
