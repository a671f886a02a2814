"""`mirage explore`: walk through a persistent generated world in the browser."""

from __future__ import annotations

from mirage.errors import ConfigError


def add_parser(sub) -> None:
    from mirage.cli.options import add_memory_input_options, add_wan22_options

    p = sub.add_parser("explore", help="walk through a generated world in the browser (local web app)")
    src = p.add_argument_group("start (default: --scene 0 --family room)")
    src.add_argument("--scene", type=int, default=None, metavar="SEED", help="procedural world scene seed")
    src.add_argument("--family", default="room", help="room | courtyard (with --scene)")
    src.add_argument("--image", metavar="PATH", help="first frame (any image Pillow reads)")
    src.add_argument("--depth", metavar="PATH", help="depth of --image (.npy/.npz metres, 16-bit .png mm, .tif metres)")
    src.add_argument("--fov", type=float, default=60.0, help="horizontal FOV of --image in degrees (default 60)")
    p.add_argument("--backbone", default="tiny", help="tiny (default) | wan22")
    p.add_argument("--weights", metavar="PATH", help="tiny: weights file (default: shipped); wan22: a diffusers-format directory")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when available for wan22)")
    p.add_argument("--size", default=None, metavar="HxW", help="default: the backbone's (64x64 for tiny)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: backbone's)")
    p.add_argument("--memory", default="latent", help="latent | rgb | none (default latent)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of every new world (default 0)")
    add_memory_input_options(p)
    p.add_argument("--depth-model", metavar="DIR",
                   help="update depth from a local transformers depth model folder (Depth Anything V2, DPT, ...); "
                        "relative models are aligned to the memory per frame (default: the tiny estimator)")
    p.add_argument("--depth-align", default=None, metavar="on|off",
                   help="align relative update depth to the memory (default on; off is an ablation)")
    p.add_argument("--step-frames", type=int, default=4, metavar="N",
                   help="new frames per key step, τ·k (default 4: one latent frame of the tiny model)")
    p.add_argument("--undo-steps", type=int, default=16, help="steps a tab can undo (default 16)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1 on CPU: a one-latent-frame step is small, and the "
                        "browser shares the cores; a spinning thread pool made steps 5x slower on 2 cores)")
    add_wan22_options(p)
    srv = p.add_argument_group("server")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    srv.add_argument("--max-sessions", type=int, default=8, help="tabs served at once (default 8)")
    srv.add_argument("--idle-minutes", type=float, default=15.0, help="close a tab's session after this idle time")
    srv.add_argument("--max-frames", type=int, default=2049, help="frames one world may hold (default 2049)")
    srv.add_argument("--keep-frames", type=int, default=256,
                     help="decoded frames a tab keeps; older ones are let go, the walk goes on (default 256)")
    srv.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                     help="also serve pages from this origin (http://host:port), e.g. behind a proxy or under "
                          "another name; repeatable. By default only this server's own page is served: other "
                          "sites' pages and other Host names are refused")
    srv.add_argument("--max-send-mib", type=float, default=32.0,
                     help="data waiting to be sent to one tab before its page counts as not reading and is "
                          "disconnected (default 32 MiB)")
    srv.add_argument("--max-image-mp", type=float, default=None,
                     help="largest uploaded image or depth map in megapixels, refused before decoding "
                          "(default 16.8 = 4096x4096)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn  # noqa: F401

        from mirage.explore.app import create_app
    except ImportError as err:
        raise ConfigError(f"`mirage explore` needs FastAPI and uvicorn: pip install 'mirage-world[explore]' "
                          f"({err})") from None
    from mirage.cli.depth import check_depth_arguments
    from mirage.cli.generate import backbone_options
    from mirage.cli.options import memory_input_options, parse_size
    from mirage.explore.config import ExploreConfig
    from mirage.explore.server import make_server
    from mirage.explore.worlds import build_world
    from mirage.pipeline.plan import check_chunk_size

    import torch

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"`--threads` must be ≥ 1 but is {args.threads}")
    _, depth_align = check_depth_arguments(args, scene=False)  # the explorer offers no oracle depth
    torch.set_num_threads(args.threads or (1 if args.device in (None, "cpu") else torch.get_num_threads()))
    config = ExploreConfig(step_frames=args.step_frames, max_sessions=args.max_sessions,
                           idle_seconds=60.0 * args.idle_minutes, max_frames=args.max_frames,
                           keep_frames=args.keep_frames, allow_origins=tuple(args.allow_origin),
                           max_send_bytes=int(args.max_send_mib * 2**20),
                           **({} if args.max_image_mp is None else {"max_image_pixels": int(args.max_image_mp * 1e6)}))
    maker = build_world(backbone=args.backbone, weights=args.weights, device=args.device,
                        backbone_options=backbone_options(args), scene=args.scene, family=args.family,
                        image=args.image, depth=args.depth, fov=args.fov,
                        size=parse_size(args.size) if args.size else None, memory=args.memory,
                        steps=args.steps, seed=args.seed, text=args.prompt, history=args.undo_steps,
                        pipeline_options={**memory_input_options(args), "depth_align": depth_align},
                        depth_model=args.depth_model)
    check_chunk_size(args.step_frames, maker.backbone.temporal_stride, maker.backbone.max_frames, "--step-frames")
    server = make_server(create_app(maker, config), args.host, args.port)
    _announce(server, args.host)
    server.run()
    return 0


def _announce(server, host: str) -> None:
    """Print the URL once the server listens (port 0 lets the system pick one)."""
    import threading
    import time

    from mirage.explore.server import bound_port

    def wait() -> None:
        while not server.started:
            time.sleep(0.05)
            if server.should_exit:
                return
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"mirage explore: open http://{shown}:{bound_port(server)}/ in a browser (Ctrl+C stops it)", flush=True)

    threading.Thread(target=wait, daemon=True).start()
