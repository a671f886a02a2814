"""Run seeded mutations of one camera format under an address-space cap; print the outcomes.

python -m tests.cameras.fuzz_worker FORMAT CASES SEED [CAP_BYTES]

Each case is a valid load (cameras come back, finite, and usable) or a project error
(:class:`~mirage.errors.MirageError`); anything else stops the run with the case's seed and a
traceback (exit 1). Outcomes, and each refusal's error class, go to stdout as JSON.
"""

from __future__ import annotations

import resource
import sys


def main() -> int:
    fmt, cases, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cap = int(sys.argv[4]) if len(sys.argv) > 4 else 4 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    import json
    import random
    import shutil
    import tempfile
    from pathlib import Path

    import torch

    from mirage.errors import MirageError
    from tests.cameras import mutations as mut

    torch.set_num_threads(1)  # 3x3 determinants: threads cost more than they give
    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(prefix="mirage-fuzz-", dir=shm if shm.is_dir() else None))
    try:
        readers, make = _format(fmt, tmp, mut)
        outcomes = {"cases": cases, "loaded": 0, "refused": 0, "errors": {}}
        rng = random.Random(seed)
        for case in range(cases):
            make(rng)
            loaded = []
            for read in readers:
                try:
                    cams = read()
                    assert len(cams) >= 1 and torch.isfinite(cams.K).all() and torch.isfinite(cams.cam2world).all()
                    cams.scaled(8, 8)  # usable: the rescaling the pipeline applies
                except MirageError as err:
                    loaded.append(False)
                    name = type(err).__name__
                    outcomes["errors"][name] = outcomes["errors"].get(name, 0) + 1
                    assert "\n" not in str(err), str(err)
                    continue
                except BaseException:
                    print(f"case {case} of {fmt} (seed {seed}) raised:", file=sys.stderr)
                    raise
                loaded.append(True)
            if len(set(loaded[:2])) != 1:  # the command paths agree (a third reader may differ)
                raise AssertionError(f"case {case} of {fmt}: the readers disagree ({loaded})")
            outcomes["loaded" if loaded[0] else "refused"] += 1
        print(json.dumps(outcomes))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _format(fmt, tmp, mut):
    """(readers, make): the readers to call on the mutated file, and a function writing one case."""
    import json

    import numpy as np
    import torch

    from mirage.cameras import (read_colmap, read_realestate10k, read_transforms, save_trajectory_json,
                                save_transforms_json, write_colmap, write_realestate10k)
    from mirage.geometry import Camera
    from mirage.world import load_trajectory

    pose = torch.eye(4).repeat(3, 1, 1)
    pose[:, 0, 3] = torch.arange(3, dtype=torch.float32)
    cams = Camera.from_fov(pose, 16, 24, 60.0)
    if fmt in ("ours", "transforms"):
        path = tmp / "case" / ("t.json" if fmt == "ours" else "transforms.json")
        path.parent.mkdir()
        if fmt == "ours":
            save_trajectory_json(path, cams, fps=8.0, chunks=[{"frames": 1, "seed": 3}, {"frames": 1, "seed": None}])
        else:
            K = cams.K.clone()
            K[1, 0, 0] += 1.0  # per-frame intrinsics
            save_transforms_json(path, Camera(K, cams.cam2world, 16, 24))
        doc = json.loads(path.read_text())
        if fmt == "transforms":
            doc["camera_angle_y"], doc["k1"], doc["camera_model"] = 0.5, 0.0, "OPENCV"
        readers = [lambda: load_trajectory(path, height=16, width=24)]
        if fmt == "ours":
            from mirage.cameras import load_trajectory_chunks
            readers.append(lambda: (load_trajectory_chunks(path), load_trajectory(path))[1])
        else:  # what `data import` calls; then with a stand-in image size (its fallback without h, w)
            readers += [lambda: read_transforms(path).camera(), lambda: read_transforms(path, (16, 24)).camera()]
        return readers, lambda rng: path.write_bytes(mut.mutate_json(doc, rng))
    if fmt == "realestate10k":
        path = tmp / "seq.txt"
        write_realestate10k(path, cams, [0, 62_500, 125_000])
        text = path.read_text()
        readers = [lambda: load_trajectory(path, height=16, width=24),
                   lambda: read_realestate10k(path).at_size(16, 24).camera()]
        return readers, lambda rng: path.write_bytes(mut.mutate_lines(text, rng))
    if fmt == "geometry.npz":
        path = tmp / "clip" / "geometry.npz"
        path.parent.mkdir()
        good = mut.geometry_npz_bytes()

        def clip_cameras():
            from mirage.data.clips import read_clip
            return read_clip(path.parent, temporal_stride=1, spatial_stride=1, min_frames=1).cameras

        readers = [lambda: load_trajectory(path)]
        return readers, lambda rng: path.write_bytes(mut.mutate_npz(good, rng))
    if fmt in ("colmap-text", "colmap"):
        model = tmp / "model"
        pts = np.array([[0.0, 0.0, 5.0], [1.0, 0.5, 6.0]])
        obs = [np.array([[11.5, 7.5, 0.0], [14.0, 8.0, 1.0]])] * 3
        write_colmap(model, cams, ["a.png", "b.png", "c.png"], pts, obs, binary=fmt == "colmap")
        files = {p.name: p.read_bytes() for p in model.iterdir()}
        readers = [lambda: load_trajectory(model, height=16, width=24),
                   lambda: read_colmap(model, points=False).camera(),
                   lambda: read_colmap(model).camera()]  # `data import` also reads the sparse points

        def make(rng):
            name = rng.choice(sorted(files))
            for n, data in files.items():
                (model / n).write_bytes(data)
            if fmt == "colmap-text":
                (model / name).write_bytes(mut.mutate_lines(files[name].decode(), rng))
            else:
                (model / name).write_bytes(mut.mutate_bytes(files[name], rng, bytes(range(256))))
        return readers, make
    raise SystemExit(f"unknown format {fmt!r}")


if __name__ == "__main__":
    sys.exit(main())
