"""Decoding refuses bad uploads early and decodes good ones the right way up."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from similarity import DecodeLimits, ImageRejected, decode_image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _refused(data: bytes, code: str, limits: DecodeLimits = DecodeLimits()) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, limits)
    assert info.value.code == code, str(info.value)
    assert str(info.value)
    return info.value


def test_zero_bytes_refused() -> None:
    _refused(b"", "empty")


def test_random_bytes_refused() -> None:
    _refused(np.random.default_rng(0).bytes(5000), "not_an_image")


def test_text_file_refused() -> None:
    err = _refused(b"%PDF-1.7\n hello", "not_an_image")
    assert "JPEG" in str(err)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_jpeg_refused(artwork: Image.Image, to_jpeg, keep: float) -> None:
    data = to_jpeg(artwork)
    _refused(data[: int(len(data) * keep)], "truncated")


def test_truncated_png_refused(artwork: Image.Image) -> None:
    buf = io.BytesIO()
    artwork.save(buf, "PNG")
    data = buf.getvalue()
    _refused(data[: len(data) // 2], "truncated")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_bomb_refused_without_decoding(monkeypatch) -> None:
    bomb = _png_claiming(50_000, 50_000)
    assert len(bomb) < 200

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("the bomb's pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    err = _refused(bomb, "too_many_pixels")
    assert str(err) == "The image has 2500000000 pixels; the limit is 100000000 pixels."
    # over our limit (100 MP) but under Pillow's own bomb error: only our check stops it
    _refused(_png_claiming(12_000, 9_000), "too_many_pixels")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_and_side_limits_checked_before_decoding() -> None:
    _refused(_png_claiming(12_000, 9_000), "too_many_pixels")  # 108 MP > 100 MP
    _refused(_png_claiming(31_000, 10), "too_many_pixels")  # longest side
    _refused(_png_claiming(400, 400), "too_many_pixels", DecodeLimits(max_pixels=100_000))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_limit_above_pillows_own_is_honoured(monkeypatch) -> None:
    """Pillow refuses images over twice its MAX_IMAGE_PIXELS (179 MP by default) itself; a
    configured limit above that must still let such an image through to decoding."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after

    def stop(self: Image.Image) -> None:
        raise OSError("stopped before decoding in this test")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", stop)
    claims_200mp = _png_claiming(20_000, 10_000)
    _refused(claims_200mp, "too_many_pixels")  # over the default limit of 100 MP
    _refused(claims_200mp, "truncated", DecodeLimits(max_pixels=300_000_000))  # past the check


def test_oversized_upload_refused(artwork: Image.Image, to_jpeg) -> None:
    data = to_jpeg(artwork)
    exc = _refused(data, "too_large", DecodeLimits(max_bytes=len(data) - 1))
    # the caller may have read only up to the limit: the size is not claimed, the limit is said
    assert f"over the limit of {len(data) - 1} bytes" in str(exc)


def test_reduced_decode_keeps_original_size(make_picture, to_jpeg) -> None:
    data = to_jpeg(make_picture(3, (2048, 1536)))
    full = decode_image(data, target_side=None)
    small = decode_image(data, target_side=512)
    assert full.image.size == (2048, 1536) and full.format == "JPEG"
    assert (small.width, small.height) == (2048, 1536)
    assert 512 <= max(small.image.size) < 1024
    assert small.image.mode == "RGB"


def test_exif_orientation_applied(artwork: Image.Image, to_jpeg) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = to_jpeg(artwork, exif=exif.tobytes())
    out = decode_image(data, target_side=None)
    assert (out.width, out.height) == (480, 640)
    assert out.image.size == (480, 640)
    expected = np.asarray(artwork.transpose(Image.Transpose.ROTATE_270), np.float32)
    assert np.abs(np.asarray(out.image, np.float32) - expected).mean() < 6


def test_transparent_png_on_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    out = decode_image(buf.getvalue())
    assert out.format == "PNG" and out.image.mode == "RGB"
    assert out.image.getpixel((10, 10)) == (255, 255, 255)


@pytest.mark.parametrize("target_side", [None, 512])
def test_grey_decode_is_the_luma_of_the_colour_decode(make_picture, to_jpeg, target_side) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = to_jpeg(make_picture(5, (1600, 1200)), exif=exif.tobytes())
    colour = decode_image(data, target_side=target_side)
    grey = decode_image(data, target_side=target_side, grey=True)
    assert grey.image.mode == "L" and colour.image.mode == "RGB"
    assert grey.image.size == colour.image.size  # same reduction, same orientation
    assert (grey.width, grey.height) == (colour.width, colour.height) == (1200, 1600)
    luma = np.asarray(colour.image.convert("L"), np.float32)
    assert np.abs(np.asarray(grey.image, np.float32) - luma).mean() < 1.5


def test_grey_decode_of_a_transparent_png_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.putpixel((3, 3), (0, 0, 0, 255))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    out = decode_image(buf.getvalue(), grey=True)
    assert out.image.mode == "L"
    assert out.image.getpixel((10, 10)) == 255 and out.image.getpixel((3, 3)) == 0


def test_later_frames_are_spaced_evenly_to_the_last() -> None:
    from similarity import later_frames

    frames = [Image.new("RGB", (120, 90), (i * 9, 255 - i * 9, i)) for i in range(20)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    data = buf.getvalue()
    assert decode_image(data).frames == 20
    total, got = later_frames(data, most=4, grey=True)
    assert total == 20 and [i for i, _ in got] == [1, 7, 13, 19]
    assert all(im.mode == "L" and im.size == (120, 90) for _, im in got)
    # each is its own frame, not the first one again
    assert got[-1][1].getpixel((3, 3)) != got[0][1].getpixel((3, 3))
    single = io.BytesIO()
    frames[0].save(single, "PNG")
    assert later_frames(single.getvalue()) == (1, [])


def test_frames_reached_only_through_others_stay_within_one_pictures_pixels() -> None:
    """A GIF decodes every frame on the way to the one sought: 400 large frames in a small
    file cost seconds each check. The frames sampled stay within the pixel limit."""
    from similarity import later_frames

    frames = [Image.new("RGB", (1000, 1000), (i % 250, 90, 30)) for i in range(60)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    limits = DecodeLimits(max_pixels=20_000_000)  # 20 frames of 1 MP
    total, got = later_frames(buf.getvalue(), limits, most=7)
    assert total == 60 and got and max(i for i, _ in got) <= 19


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("P", "PNG"),
        ("P", "GIF"),
        ("RGB", "GIF"),
        ("1", "PNG"),
        ("1", "TIFF"),
        ("I;16", "PNG"),
        ("P", "BMP"),
        ("RGBA", "PNG"),
        ("F", "TIFF"),
    ],
)
def test_reduced_decode_of_every_mode(mode: str, fmt: str) -> None:
    """Palette, bilevel and 16-bit pictures are reduced too (Pillow's reduce refuses them)."""
    rgb = Image.fromarray(np.random.default_rng(3).integers(0, 255, (900, 1200, 3), np.uint8))
    im = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt)
    for grey in (False, True):
        d = decode_image(buf.getvalue(), target_side=256, grey=grey)
        assert (d.width, d.height) == (1200, 900)
        assert 256 <= max(d.image.size) < 600 and d.image.mode == ("L" if grey else "RGB")
