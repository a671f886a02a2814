from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mirage.errors import ConfigError
from mirage.pipeline import check_frame_count, chunk_plan, valid_frame_counts


def test_plan_examples():
    assert [(c.start_frame, c.end_frame) for c in chunk_plan(33, 4, 17)] == [(0, 16), (16, 32)]
    assert [(c.start_frame, c.end_frame) for c in chunk_plan(25, 4, 17)] == [(0, 16), (16, 24)]
    assert [(c.start_latent, c.end_latent) for c in chunk_plan(49, 4, 17)] == [(0, 4), (4, 8), (8, 12)]
    assert [(c.start_frame, c.end_frame) for c in chunk_plan(5, 4, 17)] == [(0, 4)]
    assert chunk_plan(33, 4, 33)[0].num_latents == 9  # Wan2.2: 33 frames → 9 latent frames
    assert chunk_plan(33, 4, 17)[1].target_latents == [5, 6, 7, 8]


@pytest.mark.parametrize("frames", [0, 1, 16, 32, 34, "33"])
def test_wrong_counts_list_valid_ones(frames):
    with pytest.raises(ConfigError, match=r"4·k\+1.*5, 9, 13, 17"):
        chunk_plan(frames, 4, 17)


def test_wrong_max_frames():
    with pytest.raises(ConfigError, match="max_frames"):
        chunk_plan(33, 4, 16)
    assert valid_frame_counts(4, 3) == [5, 9, 13]
    check_frame_count(9, 4)


@given(k=st.integers(1, 40), m=st.integers(1, 10), tau=st.integers(1, 4))
def test_plan_covers_every_frame_with_one_frame_overlap(k, m, tau):
    frames, max_frames = tau * k + 1, tau * m + 1
    plan = chunk_plan(frames, tau, max_frames)
    assert plan[0].start_frame == 0 and plan[-1].end_frame == frames - 1
    for a, b in zip(plan, plan[1:]):
        assert b.start_frame == a.end_frame  # one shared frame
        assert b.start_latent == a.end_latent
    for c in plan:
        assert 2 <= c.num_frames <= max_frames
        assert c.start_frame % tau == 0 and c.end_frame % tau == 0
        assert c.num_frames == tau * (c.num_latents - 1) + 1
    assert sum(c.num_frames - 1 for c in plan) == frames - 1
