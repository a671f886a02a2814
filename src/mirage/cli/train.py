"""`mirage train tiny | wan`: train the embedded tiny backbone, or the Wan2.2 memory stages.

`mirage train tiny` (resumable, checkpointed, seeded):

Writes into ``--out``: ``data.safetensors`` (rendered clips), one checkpoint per stage,
``train_report.json`` and, at the end, ``tiny.safetensors``. ``--install`` copies that file and
a model card into the package (``mirage/backbones/tiny/weights/``).
"""

from __future__ import annotations

import argparse

from mirage.errors import ConfigError


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train a backbone")
    group = train.add_subparsers(dest="backbone", metavar="BACKBONE")
    group.required = True
    p = group.add_parser("tiny", help="train the embedded tiny world model on the procedural world")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, data, report)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (skips finished stages)")
    p.add_argument("--minutes", type=float, default=88.0, help="wall-clock budget for the whole run (default 88)")
    p.add_argument("--clips", type=int, default=None, help="training clips to render (default 400)")
    p.add_argument("--vae-steps", type=int, default=None)
    p.add_argument("--depth-steps", type=int, default=None)
    p.add_argument("--denoiser-steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 2; 1 is faster when another job shares the 2 cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", metavar="WEIGHTS", default=None,
                   help="reuse the VAE and depth estimator of these tiny weights (a .safetensors "
                        "file, or `shipped`) and train only the samples and denoiser stages")
    p.add_argument("--memory-offsets", action=argparse.BooleanOptionalAction, default=None,
                   help="feed the denoiser each covered cell's sub-cell offset (default: the "
                        "recipe's, on); --no-memory-offsets trains the ablation without it")
    p.add_argument("--temporal-stride", type=int, default=None, metavar="TAU",
                   help="pixel frames per latent frame (default: the recipe's, 4)")
    p.add_argument("--chunk-frames", type=int, default=None, metavar="N",
                   help="pixel frames per generated chunk, of the form TAU·k+1 (default 17)")
    p.add_argument("--install", action="store_true",
                   help="copy the trained weights into the package when done")
    p.add_argument("--install-only", action="store_true",
                   help="only install: copy --out's newest weights (or denoiser checkpoint) into the package")
    p.set_defaults(func=run_tiny)
    add_wan_parser(group)


def add_wan_parser(group) -> None:
    """`mirage train wan`: the Wan2.2 memory branch (stage 1) or LoRA (stage 2), on accelerate.

    Launch on one device as is, or on many with ``accelerate launch [--config_file
    configs/accelerate/ddp.yaml | fsdp_wan22_5b.yaml] -m mirage train wan …`` or
    ``torchrun --nproc_per_node N -m mirage train wan …``.
    """
    w = group.add_parser("wan", help="train the Wan2.2 memory branch (stage 1) or its LoRA (stage 2)")
    w.add_argument("--weights", required=True, metavar="DIR", help="Wan2.2 diffusers weights directory")
    w.add_argument("--data", required=True, metavar="DIR", help="a `mirage data build` output folder")
    w.add_argument("--stage", required=True, choices=("branch", "lora"))
    w.add_argument("--resume", metavar="DIR",
                   help="a stage-1 run folder whose memory_branch.safetensors to start from (required for lora)")
    w.add_argument("--max-steps", type=int, required=True, metavar="N")
    w.add_argument("--out", required=True, metavar="DIR",
                   help="run folder; rerunning with the same --out continues from its checkpoint")
    w.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate (default 1e-5)")
    w.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (default 0)")
    w.add_argument("--batch-size", type=int, default=1, help="samples per process per step (default 1)")
    w.add_argument("--checkpoint-every", type=int, default=100)
    w.add_argument("--lora-rank", type=int, default=64)
    w.add_argument("--lora-alpha", type=float, default=64.0)
    w.add_argument("--mixed-precision", default="auto", help="auto (bf16 on GPU) | no | bf16 | fp16")
    w.add_argument("--dtype", default=None,
                   help="weights dtype (default float32: trainable weights stay fp32 under mixed precision)")
    w.add_argument("--no-gradient-checkpointing", action="store_true")
    w.add_argument("--logger", default="jsonl", help="jsonl (OUT/log.jsonl, default) | tensorboard")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=run_wan)


def run_wan(args) -> int:
    from mirage.extras import require_extra

    require_extra("wan", ("diffusers", "accelerate", "peft"), "`mirage train wan`")
    from mirage.backbones.wan22 import load_wan22
    from mirage.train.distributed import AccelerateEngine, make_accelerator
    from mirage.train.wan import WanTrainConfig, train_wan

    config = WanTrainConfig(
        stage=args.stage, max_steps=args.max_steps, lr=args.lr, warmup=args.warmup,
        batch_size=args.batch_size, checkpoint_every=args.checkpoint_every,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        mixed_precision=args.mixed_precision, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        seed=args.seed, logger=args.logger)
    engine = AccelerateEngine(make_accelerator(config.mixed_precision))
    backbone = load_wan22(args.weights, device=str(engine.device), dtype=args.dtype or "float32")
    train_wan(args.out, args.data, backbone, config, resume_from=args.resume, engine=engine,
              progress=not args.no_progress, log=print if engine.is_main else None)
    return 0


def _init_weights(name: str) -> str:
    """The path of ``--init-from``; ``shipped`` means the package's weights. (``--install``
    overwrites those at the end with weights that hold the same VAE and depth estimator, so a
    resumed run still starts from the same ones.)"""
    from pathlib import Path

    from mirage.backbones.tiny.model import SHIPPED_WEIGHTS

    path = SHIPPED_WEIGHTS if name == "shipped" else Path(name)
    if path.is_dir():
        path = path / "tiny.safetensors"
    if not path.is_file():
        raise ConfigError(f"`--init-from` {name!r}: {str(path)!r} is not a tiny weights file "
                          "(a `tiny.safetensors` written by `mirage train tiny`, or `shipped`)")
    return str(path.resolve())


def run_tiny(args) -> int:
    from dataclasses import replace

    from mirage.train.install import install_weights
    from mirage.train.tiny import TinyTrainConfig, train_tiny
    from mirage.train.tiny_data import DataConfig

    if args.minutes <= 0:
        raise ConfigError(f"`--minutes` must be > 0 but is {args.minutes}")
    if args.install_only:
        path = install_weights(args.out)
        print(f"installed {path}")
        return 0
    cfg = TinyTrainConfig(minutes=args.minutes, seed=args.seed)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"`--threads` must be ≥ 1 but is {args.threads}")
        cfg = replace(cfg, threads=args.threads)
    if args.init_from is not None:
        cfg = replace(cfg, init_from=_init_weights(args.init_from))
    if args.memory_offsets is not None:
        cfg = replace(cfg, model=replace(cfg.model, memory_offsets=args.memory_offsets))
    if args.temporal_stride is not None:
        cfg = replace(cfg, model=replace(cfg.model, temporal_stride=args.temporal_stride))
    if args.chunk_frames is not None:
        cfg = replace(cfg, model=replace(cfg.model, max_frames=args.chunk_frames))
    if args.clips is not None:
        if args.clips < 2:
            raise ConfigError(f"`--clips` must be ≥ 2 but is {args.clips}")
        cfg = replace(cfg, data=DataConfig(clips=args.clips))
    for name in ("vae_steps", "depth_steps", "denoiser_steps"):
        value = getattr(args, name)
        if value is not None:
            if value < 0:
                raise ConfigError(f"`--{name.replace('_', '-')}` must be ≥ 0 but is {value}")
            cfg = replace(cfg, **{name: value})
    train_tiny(args.out, cfg, resume=args.resume)
    if args.install:
        path = install_weights(args.out)
        print(f"installed {path}")
    return 0
