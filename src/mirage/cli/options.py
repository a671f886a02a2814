"""Argument parsers shared by the command groups."""

from __future__ import annotations

from mirage.errors import ConfigError


def parse_size(text: str) -> tuple[int, int]:
    """``"128"`` → (128, 128); ``"704x1280"`` → (704, 1280). Sizes are (height, width)."""
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise ConfigError(
            f"`--size` must be a positive N or HxW (e.g. 128 or 704x1280) but is {text!r}"
        )
    return values[0], values[1]


def parse_paste_reads(text: str) -> float | None:
    """``"off"`` → None; ``"0.1"`` → 0.1 (``PipelineConfig.paste_reads`` checks the range)."""
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"`--paste-reads` must be a number in [0, 0.5] or `off` but is {text!r}") from None


def add_memory_input_options(parser) -> None:
    """``--memory-input`` and ``--inject-until`` (generate, explore, eval)."""
    parser.add_argument("--memory-input", default=None, metavar="MODE",
                        help="how the memory read reaches the model: branch (a trained memory branch "
                             "reads it) | inject (no training: covered cells of x_t are set to the "
                             "noised read while sampling) | both (default: tiny branch; wan22 both with "
                             "--memory-branch, inject without)")
    parser.add_argument("--inject-until", type=float, default=None, metavar="LEVEL",
                        help="inject at every sampling noise level ≥ LEVEL in [0, 1] (default: "
                             "PipelineConfig's, chosen by measurement)")


def memory_input_options(args) -> dict:
    """The given ``--memory-input`` / ``--inject-until`` as ``PipelineConfig`` keywords, checked."""
    from mirage.backbones.base import MEMORY_INPUTS

    options = {}
    if args.memory_input is not None:
        if args.memory_input not in MEMORY_INPUTS:
            raise ConfigError(f"`--memory-input` must be one of {MEMORY_INPUTS} but is {args.memory_input!r}")
        options["memory_input"] = args.memory_input
    if args.inject_until is not None:
        if not 0.0 <= args.inject_until <= 1.0:  # NaN fails too
            raise ConfigError(f"`--inject-until` must be a noise level in [0, 1] but is {args.inject_until}")
        if args.memory_input == "branch":
            raise ConfigError("`--inject-until` sets when the read is injected, but `--memory-input` is "
                              "'branch', which injects nothing")
        options["inject_until"] = args.inject_until
    if options.get("memory_input") in ("inject", "both") and getattr(args, "memory", None) == "none":
        raise ConfigError(f"`--memory-input {options['memory_input']}` injects the memory read, but "
                          f"`--memory none` keeps no memory: use `--memory latent` or `--memory rgb`")
    return options


def add_wan22_options(parser) -> None:
    """The Wan2.2 backbone's flags, shared by `mirage generate` and `mirage explore` (they reach
    the backbone through :func:`mirage.cli.generate.backbone_options`)."""
    wan = parser.add_argument_group("wan22 backbone")
    wan.add_argument("--memory-branch", metavar="FILE", help="memory-branch .safetensors (default: zero-init branch)")
    wan.add_argument("--lora", metavar="FILE", help="LoRA .safetensors")
    wan.add_argument("--prompt", metavar="TEXT", help="text prompt (needs text_encoder/ and tokenizer/)")
    wan.add_argument("--negative-prompt", metavar="TEXT", help="unconditional prompt for CFG (default empty)")
    wan.add_argument("--guidance", type=float, help="CFG scale, 1 = off (default 5; needs a text encoder)")
    wan.add_argument("--sampler", help="auto (the weights' scheduler/, else unipc) | unipc | euler | few-step "
                                       "(distilled checkpoints: predict x0, re-noise; CFG off by default)")
    wan.add_argument("--timesteps", metavar="T1,T2,…|NAME",
                     help="few-step timesteps in (0, 1000], decreasing, or dmd-3 (1000,757,522: FastWan2.2 "
                          "DMD) | sf-4 (1000,750,500,250: Self-Forcing, Wan2.2-TI2V-5B-Turbo); default dmd-3")
    wan.add_argument("--shift", type=float, help="timestep shift of the sampler (default: scheduler's, else 5)")
    wan.add_argument("--dtype", help="float32 | bfloat16 | float16 (default: bfloat16 on GPU, float32 on CPU)")
    wan.add_argument("--offload", help="none | model (text encoder and VAE on the CPU between uses)")
    wan.add_argument("--vae-tiling", action="store_true", help="tiled VAE encode/decode (less GPU memory)")
