"""`mirage data build`: clips with geometry → sharded training samples for `mirage train wan`.

``mirage data build --clips DIR --weights DIR --out DIR`` reads every clip folder under
``--clips`` (each with a ``geometry.npz``, as ``mirage world dataset`` writes or external depth
and pose estimators produce), encodes it with the backbone's VAE, builds one sample per chunk
start with the memory read and references computed as at inference, and writes tar shards and
``index.json`` into ``--out``. Rerunning the same command resumes; bad clips are skipped and
their reasons logged (``--out/build.log`` and the index).
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="build training data")
    dsub = p.add_subparsers(dest="data_command", metavar="COMMAND")
    dsub.required = True
    b = dsub.add_parser("build", help="clips with geometry → sharded, memory-conditioned training samples")
    b.add_argument("--clips", required=True, metavar="DIR", help="folder of clip folders, each with a geometry.npz")
    b.add_argument("--weights", metavar="DIR",
                   help="backbone weights: a Wan2.2 diffusers directory (wan22) or a tiny weights file/folder")
    b.add_argument("--backbone", default="wan22", help="wan22 (default) | tiny")
    b.add_argument("--out", required=True, metavar="DIR")
    b.add_argument("--preceding", type=int, default=1, help="preceding latent frames per sample (default 1)")
    b.add_argument("--references", type=int, default=1, help="covisible references per sample (default 1)")
    b.add_argument("--stride", type=int, default=1, help="a sample every STRIDE latent frames (default 1)")
    b.add_argument("--clips-per-shard", type=int, default=4, help="clips per tar shard (default 4)")
    b.add_argument("--min-frames", type=int, default=0,
                   help="skip shorter clips (default 0: one whole chunk, the backbone's max_frames)")
    b.add_argument("--dtype", default="float32", help="storage dtype of latents: float32 | bfloat16 | float16")
    b.add_argument("--device", default=None, help="VAE device (default: cuda when available)")
    b.add_argument("--vae-tiling", action="store_true", help="tiled VAE encoding (large frames, wan22)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=run_build)


def run_build(args) -> int:
    import sys

    from mirage.backbones import load_backbone
    from mirage.data.build import BuildConfig, build_dataset
    from mirage.data.clips import find_clips

    config = BuildConfig(preceding=args.preceding, references=args.references, stride=args.stride,
                         clips_per_shard=args.clips_per_shard, min_frames=args.min_frames, dtype=args.dtype)
    find_clips(args.clips)  # fail on a wrong --clips before loading weights
    options = {"vae_tiling": True} if args.vae_tiling else {}
    backbone = load_backbone(args.backbone, args.weights, device=args.device, **options)
    index = build_dataset(args.clips, backbone, args.out, config, progress=not args.no_progress,
                          log=lambda line: print(line, file=sys.stderr))
    print(f"{index['samples']} samples from {len(index['clips']) - len(index['skipped'])} clips in "
          f"{args.out} ({len(index['skipped'])} skipped; see {args.out}/build.log)")
    return 0
