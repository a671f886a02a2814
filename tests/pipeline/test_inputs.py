"""Images and depth maps are checked before they are decoded: pixel and byte caps, the shape of
every depth format, and one-line project errors for anything unreadable."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from mirage.errors import FileFormatError, MirageError, NonFiniteError
from mirage.pipeline.inputs import load_depth, load_image

from .bombs import npz_claiming, png_header, zero_npz, zero_png


def peak_bytes(fn) -> int:
    """Peak Python + numpy allocation while ``fn`` runs (numpy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
    except MirageError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("side", [12000, 20000, 65535])
def test_a_huge_image_is_refused_from_its_header(tmp_path, side):
    path = tmp_path / "huge.png"
    png_header(path, side, side)
    with pytest.raises(FileFormatError, match=r"huge\.png.*(MP|more pixels)"):
        load_image(path, (64, 64))
    assert peak_bytes(lambda: load_image(path, (64, 64))) < 2**20


def test_the_pixel_cap_is_a_setting_and_images_under_it_load(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((40, 50, 3), 255, np.uint8)).save(path)
    image, original = load_image(path, (16, 16))
    assert original == (40, 50) and image.shape == (3, 16, 16) and float(image.min()) == 1.0
    with pytest.raises(FileFormatError, match="at most 0.0 MP"):
        load_image(path, (16, 16), max_pixels=1999)


def test_a_real_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    zero_png(path, 12000, 12000)  # ~0.4 MB on disk, 432 MB as RGB
    assert path.stat().st_size < 2**20
    assert peak_bytes(lambda: load_image(path, (64, 64))) < 2**20
    with pytest.raises(FileFormatError):
        load_image(path, (64, 64), max_pixels=10**7)


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_an_unreadable_image_gets_one_line_naming_its_label(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(FileFormatError) as err:
        load_image(path, (64, 64), label="the image 'holiday.png'")
    assert str(err.value).startswith("the image 'holiday.png'") and str(tmp_path) not in str(err.value)


def test_a_truncated_image_is_a_project_error(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, format="PNG")
    (tmp_path / "t.png").write_bytes(buf.getvalue()[:300])
    with pytest.raises(FileFormatError, match="not a readable image"):
        load_image(tmp_path / "t.png", (32, 32))


# -- depth --------------------------------------------------------------------------------------
def _depth_files(tmp_path, shape, value=2.0):
    """The same map in every format: .npy, .npz (depth), .npz (depths, frame 0), .png (mm), .tif."""
    d = np.full(shape, value, np.float32)
    np.save(tmp_path / "d.npy", d)
    np.savez_compressed(tmp_path / "d.npz", depth=d)
    np.savez(tmp_path / "g.npz", depths=np.stack([d, d * 2]))
    Image.fromarray((d * 1000).astype(np.uint16)).save(tmp_path / "d.png")
    Image.fromarray(d, mode="F").save(tmp_path / "d.tif")
    return [tmp_path / n for n in ("d.npy", "d.npz", "g.npz", "d.png", "d.tif")]


def test_every_depth_format_loads_the_same_map(tmp_path):
    for path in _depth_files(tmp_path, (12, 20)):
        depth = load_depth(path, (6, 10), shape=(12, 20))
        assert depth.shape == (6, 10) and depth.dtype.is_floating_point
        np.testing.assert_allclose(depth.numpy(), 2.0, rtol=1e-6, err_msg=str(path))


def test_every_depth_format_must_have_the_images_shape(tmp_path):
    for path in _depth_files(tmp_path, (12, 20)):
        with pytest.raises(FileFormatError, match=r"image's shape \(12, 21\).*\(12, 20\)"):
            load_depth(path, (6, 10), shape=(12, 21))


def test_a_fortran_order_npy_keeps_its_layout(tmp_path):
    d = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4) + 1)
    np.save(tmp_path / "f.npy", d)
    np.savez(tmp_path / "f.npz", depth=d)
    for name in ("f.npy", "f.npz"):
        np.testing.assert_array_equal(load_depth(tmp_path / name, (3, 4)).numpy(), d)


def test_a_zip_bomb_depth_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.npz"
    zero_npz(path, "depth", (16384, 16384))  # 1 GiB of float32 zeros
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(FileFormatError, match="16384x16384 but depth maps may have at most 33.6 MP"):
        load_depth(path, (64, 64))
    with pytest.raises(FileFormatError, match="1024 MiB.*the limit is 256 MiB"):
        load_depth(path, (64, 64), max_pixels=2**30)
    assert peak_bytes(lambda: load_depth(path, (64, 64), max_pixels=2**30)) < 2**20
    with pytest.raises(FileFormatError, match="image's shape"):  # the shape is checked before reading
        load_depth(path, (64, 64), shape=(480, 640))


def test_a_geometry_archive_depth_reads_frame_0_only(tmp_path):
    path = tmp_path / "g.npz"
    npz_claiming(path, "depths", (100000, 8, 8), np.full((2, 8, 8), 3.0, np.float32).tobytes())
    np.testing.assert_allclose(load_depth(path, (8, 8)).numpy(), 3.0)  # 6 GB claimed, 256 B read


@pytest.mark.parametrize("mode", ["I;16", "L"])
def test_a_huge_depth_png_is_refused_before_it_is_decoded(tmp_path, mode):
    path = tmp_path / "d.png"
    zero_png(path, 18000, 18000, mode)
    assert peak_bytes(lambda: load_depth(path, (64, 64))) < 2**20
    with pytest.raises(FileFormatError, match="at most"):
        load_depth(path, (64, 64))


def test_a_16_bit_png_depth_is_never_float64(tmp_path, monkeypatch):
    path = tmp_path / "d.png"
    Image.fromarray(np.full((300, 400), 1500, np.uint16)).save(path)
    peak = peak_bytes(lambda: load_depth(path, (300, 400)))
    assert peak < 300 * 400 * 8 * 2  # float64 copies would need 2 × 0.96 MB at least
    np.testing.assert_allclose(load_depth(path, (30, 40)).numpy(), 1.5)


@pytest.mark.parametrize("name, content, message", [
    ("d.npy", b"garbage", "not a readable .npy"),
    ("d.npz", b"garbage", "not a readable .npz"),
    ("d.png", b"garbage", "not a readable image"),
    ("d.bmp", b"BM", "must be a .npy"),
])
def test_unreadable_depth_gets_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FileFormatError, match=message):
        load_depth(tmp_path / name, (8, 8))


def test_depth_with_a_wrong_dtype_rank_or_members_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array(["a", "b"]))
    np.save(tmp_path / "3d.npy", np.ones((2, 3, 4), np.float32))
    np.savez(tmp_path / "other.npz", something=np.ones((3, 4)))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    for name, message in [("obj.npy", "must hold numbers"), ("3d.npy", r"2D \(H, W\)"),
                          ("other.npz", "neither `depth` nor `depths`"), ("rgb.png", "16-bit PNG")]:
        with pytest.raises(FileFormatError, match=message):
            load_depth(tmp_path / name, (4, 4))
    with zipfile.ZipFile(tmp_path / "trunc.npz", "w") as z:
        z.writestr("depth.npy", b"\x93NUMPY\x01\x00" + b"\x10\x00" + b"{'descr'")
    with pytest.raises(FileFormatError):
        load_depth(tmp_path / "trunc.npz", (4, 4))


def test_all_nan_depth_is_a_non_finite_error(tmp_path):
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan, np.float32))
    with pytest.raises(NonFiniteError, match="16 NaN"):
        load_depth(tmp_path / "nan.npy", (4, 4))
