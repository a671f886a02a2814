"""`mirage bench memory`: the memory benchmark (see :mod:`mirage.bench.memory`)."""

from __future__ import annotations

from mirage.cli.options import parse_size


def add_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks, measured side by side in one run")
    group = bench.add_subparsers(dest="bench", metavar="BENCH")
    group.required = True
    p = group.add_parser(
        "memory",
        help="latent read vs RGB render + VAE encode; kernel vs sort-per-view; cache bytes",
    )
    p.add_argument("--size", default="176x320", metavar="N|HxW",
                   help="pixel size, multiples of 16 (default 176x320 on CPU; the paper's is "
                        "704x1280, a 44x80 latent)")
    p.add_argument("--chunks", type=int, default=10, help="chunks of 33 frames (default 10)")
    p.add_argument("--channels", type=int, default=48, help="latent channels C (default 48)")
    p.add_argument("--no-rgb", action="store_true",
                   help="skip the RGB baseline (cache, render and encode); latent-only figures")
    p.add_argument("--no-vae", action="store_true",
                   help="skip the VAE encode of the RGB path (no diffusers needed)")
    p.add_argument("--vae-chunks", type=int, default=0,
                   help="VAE-encode only the first N chunks (0 = all; encode cost does not "
                        "depend on content)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per read, interleaved; the best counts")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write memory_bench.json and memory_bench.txt here")
    p.set_defaults(func=run_memory)


def run_memory(args) -> int:
    from mirage.bench.memory import MemoryBenchConfig, format_table, run_memory_bench, save_result

    height, width = parse_size(args.size)
    config = MemoryBenchConfig(
        height=height, width=width, chunks=args.chunks, channels=args.channels,
        rgb=not args.no_rgb, vae=not args.no_vae, vae_chunks=args.vae_chunks, repeats=args.repeats,
        device=args.device, seed=args.seed,
    )
    result = run_memory_bench(config)
    print(format_table(result))
    if args.out:
        out = save_result(result, args.out)
        print(f"\nwrote {out / 'memory_bench.json'} and {out / 'memory_bench.txt'}")
    return 0
