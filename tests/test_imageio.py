"""edgeblood.imageio: real files of every kind a lab has, converted the documented way."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from edgeblood.errors import EdgebloodError
from edgeblood.imageio import (
    CELL_CROP,
    find_images,
    iter_image_files,
    load_image,
    load_images,
)

tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """An odd-sized (37 x 53) RGB image with structure (so crops and resizes are distinguishable)."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)


def expected(rgb: np.ndarray, size: int) -> np.ndarray:
    """The documented recipe written out by hand: largest centred square, then PIL bilinear."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = round((h - side) / 2), round((w - side) / 2)
    square = Image.fromarray(rgb[top : top + side, left : left + side])
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR))


def test_png_rgb_odd_size_is_center_cropped_then_bilinear(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "cell.png")
    out = load_image(tmp_path / "cell.png", 28, framing=CELL_CROP)
    assert out.dtype == np.uint8 and out.shape == (28, 28, 3)
    np.testing.assert_array_equal(out, expected(rgb, 28))


def test_image_at_model_size_is_returned_unchanged(tmp_path, rgb):
    square = rgb[:28, :28]
    Image.fromarray(square).save(tmp_path / "s.png")
    np.testing.assert_array_equal(load_image(tmp_path / "s.png", 28, framing=CELL_CROP), square)


def test_center_crop_takes_the_middle(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 10:30] = 200  # the centred 20x20 square is uniform 200; the sides are black
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 20, framing=CELL_CROP)
    assert (out == 200).all()


def test_jpeg_decodes_close_to_source(tmp_path, rgb):
    smooth = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(3)))  # JPEG-friendly content
    Image.fromarray(smooth).save(tmp_path / "cell.jpg", quality=95)
    out = load_image(tmp_path / "cell.jpg", 32, framing=CELL_CROP)
    assert out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - expected(smooth, 32).astype(int)).mean() < 3


@pytest.mark.parametrize("planar", [False, True])
def test_tiff_16bit_rgb_scaled_over_full_range(tmp_path, rgb, planar):
    data16 = rgb.astype(np.uint16) * 257  # 8-bit values stretched exactly onto 0..65535
    if planar:
        tifffile.imwrite(tmp_path / "c.tif", np.moveaxis(data16, -1, 0), photometric="rgb", planarconfig="separate")
    else:
        tifffile.imwrite(tmp_path / "c.tif", data16, photometric="rgb")
    np.testing.assert_array_equal(load_image(tmp_path / "c.tif", 28, framing=CELL_CROP), expected(rgb, 28))


def test_tiff_8bit_and_16bit_grey(tmp_path, rgb):
    grey8 = rgb[..., 1]
    tifffile.imwrite(tmp_path / "g8.tiff", grey8)
    tifffile.imwrite(tmp_path / "g16.tif", grey8.astype(np.uint16) * 257)
    want = expected(np.repeat(grey8[..., None], 3, axis=-1), 24)
    for name in ("g8.tiff", "g16.tif"):
        out = load_image(tmp_path / name, 24, framing=CELL_CROP)
        np.testing.assert_array_equal(out, want)


def test_16bit_grey_png(tmp_path, rgb):
    grey16 = rgb[..., 2].astype(np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png", 37, framing=CELL_CROP)
    crop = rgb[:, 8:45, 2]
    np.testing.assert_array_equal(out, np.repeat(crop[..., None], 3, axis=-1))


def test_greyscale_replicated(tmp_path, rgb):
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    out = load_image(tmp_path / "grey.png", 37, framing=CELL_CROP)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    np.testing.assert_array_equal(out[..., 0], rgb[:, 8:45, 0])


def test_rgba_alpha_composited_on_white(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    alpha[:5] = 0  # fully transparent top rows -> white
    alpha[5:10] = 128  # half transparent -> halfway to white
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png", 37, framing=CELL_CROP)
    crop = rgb[:, 8:45].astype(float)
    assert (out[:5] == 255).all()
    np.testing.assert_allclose(out[5:10], crop[5:10] * 128 / 255 + 255 * 127 / 255, atol=1)
    np.testing.assert_array_equal(out[10:], rgb[10:, 8:45])


def test_palette_and_grey_alpha(tmp_path, rgb):
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", 16, framing=CELL_CROP).shape == (16, 16, 3)
    la = np.stack([rgb[..., 0], np.zeros_like(rgb[..., 0])], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png", 16, framing=CELL_CROP) == 255).all()


def test_upsamples_small_images(tmp_path, rgb):
    Image.fromarray(rgb[:10, :12]).save(tmp_path / "tiny.png")
    assert load_image(tmp_path / "tiny.png", 64, framing=CELL_CROP).shape == (64, 64, 3)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("junk.png", b"this is not an image", "not an image"),
        # D18: a zero-byte file was "not an image Pillow can decode; use PNG, JPEG or TIFF" (it was a PNG)
        ("empty.png", b"", r"empty file \(0 bytes\).*copy it again"),
        ("empty.jpg", b"", r"empty file \(0 bytes\)"),
        ("empty.tif", b"", r"empty file \(0 bytes\)"),
    ],
)
def test_undecodable_files_are_one_line_errors(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(EdgebloodError, match=match) as err:
        load_image(tmp_path / name, 28, framing=CELL_CROP)
    assert name in str(err.value) and "\n" not in str(err.value)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (what Pillow reads before refusing a huge image)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_an_image_above_the_pixel_limit_says_so_and_how_to_get_under_it(tmp_path):
    """D18: a 20000 x 20000 image was "damaged or truncated, re-export it" (it was neither)."""
    path = tmp_path / "slide.png"
    path.write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(EdgebloodError) as err:
        load_image(path, 28, framing=CELL_CROP)
    msg = str(err.value)
    assert "400 million pixels" in msg and "above 179 million pixels" in msg and "downscale" in msg and "crop" in msg
    assert "damaged" not in msg and "\n" not in msg


def test_pillows_large_image_warning_does_not_leak(tmp_path, monkeypatch):
    """Between Pillow's pixel limit and twice it Pillow decodes but warns on stderr; the image must just load."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30 * 30)  # Pillow's own setting, lowered so a small file crosses it
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(tmp_path / "big.png")  # 1600 px: between the limit and twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "big.png", 28, framing=CELL_CROP).shape == (28, 28, 3)


def test_truncated_jpeg_and_tiff(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    tifffile.imwrite(tmp_path / "full.tif", rgb)
    (tmp_path / "cut.tif").write_bytes((tmp_path / "full.tif").read_bytes()[:64])
    for name in ("cut.jpg", "cut.tif"):
        with pytest.raises(EdgebloodError, match=name):
            load_image(tmp_path / name, 28, framing=CELL_CROP)


def test_wrong_channel_count(tmp_path):
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((20, 20, 5), np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(EdgebloodError, match="5 channels"):
        load_image(tmp_path / "five.tif", 28, framing=CELL_CROP)


def test_missing_file(tmp_path):
    with pytest.raises(EdgebloodError, match="no such file"):
        load_image(tmp_path / "nope.png", 28, framing=CELL_CROP)


def test_iter_image_files_walks_sorted_recursive_known_endings(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for rel in ["b/2.PNG", "b/1.jpg", "a/z.tiff", "top.png", "notes.txt", ".hidden.png", "a/._mac.png"]:
        (tmp_path / rel).write_bytes(b"x")
    files = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert files == ["top.png", "a/z.tiff", "b/1.jpg", "b/2.PNG"]
    # a file named explicitly is taken whatever its ending, and a file reached twice is listed once
    again = list(iter_image_files([tmp_path / "notes.txt", tmp_path / "top.png", tmp_path]))
    assert [p.name for p in again][:2] == ["notes.txt", "top.png"] and len(again) == 5


def test_iter_image_files_problems_reported_or_raised(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "one.png").write_bytes(b"x")
    problems: list = []
    files = list(iter_image_files([tmp_path / "empty", tmp_path / "missing", tmp_path / "one.png"], problems=problems))
    assert [p.name for p in files] == ["one.png"]
    assert [p.name for p, _ in problems] == ["empty", "missing"]
    assert "no image files" in problems[0][1] and "no such file" in problems[1][1]
    with pytest.raises(EdgebloodError, match="no image files"):
        list(iter_image_files([tmp_path / "empty"]))
    with pytest.raises(EdgebloodError, match="no images given"):
        find_images([])


def test_load_images_strict_batch(tmp_path, rgb):
    for i in range(3):
        Image.fromarray(np.roll(rgb, i, axis=0)).save(tmp_path / f"{i}.png")
    batch, files = load_images([tmp_path], 28, framing=CELL_CROP)
    assert batch.shape == (3, 28, 28, 3) and [f.name for f in files] == ["0.png", "1.png", "2.png"]
