"""`mirage world render|dataset`: render procedural-world clips with exact ground truth.

``render`` writes into ``--out``: ``video.mp4``, ``geometry.npz`` (reference layout, see
``mirage.cameras``), ``scene.json``, ``trajectory.json`` and, last, ``render.json``. Every
file is written atomically and ``render.json`` is removed when a run starts and written when it
ends, so a folder whose ``render.json`` is missing holds an unfinished run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mirage.cli.options import parse_size
from mirage.errors import ConfigError

RENDER_FILES = ("video.mp4", "geometry.npz", "scene.json", "trajectory.json")


def _int(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be an int ≥ {minimum} but is {text!r}") from None
    if value < minimum:
        raise ConfigError(f"`{name}` must be an int ≥ {minimum} but is {value}")
    return value


def _list(name: str, text: str, allowed) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ConfigError(f"`{name}` must be a comma list of {sorted(allowed)} but is {text!r}")
    return items


def _render(args: argparse.Namespace) -> int:
    from mirage.video import write_mp4
    from mirage.world import FAMILIES, generate_scene, load_trajectory
    from mirage.world.dataset import render_clip_arrays
    from mirage.cameras import save_geometry_npz, save_trajectory_json
    from mirage.files import atomic_path
    from mirage.world.io import save_scene

    if args.family not in FAMILIES:
        raise ConfigError(f"`--family` must be one of {FAMILIES} but is {args.family!r}")
    seed = _int("--scene", args.scene, 0)
    frames = None if args.frames is None else _int("--frames", args.frames, 1)
    ssaa = _int("--ssaa", args.ssaa, 1)
    moving = _int("--moving", args.moving, 0)
    fps = _int("--fps", args.fps, 1)
    height, width = parse_size(args.size)
    scene = generate_scene(args.family, seed, moving=moving)
    cameras = load_trajectory(args.trajectory, scene=scene, frames=frames, height=height, width=width)
    arrays = render_clip_arrays(scene, cameras, fps, ssaa)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "render.json"
    marker.unlink(missing_ok=True)  # the folder is "unfinished" until the marker is rewritten
    save_scene(out / "scene.json", scene)
    save_trajectory_json(out / "trajectory.json", cameras, fps=fps)
    save_geometry_npz(out / "geometry.npz", cameras=cameras, **arrays)
    write_mp4(out / "video.mp4", arrays["frames"], fps=fps)
    summary = {
        "family": args.family, "seed": seed, "trajectory": args.trajectory, "frames": len(cameras),
        "height": height, "width": width, "fps": fps, "ssaa": ssaa, "moving": moving,
        "files": list(RENDER_FILES),
    }
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    print(f"wrote {len(cameras)} frames of {height}x{width} to {out}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from mirage.world import FAMILIES, PRESETS
    from mirage.world.dataset import DatasetConfig, write_dataset

    height, width = parse_size(args.size)
    config = DatasetConfig(
        scenes=_int("--scenes", args.scenes, 1),
        frames=_int("--frames", args.frames, 1),
        height=height,
        width=width,
        families=_list("--families", args.families, FAMILIES),
        trajectories=_list("--trajectories", args.trajectories, PRESETS),
        first_seed=_int("--first-seed", args.first_seed, 0),
        moving=_int("--moving", args.moving, 0),
        ssaa=_int("--ssaa", args.ssaa, 1),
    )
    index = write_dataset(args.out, config, progress=not args.no_progress)
    print(f"dataset of {len(index)} clips in {args.out}")
    return 0


def add_parser(sub) -> None:
    from mirage.world.trajectories import DEFAULT_FPS, DEFAULT_FRAMES, PRESETS

    p = sub.add_parser("world", help="procedural 3D world with exact ground truth")
    wsub = p.add_subparsers(dest="world_command", metavar="SUBCOMMAND")
    wsub.required = True

    r = wsub.add_parser("render", help="render one clip: video.mp4, geometry.npz, scene.json")
    r.add_argument("--scene", default="0", metavar="SEED", help="scene seed (int ≥ 0)")
    r.add_argument("--family", default="room", help="room | courtyard")
    r.add_argument(
        "--trajectory", default="pan-return", metavar="PRESET|FILE",
        help=f"a preset ({', '.join(PRESETS)}) or a .json / transforms.json / geometry.npz file",
    )
    r.add_argument("--frames", default=None, metavar="N",
                   help=f"frame count (presets: default {DEFAULT_FRAMES}; files: all of them)")
    r.add_argument("--size", default="128", metavar="N|HxW", help="128 means 128x128")
    r.add_argument("--out", required=True, metavar="DIR")
    r.add_argument("--ssaa", default="1", metavar="S", help="supersampling factor for colour")
    r.add_argument("--fps", default=str(DEFAULT_FPS), help="video rate; frame k is at t = k/fps")
    r.add_argument("--moving", default="0", metavar="K", help="moving spheres to add")
    r.set_defaults(func=_render)

    d = wsub.add_parser("dataset", help="render a set of training clips (resumable)")
    d.add_argument("--scenes", required=True, metavar="N", help="number of clips (one scene each)")
    d.add_argument("--frames", default=str(DEFAULT_FRAMES), metavar="N")
    d.add_argument("--size", default="128", metavar="N|HxW")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--families", default="room,courtyard")
    d.add_argument("--trajectories", default=",".join(PRESETS))
    d.add_argument("--first-seed", default="0", metavar="SEED")
    d.add_argument("--moving", default="0", metavar="K")
    d.add_argument("--ssaa", default="1", metavar="S")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    d.set_defaults(func=_dataset)
