"""`mirage data build`: clips with geometry → sharded training samples for `mirage train wan`.

``mirage data build --clips DIR --weights DIR --out DIR`` reads every clip folder under
``--clips`` (each with a ``geometry.npz``, as ``mirage world dataset`` writes or external depth
and pose estimators produce), encodes it with the backbone's VAE, builds one sample per chunk
start with the memory read and references computed as at inference, and writes tar shards and
``index.json`` into ``--out``. Rerunning the same command resumes; bad clips are skipped and
their reasons logged (``--out/build.log`` and the index).

``mirage data import --cameras PATH [--images DIR] (--depth-dir DIR | --depth-model DIR) --out DIR``
turns RealEstate10K camera files, NeRF ``transforms.json`` files or COLMAP sparse models (and
their frames) into such clip folders (:mod:`mirage.data.importers`). Under ``torchrun`` or
``accelerate launch``, ``data build`` splits the clips' shards over the processes.
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
    b.add_argument("--depth-model", metavar="DIR",
                   help="write the memory's later frames with this local transformers depth model's depth, as "
                        "inference does (relative models aligned to the memory per frame); default: the clips' depth")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=run_build)

    i = dsub.add_parser("import", help="RealEstate10K / transforms.json / COLMAP + frames → clips with geometry.npz")
    i.add_argument("--cameras", required=True, metavar="PATH",
                   help="a RealEstate10K .txt (or a folder of them), a transforms.json (or a folder searched for "
                        "them) or a COLMAP sparse model folder (or a folder searched for them)")
    i.add_argument("--images", metavar="DIR",
                   help="frames: RealEstate10K <DIR>/<sequence>/<timestamp>.png or <DIR>/<sequence>.mp4; "
                        "transforms/COLMAP image names relative to DIR (defaults: beside the camera file, "
                        "<project>/images for COLMAP)")
    i.add_argument("--out", required=True, metavar="DIR", help="clip folders + index.json (rerun to resume)")
    i.add_argument("--format", default="auto", help="auto (default) | realestate10k | transforms | colmap")
    depth = i.add_mutually_exclusive_group(required=True)
    depth.add_argument("--depth-dir", metavar="DIR",
                       help="metric depth per frame: <DIR>/<frame name>.npy (float) or .png (16-bit, millimetres)")
    depth.add_argument("--depth-model", metavar="DIR",
                       help="a local transformers depth model folder (Depth Anything V2, DPT, ...), aligned "
                            "per frame to COLMAP sparse points or triangulated matches; nothing is downloaded")
    i.add_argument("--clip-frames", type=int, default=0, help="frames per clip (default 0: a sequence is one clip)")
    i.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame (default 1)")
    i.add_argument("--size", default=None, metavar="HxW", help="resize frames (intrinsics rescaled); default: as stored")
    i.add_argument("--batch-size", type=int, default=8, help="depth-model frames per batch (default 8)")
    i.add_argument("--device", default=None, help="depth-model device (default: cuda when available)")
    i.add_argument("--max-residual", type=float, default=0.1,
                   help="skip a clip whose depth fit leaves a larger median relative depth error (default 0.1)")
    i.add_argument("--min-points", type=int, default=8, help="reference points a frame needs for the fit (default 8)")
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(func=run_import)


def run_import(args) -> int:
    import sys

    from mirage.cli.options import parse_size
    from mirage.data.depth_align import AlignConfig
    from mirage.data.importers import ImportConfig, import_clips

    config = ImportConfig(format=args.format, clip_frames=args.clip_frames, stride=args.stride,
                          size=parse_size(args.size) if args.size else None,
                          align=AlignConfig(min_points=args.min_points, max_residual=args.max_residual))
    model = None
    if args.depth_model is not None:
        from mirage.depth_model import HFDepthModel

        model = HFDepthModel(args.depth_model, device=args.device, batch_size=args.batch_size)
    index = import_clips(args.cameras, args.out, config, images=args.images, depth_dir=args.depth_dir,
                         depth_model=model, progress=not args.no_progress,
                         log=lambda line: print(line, file=sys.stderr))
    print(f"{len(index['clips'])} clips in {args.out} ({len(index['skipped'])} skipped; see "
          f"{args.out}/index.json and {args.out}/import.log)")
    return 0 if index["clips"] else 2


def run_build(args) -> int:
    import sys

    import torch

    from mirage.backbones import load_backbone
    from mirage.data.build import BuildConfig, build_dataset, process_group
    from mirage.data.clips import find_clips

    config = BuildConfig(preceding=args.preceding, references=args.references, stride=args.stride,
                         clips_per_shard=args.clips_per_shard, min_frames=args.min_frames, dtype=args.dtype,
                         depth_model=args.depth_model)
    find_clips(args.clips)  # fail on a wrong --clips before loading weights
    options = {"vae_tiling": True} if args.vae_tiling else {}
    with process_group() as (rank, world, barrier, local):  # torchrun / accelerate launch: split the shards
        device = args.device
        if device is None and world > 1 and torch.cuda.is_available():
            device = f"cuda:{local}"
        backbone = load_backbone(args.backbone, args.weights, device=device, **options)
        index = build_dataset(args.clips, backbone, args.out, config, progress=not args.no_progress,
                              log=lambda line: print(line, file=sys.stderr), rank=rank, world_size=world,
                              barrier=barrier)
    if rank == 0:
        print(f"{index['samples']} samples from {len(index['clips']) - len(index['skipped'])} clips in "
              f"{args.out} ({len(index['skipped'])} skipped; see {args.out}/build.log)")
    return 0
