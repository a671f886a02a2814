"""Flow-matching sampling of a chunk's target frames with diffusers' schedulers.

The schedulers are diffusers' ``UniPCMultistepScheduler`` (flow sigmas, ``flow_shift``; Wan2.2's
default) and ``FlowMatchEulerDiscreteScheduler`` (``shift``) (Lipman et al. 2023, rectified
flow). The loop is ours: it updates only the target frames, with clean frames held at t = 0,
and applies classifier-free guidance (Ho & Salimans 2022) when an unconditional velocity
function is given. Noise comes from a CPU ``torch.Generator``, so a seed gives the same chunk on
any device.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from mirage.errors import ConfigError

__all__ = ["make_scheduler", "sample_flow", "scheduler_name"]


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
