"""`mirage.video`: the read's coverage tint and the labelled side-by-side panels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirage.errors import ShapeError
from mirage.video import LABEL_HEIGHT, labelled_panels, tint_uncovered, to_uint8


def test_tint_leaves_covered_cells_and_turns_uncovered_ones_magenta():
    reads = torch.full((2, 3, 8, 8), -0.6)  # a dark, green-free grey: what an empty read decodes to
    reads[:, 1] = 0.2  # ... with some green
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = True  # frame 0, cell (0, 0) = pixels [0, 4) x [0, 4)
    out = to_uint8(tint_uncovered(reads, mask))
    assert torch.equal(out[0, :, :4, :4], to_uint8(reads[0, :, :4, :4]))  # covered: untouched
    r, g, b = out[1, :, 5, 5].tolist()  # uncovered: red and blue well above green
    assert r == b and r > g + 100, (r, g, b)
    assert tint_uncovered(reads, None) is reads


def test_labelled_panels_enlarge_small_panels_and_draw_each_label():
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    out = labelled_panels([a, b], ["generated", "memory read"])
    k = 4  # 32 px panels are enlarged to 128 px
    assert out.shape == (3, LABEL_HEIGHT + k * 32, 2 * k * 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, LABEL_HEIGHT:, :k * 32], a.repeat(k, 1).repeat(k, 2))
    np.testing.assert_array_equal(out[:, LABEL_HEIGHT:, k * 32:], b.repeat(k, 1).repeat(k, 2))
    strip = out[0, :LABEL_HEIGHT]
    for i in range(2):  # each panel's part of the strip has white text on the dark ground
        part = strip[:, i * k * 32:(i + 1) * k * 32]
        assert (part == 255).all(-1).sum() > 20 and (part == 24).all(-1).sum() > part.shape[0] * part.shape[1] // 2
    assert (out[1:, :LABEL_HEIGHT] == strip).all()  # the same strip on every frame
    # another label draws other pixels; the same call gives the same bytes
    assert not np.array_equal(labelled_panels([a, b], ["generated", "ground truth"])[0, :LABEL_HEIGHT], strip)
    np.testing.assert_array_equal(labelled_panels([a, b], ["generated", "memory read"]), out)


def test_labelled_panels_keep_wide_panels_and_refuse_mismatches():
    wide = np.zeros((1, 8, 200, 3), dtype=np.uint8)
    assert labelled_panels([wide], ["x"]).shape == (1, LABEL_HEIGHT + 8, 200, 3)
    with pytest.raises(ShapeError, match="one length"):
        labelled_panels([wide], ["x", "y"])
    with pytest.raises(ShapeError, match="one shape"):
        labelled_panels([wide, wide[:, :4]], ["x", "y"])
