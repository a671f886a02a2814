"""`Session`: step, undo, re-seed, and `generate` as a session plus a loop."""

from __future__ import annotations

import pytest
import torch

from mirage.errors import ConfigError, SessionError, ShapeError
from mirage.pipeline import LatentDisagreementMasker, PipelineConfig, Session, TinyDepthEstimator, generate


def start(backbone, world, mode="latent", seed=0, history=8, **kw) -> Session:
    _, cams, gt = world
    return Session(backbone, gt.rgb[0], cams[0], PipelineConfig(memory_mode=mode, seed=seed, steps=2, **kw),
                   depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                   first_depth=torch.where(gt.sky[0], torch.inf, gt.depth[0]), first_exclude=gt.sky[0],
                   history=history)


def batch(backbone, world, mode="latent", seed=0, chunks=None, **kw):
    _, cams, gt = world
    return generate(backbone, gt.rgb[0], cams, PipelineConfig(memory_mode=mode, seed=seed, steps=2, **kw),
                    depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                    first_depth=torch.where(gt.sky[0], torch.inf, gt.depth[0]), first_exclude=gt.sky[0],
                    chunks=chunks)


def same(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def walk(session, cams, sizes, seeds=None):
    results, at = [], session.num_frames
    for i, n in enumerate(sizes):
        results.append(session.step(cams[at:at + n], seed=None if seeds is None else seeds[i]))
        at += n
    return results


@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_steps_along_the_plan_equal_generate(backbone, world, mode):
    _, cams, _ = world
    session = start(backbone, world, mode, decode_reads=True)
    assert session.num_frames == 1 and session.video.shape == (1, 3, 32, 32) and session.chunks == []
    results = walk(session, cams, [16, 8])
    out, ref = session.output(), batch(backbone, world, mode, decode_reads=True)
    same(out.video, ref.video)
    same(out.latents, ref.latents)
    same(out.memory_reads, ref.memory_reads)
    same(out.read_latents, ref.read_latents)
    same(out.read_mask, ref.read_mask)
    assert out.references == ref.references and out.plan == ref.plan
    assert [{k: v for k, v in s.items()} for s in out.memory_stats] == ref.memory_stats
    # the step results are the new frames, their decoded reads and the chunk's read coverage
    same(torch.cat([ref.video[:1]] + [r.frames for r in results]), ref.video)
    same(torch.cat([ref.memory_reads[:1]] + [r.read_frames for r in results]), ref.memory_reads)
    assert [r.read_mask.shape for r in results] == [(4, 4, 4), (2, 4, 4)]
    assert [r.chunk_index for r in results] == [0, 1] and [r.seed for r in results] == [0, None]
    assert session.chunks == [{"frames": 16, "seed": 0}, {"frames": 8, "seed": None}]
    assert session.num_frames == 25 and len(session.cameras) == 25
    same(session.cameras.cam2world, cams.cam2world)
    assert results[1].memory_stats == ref.memory_stats[1] and results[1].timing.total > 0
    assert session.mode.name == mode and (session.memory is None) == (mode == "none")


def test_irregular_chunks_with_a_reseed_replay_in_batch(backbone, world):
    """A walk of chunk sizes 4, 12, 8 with a re-seed regenerates with `generate` frame for frame."""
    _, cams, _ = world
    session = start(backbone, world)
    walk(session, cams, [4, 12, 8], seeds=[None, 7, None])
    assert session.chunks == [{"frames": 4, "seed": 0}, {"frames": 12, "seed": 7}, {"frames": 8, "seed": None}]
    replay = batch(backbone, world, chunks=session.chunks, seed=123)  # the chunks carry the seeds
    same(replay.video, session.video)
    same(replay.latents, session.latents)
    assert [(c.start_frame, c.end_frame) for c in replay.plan] == [(0, 4), (4, 16), (16, 24)]
    assert not torch.equal(replay.video, batch(backbone, world).video)  # not the default plan


def test_undo_restores_everything_exactly(backbone, world):
    _, cams, _ = world
    session = start(backbone, world, references=2)
    first = session.step(cams[1:9])
    before = (session.video, session.latents, session.memory.num_points, session.output().memory_stats)
    second = session.step(cams[9:17])
    session.step(cams[17:25], seed=3)
    session.undo()
    session.undo()
    assert session.num_frames == 9 and session.chunks == [{"frames": 8, "seed": 0}]
    same(session.video, before[0])
    same(session.latents, before[1])
    assert session.memory.num_points == before[2] and session.output().memory_stats == before[3]
    again = session.step(cams[9:17])  # the generator state was restored too
    same(again.frames, second.frames)
    assert again.references == second.references and again.memory_stats == second.memory_stats
    session.undo()
    session.undo()
    same(session.video, start(backbone, world).video)
    assert session.step(cams[1:9]).memory_stats == first.memory_stats
    session.undo()
    with pytest.raises(SessionError, match="nothing to undo"):
        session.undo()


def test_reroll_and_history_bound(backbone, world):
    _, cams, _ = world
    session = start(backbone, world, history=1)
    session.step(cams[1:5])
    a = session.step(cams[5:9], seed=11)
    session.undo()
    b = session.step(cams[5:9], seed=12)
    session.undo()
    c = session.step(cams[5:9], seed=11)
    same(a.frames, c.frames)
    assert not torch.equal(a.frames, b.frames)
    session.undo()
    with pytest.raises(SessionError, match="last 1 steps"):
        session.undo()
    quiet = start(backbone, world, history=0)
    quiet.step(cams[1:5])
    with pytest.raises(SessionError, match="history=0"):
        quiet.undo()


def test_progress_callback(backbone, world):
    _, cams, _ = world
    calls = []
    start(backbone, world).step(cams[1:5], callback=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 2), (2, 2)]


def test_bad_steps_leave_the_session_as_it_was(backbone, world):
    _, cams, _ = world
    session = start(backbone, world)
    session.step(cams[1:5])
    video = session.video
    with pytest.raises(ConfigError, match=r"\[4, 8, 12, 16\]"):
        session.step(cams[5:11])
    with pytest.raises(ConfigError, match=r"\[4, 8, 12, 16\]"):
        session.step(cams[0:20])
    with pytest.raises(ShapeError, match="32x32"):
        session.step(cams[5:9].scaled(64, 64))
    with pytest.raises(ConfigError, match="seed"):
        session.step(cams[5:9], seed=-1)

    def boom(*args, **kwargs):
        raise RuntimeError("depth failed")

    session.depth_estimator = boom
    with pytest.raises(RuntimeError, match="depth failed"):
        session.step(cams[5:9])
    session.depth_estimator = TinyDepthEstimator(backbone)
    same(session.video, video)
    assert session.num_frames == 5 and len(session.chunks) == 1
    reference = start(backbone, world)
    reference.step(cams[1:5])
    same(session.step(cams[5:9]).frames, reference.step(cams[5:9]).frames)


def test_bad_starts(backbone, world):
    _, cams, gt = world
    kw = dict(depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker())
    with pytest.raises(ShapeError, match="length 1"):
        Session(backbone, gt.rgb[0], cams[0:2], PipelineConfig(), **kw)
    with pytest.raises(ShapeError, match=r"\(3, H, W\)"):
        Session(backbone, gt.rgb[:1], cams[0], PipelineConfig(), **kw)
    with pytest.raises(ShapeError, match="first_depth"):
        Session(backbone, gt.rgb[0], cams[0], PipelineConfig(), first_depth=torch.ones(3, 3), **kw)
    with pytest.raises(ConfigError, match="history"):
        Session(backbone, gt.rgb[0], cams[0], PipelineConfig(), history=-1, **kw)


def test_generate_checks_chunks(backbone, world):
    for chunks, match in (([{"frames": 8, "seed": None}], "add up to 24"),
                          ([{"frames": 6}, {"frames": 18}], r"chunks\[0\].frames"),
                          ([{"frames": 24}], r"chunks\[0\].frames"),
                          ([{"frames": 8, "seed": "x"}, {"frames": 16}], r"chunks\[0\].seed"),
                          ([{"frames": 8, "colour": 1}, {"frames": 16}], r"chunks\[0\]"),
                          ([], "non-empty")):
        with pytest.raises(ConfigError, match=match):
            batch(backbone, world, chunks=chunks)


# -- save / load ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["latent", "rgb", "none"])
def test_a_loaded_session_continues_exactly(backbone, world, mode, tmp_path):
    _, cams, _ = world
    session = start(backbone, world, mode, decode_reads=True)
    walk(session, cams, [4, 8], seeds=[None, 5])
    session.save(tmp_path / "s.session")
    loaded = Session.load(tmp_path / "s.session", backbone, depth_estimator=TinyDepthEstimator(backbone),
                          masker=LatentDisagreementMasker())
    assert loaded.num_frames == 13 and loaded.chunks == session.chunks and loaded.config == session.config
    same(loaded.latents, session.latents)
    same(loaded.cameras.cam2world, session.cameras.cam2world)
    assert (loaded.video - session.video).abs().max() <= 1 / 127.5  # 8-bit frames
    assert loaded.video.shape == session.video.shape and loaded.output().memory_reads.shape == (13, 3, 32, 32)
    a, b = session.step(cams[13:25]), loaded.step(cams[13:25])
    same(a.frames, b.frames)
    same(a.read_frames, b.read_frames)
    assert a.references == b.references and a.memory_stats == b.memory_stats
    same(session.latents, loaded.latents)
    with pytest.raises(SessionError):  # the undo history is not saved ...
        Session.load(tmp_path / "s.session", backbone, depth_estimator=TinyDepthEstimator(backbone),
                     masker=LatentDisagreementMasker()).undo()
    loaded.undo()  # ... but steps after loading can be undone
    assert loaded.num_frames == 13


def test_a_fresh_session_round_trips(backbone, world, tmp_path):
    _, cams, _ = world
    session = start(backbone, world)
    session.save(tmp_path / "s.session")
    loaded = Session.load(tmp_path / "s.session", backbone, depth_estimator=TinyDepthEstimator(backbone),
                          masker=LatentDisagreementMasker())
    assert loaded.num_frames == 1 and loaded.chunks == []
    same(session.step(cams[1:9]).frames, loaded.step(cams[1:9]).frames)


def test_bad_session_files(backbone, world, tmp_path):
    from safetensors.torch import load_file, save_file

    from mirage.errors import SessionFormatError

    _, cams, _ = world
    session = start(backbone, world)
    session.step(cams[1:9])
    good = tmp_path / "good.session"
    session.save(good)
    kw = dict(depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker())

    def load(path, model=backbone):
        return Session.load(path, model, **kw)

    data = good.read_bytes()
    (tmp_path / "truncated").write_bytes(data[: len(data) // 2])
    with pytest.raises(SessionFormatError, match="truncated or corrupt"):
        load(tmp_path / "truncated")
    with pytest.raises(SessionFormatError, match="does not exist"):
        load(tmp_path / "missing")
    memory_file = tmp_path / "memory.safetensors"
    session.memory.save(memory_file)
    with pytest.raises(SessionFormatError, match="not a mirage session"):
        load(memory_file)
    # a flipped byte in a tensor: the digest no longer matches
    tampered = bytearray(data)
    tampered[-5] ^= 0xFF
    (tmp_path / "tampered").write_bytes(bytes(tampered))
    with pytest.raises(SessionFormatError, match="digest"):
        load(tmp_path / "tampered")

    # files rewritten with a valid digest but wrong contents are still refused
    from safetensors import safe_open

    from mirage.pipeline.session_file import _digest

    with safe_open(str(good), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(good))

    def rewrite(name, tensors=tensors, **meta):
        meta = {**metadata, **meta}
        meta["digest"] = _digest(tensors, meta["session"], meta.get("memory", ""))
        save_file(tensors, str(tmp_path / name), meta)
        return tmp_path / name

    import json

    info = json.loads(metadata["session"])
    with pytest.raises(SessionFormatError, match="version"):
        load(rewrite("v", version="99"))
    with pytest.raises(SessionFormatError, match="latents"):
        load(rewrite("lat", tensors={**tensors, "latents": tensors["latents"][:2]}))
    with pytest.raises(SessionFormatError, match="NaN"):
        load(rewrite("nan", tensors={**tensors, "latents": tensors["latents"] * float("nan")}))
    with pytest.raises(SessionFormatError, match="chunks"):
        load(rewrite("chunks", session=json.dumps({**info, "chunks": [{"frames": 5, "seed": 0}]})))
    with pytest.raises(SessionFormatError, match="memory_mode"):
        load(rewrite("cfg", session=json.dumps({**info, "config": {**info["config"], "memory_mode": "x"}})))
    with pytest.raises(SessionFormatError, match="not JSON"):
        load(rewrite("json", session="{"))
    with pytest.raises(SessionFormatError, match="cam2world|rigid"):
        load(rewrite("cam", tensors={**tensors, "cam2world": tensors["cam2world"] * 2}))
    no_points = {k: v for k, v in tensors.items() if k != "memory.points"}
    with pytest.raises(SessionFormatError, match="points"):
        load(rewrite("mem", tensors=no_points))
    # another kind of backbone
    from tests.backbones.conftest import SMALL
    from dataclasses import replace

    from mirage.backbones.tiny import TinyBackbone

    other = TinyBackbone(replace(SMALL, latent_channels=8)).eval()
    with pytest.raises(SessionFormatError, match="backbone"):
        load(good, other)


def test_an_exported_walk_replays_through_the_trajectory_file(backbone, world, tmp_path):
    """Irregular chunks and a re-seed, exported as a trajectory JSON, regenerate identically."""
    from mirage.cameras import load_trajectory_chunks, save_trajectory_json
    from mirage.world import load_trajectory

    _, cams, gt = world
    session = start(backbone, world)
    walk(session, cams, [8, 4, 12], seeds=[None, None, 99])
    session.undo()  # a re-roll of the last chunk
    walk(session, cams, [12], seeds=[42])
    save_trajectory_json(tmp_path / "walk.json", session.cameras, fps=16, chunks=session.chunks)
    cameras = load_trajectory(tmp_path / "walk.json", height=32, width=32)
    chunks = load_trajectory_chunks(tmp_path / "walk.json")
    assert chunks == [{"frames": 8, "seed": 0}, {"frames": 4, "seed": None}, {"frames": 12, "seed": 42}]
    replay = generate(backbone, gt.rgb[0], cameras, PipelineConfig(steps=2, seed=5),
                      depth_estimator=TinyDepthEstimator(backbone), masker=LatentDisagreementMasker(),
                      first_depth=torch.where(gt.sky[0], torch.inf, gt.depth[0]), first_exclude=gt.sky[0],
                      chunks=chunks)
    same(replay.video, session.video)
    same(replay.latents, session.latents)


def test_evicting_frames_keeps_the_walk_and_bounds_the_pixels(backbone, world, tmp_path):
    # A long walk keeps only the last frames' pixels: the session goes on, saves, loads and
    # undoes exactly as one that kept everything; only the whole video is gone.
    _, cams, _ = world
    full = start(backbone, world, decode_reads=True)
    lean = start(backbone, world, decode_reads=True)
    for session in (full, lean):
        walk(session, cams, [4, 4, 4])
    assert lean.evict_frames(6) == 5  # frame 0 and the first chunk: 8 frames remain
    assert lean.evicted_frames == 5 and lean.video.shape[0] == 8
    same(lean.video, full.video[5:])
    assert lean.evict_frames(6) == 0  # dropping the next chunk would leave fewer than 6
    with pytest.raises(SessionError, match="evicted"):
        lean.output()
    with pytest.raises(ConfigError, match="keep"):
        lean.evict_frames(0)
    lean.save(tmp_path / "lean.session")
    loaded = Session.load(tmp_path / "lean.session", backbone, depth_estimator=TinyDepthEstimator(backbone),
                          masker=LatentDisagreementMasker())
    assert loaded.evicted_frames == 5 and loaded.video.shape == (8, 3, 32, 32)
    a, b, c = full.step(cams[13:17]), lean.step(cams[13:17]), loaded.step(cams[13:17])
    same(a.frames, b.frames)
    same(a.frames, c.frames)
    same(a.read_frames, c.read_frames)
    assert lean.evict_frames(6) == 4 and lean.video.shape[0] == 8
    lean.undo()  # the step and the eviction after it are undone together
    assert lean.evicted_frames == 5 and lean.num_frames == 13
    same(lean.video, full.video[5:13])


def test_the_memory_input_is_saved_and_a_loaded_session_continues_exactly(backbone, world, tmp_path):
    _, cams, _ = world
    session = start(backbone, world, "latent", memory_input="inject", inject_until=0.4)
    walk(session, cams, [4], seeds=[None])
    session.save(tmp_path / "s.session")
    loaded = Session.load(tmp_path / "s.session", backbone, depth_estimator=TinyDepthEstimator(backbone),
                          masker=LatentDisagreementMasker())
    assert loaded.memory_input == "inject" and loaded.config.inject_until == 0.4
    walk(session, cams, [8], seeds=[3])
    walk(loaded, cams, [8], seeds=[3])
    same(loaded.latents, session.latents)
    # the same walk with the trained branch differs: the mode was replayed, not the default
    branch = start(backbone, world, "latent")
    walk(branch, cams, [4, 8], seeds=[None, 3])
    assert not torch.equal(branch.latents, session.latents)


def test_a_session_file_without_the_memory_input_fields_loads_with_the_branch(backbone, world, tmp_path):
    import json

    from mirage.files import load_safetensors, save_safetensors
    from mirage.pipeline import session_file

    _, cams, _ = world
    session = start(backbone, world, "latent")
    walk(session, cams, [4], seeds=[None])
    session.save(tmp_path / "new.session")
    tensors, meta = load_safetensors(tmp_path / "new.session", "session")
    info = json.loads(meta["session"])
    for name in ("memory_input", "inject_until", "inject_max_offset", "inject_feather"):
        info["config"].pop(name)
    info.pop("memory_input")  # as files written before the memory input existed
    meta["session"] = json.dumps(info)
    meta["digest"] = session_file._digest(tensors, meta["session"], meta.get("memory", ""))
    save_safetensors(tmp_path / "old.session", tensors, meta)
    loaded = Session.load(tmp_path / "old.session", backbone, depth_estimator=TinyDepthEstimator(backbone),
                          masker=LatentDisagreementMasker())
    assert loaded.memory_input == "branch" and loaded.config == session.config


def _memory_state(session):
    return session.memory.points.clone(), session.memory.features.clone(), session.memory.num_points


@pytest.mark.parametrize("history", [0, 2])
def test_an_error_before_the_update_leaves_everything_as_it_was(backbone, world, history):
    """``Session.step``'s promise, for every ``history``: frames, latents, memory and random
    state are as before when a step fails before its memory update (here: decoding the read)."""
    _, cams, _ = world
    session = start(backbone, world, history=history, decode_reads=True)
    session.step(cams[1:5])
    video, memory = session.video, _memory_state(session)
    decode = backbone.decode
    calls = []

    def fail_on_the_read(latents):  # the chunk decodes first, then the read (before the update)
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("read decode failed")
        return decode(latents)

    session.backbone.decode = fail_on_the_read
    try:
        with pytest.raises(RuntimeError, match="read decode failed"):
            session.step(cams[5:9])
    finally:
        session.backbone.decode = decode
    same(session.video, video)
    for a, b in zip(_memory_state(session), memory):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    reference = start(backbone, world, decode_reads=True)
    reference.step(cams[1:5])
    same(session.step(cams[5:9]).frames, reference.step(cams[5:9]).frames)


@pytest.mark.parametrize("history", [0, 2])
def test_an_error_inside_the_update_is_undone_only_with_history(backbone, world, history):
    """With history the failed update is rolled back; with ``history=0`` there is no copy of the
    memory, so it keeps the points written before the error (as the docstring says), while the
    random state and the session's frames are restored."""
    _, cams, _ = world
    session = start(backbone, world, history=history)
    session.step(cams[1:5])
    video, written = session.video, session.mode.stats()["frames"]
    generator = session._generator.get_state()
    mode = session.mode
    write = mode.write

    def write_then_fail(*args, **kwargs):
        write(*args, **kwargs)
        raise KeyboardInterrupt

    mode.write = write_then_fail
    with pytest.raises(KeyboardInterrupt):
        session.step(cams[5:9])
    same(session.video, video)
    assert torch.equal(session._generator.get_state(), generator)
    if history:
        assert session.mode.stats()["frames"] == written and session.mode is not mode
    else:
        assert session.mode.stats()["frames"] > written  # the failed chunk's write stays
        mode.write = write
