"""The temporal-stride rule (mirage.frames) against its definition: latent k is pixel frame τ·k."""

from __future__ import annotations

import pytest

from mirage.frames import is_frame_count, pixel_frames, valid_frame_counts, whole_latent_frames


@pytest.mark.parametrize("tau", [1, 2, 4])
def test_the_rule_against_its_definition(tau):
    for latents in range(1, 12):
        frames = pixel_frames(latents, tau)
        assert frames == len(range(0, tau * (latents - 1) + 1)) and list(range(0, frames, tau))[-1] == tau * (latents - 1)
    valid = {f for f in range(0, 80) if (f - 1) % tau == 0 and f >= tau + 1}
    assert {f for f in range(0, 80) if is_frame_count(f, tau)} == valid
    assert {f for f in range(0, 80) if is_frame_count(f, tau, min_latents=1)} == valid | {1}
    assert valid_frame_counts(tau, 5) == sorted(valid)[:5]
    for f in range(1, 80):
        w = whole_latent_frames(f, tau)
        assert is_frame_count(w, tau, min_latents=1) and w <= f < w + tau


def test_wan22_chunks_and_bad_counts():
    assert pixel_frames(9, 4) == 33 and is_frame_count(33, 4) and not is_frame_count(32, 4)
    assert not is_frame_count(True, 1) and not is_frame_count(33.0, 4) and not is_frame_count("33", 4)
    assert not is_frame_count(1, 4)  # one latent frame is not a chunk
