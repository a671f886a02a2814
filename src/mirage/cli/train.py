"""`mirage train tiny`: train the embedded tiny backbone (resumable, checkpointed, seeded).

Writes into ``--out``: ``data.safetensors`` (rendered clips), one checkpoint per stage,
``train_report.json`` and, at the end, ``tiny.safetensors``. ``--install`` copies that file and
a model card into the package (``mirage/backbones/tiny/weights/``).
"""

from __future__ import annotations

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
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--install", action="store_true",
                   help="copy the trained weights into the package when done")
    p.add_argument("--install-only", action="store_true",
                   help="only install: copy --out's newest weights (or denoiser checkpoint) into the package")
    p.set_defaults(func=run_tiny)


def run_tiny(args) -> int:
    from dataclasses import replace

    from mirage.train.tiny import TinyTrainConfig, install_weights, train_tiny
    from mirage.train.tiny_data import DataConfig

    if args.minutes <= 0:
        raise ConfigError(f"`--minutes` must be > 0 but is {args.minutes}")
    if args.install_only:
        path = install_weights(args.out)
        print(f"installed {path}")
        return 0
    cfg = TinyTrainConfig(minutes=args.minutes, seed=args.seed, threads=args.threads)
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
