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


@pytest.mark.parametrize("grey", [True, False])
def test_png_with_corrupt_pixel_data_refused(artwork: Image.Image, grey: bool) -> None:
    """One bit flipped early in the compressed pixels: the file is whole but cannot be decoded
    (it was taken as a mostly black picture when its EXIF was looked for first)."""
    buf = io.BytesIO()
    artwork.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[data.index(b"IDAT") + 100] ^= 0x01
    with pytest.raises(ImageRejected) as err:
        decode_image(bytes(data), grey=grey, target_side=None)
    assert err.value.code == "truncated" and "corrupt" in str(err.value)


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


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_the_decode_for_matching_keeps_a_panoramas_shorter_side(make_picture, fmt: str) -> None:
    """Every matching route decodes an upload reduced while its longer side stays at least 512
    px and its shorter side at least 320 px (the watermark's working size): a photo is reduced
    as far as the longer side allows, a panorama only as far as its shorter side allows."""
    from similarity import decode_for_matching
    from similarity.decode import MATCH_SHORT_SIDE, MATCH_SIDE

    for size in ((3000, 2000), (4000, 800)):
        buf = io.BytesIO()
        make_picture(4, size).save(buf, fmt)
        d = decode_for_matching(buf.getvalue())
        assert (d.width, d.height) == size and d.image.mode == "L"
        w, h = d.image.size
        assert max(w, h) >= MATCH_SIDE and min(w, h) >= MATCH_SHORT_SIDE
        assert max(w, h) < 2 * MATCH_SIDE or min(w, h) < 2 * MATCH_SHORT_SIDE  # no more than needed
        assert w / h == pytest.approx(size[0] / size[1], rel=0.01)
    assert min(d.image.size) < 2 * MATCH_SHORT_SIDE <= min(size)  # the panorama was reduced too
    small = io.BytesIO()
    make_picture(4, (500, 300)).save(small, fmt)
    assert decode_for_matching(small.getvalue(), colour=True).image.size == (500, 300)


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


def _many_page_tiff(pages: int) -> bytes:
    """A TIFF of ``pages`` one-pixel pages, written by hand (Pillow would take minutes)."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    ifd_size = 2 + 12 * (len(entries) + 3) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(pages):
        start = 8 + page * (ifd_size + 1)
        pixel_at = start + ifd_size
        fields = [*entries, (273, 4, 1, pixel_at), (278, 3, 1, 1), (279, 4, 1, 1)]
        out += struct.pack("<H", len(fields))
        for tag, kind, count, value in fields:
            out += struct.pack("<HHII", tag, kind, count, value)
        following = start + ifd_size + 1 if page + 1 < pages else 0
        out += struct.pack("<I", following) + bytes([page % 256])
    return bytes(out)


def test_a_file_of_countless_pages_costs_a_bounded_count() -> None:
    """100,000 one-pixel pages: counting them all took over a minute; the count stops at the
    limit, and the later pages sampled lie within it."""
    import time

    from similarity import later_frames
    from similarity.decode import FRAME_COUNT_LIMIT

    data = _many_page_tiff(60_000)
    started = time.perf_counter()
    assert decode_image(data).frames == FRAME_COUNT_LIMIT
    total, got = later_frames(data, most=3)
    assert time.perf_counter() - started < 10  # generous: minutes before
    assert total == FRAME_COUNT_LIMIT and got and max(i for i, _ in got) < FRAME_COUNT_LIMIT
    assert decode_image(_many_page_tiff(5)).frames == 5


def test_an_apng_whose_default_image_is_not_shown_decodes_its_first_frame() -> None:
    decoy = Image.new("RGB", (96, 64), (30, 120, 200))
    shown = Image.new("RGB", (96, 64), (250, 10, 10))
    buf = io.BytesIO()
    decoy.save(buf, "PNG", save_all=True, append_images=[shown], default_image=True)
    assert decode_image(buf.getvalue()).image.getpixel((5, 5)) == (250, 10, 10)
    plain = io.BytesIO()  # the default image as the first frame of the animation
    decoy.save(plain, "PNG", save_all=True, append_images=[shown])
    assert decode_image(plain.getvalue()).image.getpixel((5, 5)) == (30, 120, 200)


def test_a_png_of_a_flood_of_chunks_is_refused_before_any_reader_walks_it(artwork) -> None:
    from similarity.decode import MAX_PNG_CHUNKS

    buf = io.BytesIO()
    artwork.save(buf, "PNG")
    png = buf.getvalue()
    flood = _png_chunk(b"tEXt", b"k\x00v") * (MAX_PNG_CHUNKS + 1)
    _refused(png[:33] + flood + png[33:], "too_many_chunks")
    assert decode_image(png[:33] + _png_chunk(b"tEXt", b"k\x00v") * 100 + png[33:]).frames == 1


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_float_picture_with_a_non_finite_pixel_keeps_its_scale(bad: float) -> None:
    values = np.linspace(0.0, 2.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    values[0, 0] = bad
    buf = io.BytesIO()
    Image.fromarray(values, "F").save(buf, "TIFF")
    grey = np.asarray(decode_image(buf.getvalue(), target_side=None).image.convert("L"))
    assert grey[-1, -1] == 255 and 120 < grey[24, 32] < 135  # not all black


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_a_frame_shown_longest_is_sampled_wherever_it_lies(fmt: str) -> None:
    """50 frames of 20 ms and one held for 30 s: the held one is what a viewer sees, so it is
    among the frames sampled, though the evenly spaced ones pass it by."""
    from similarity import later_frames

    frames = [Image.new("RGB", (64, 48), (i * 5, 255 - i * 5, 90)) for i in range(50)]
    durations = [20] * 50
    durations[20] = 30_000
    buf = io.BytesIO()
    frames[0].save(
        buf, fmt, save_all=True, append_images=frames[1:], duration=durations, loop=0
    )
    _, got = later_frames(buf.getvalue(), most=7)
    indices = [i for i, _ in got]
    assert 20 in indices, indices
    held = dict(got)[20].getpixel((3, 3))
    assert abs(held[0] - 100) <= 8 and abs(held[1] - 155) <= 8  # frame 20 itself
    even = [20] * 50  # every frame shown as long: evenly spaced alone
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=even, loop=0)
    _, got = later_frames(buf.getvalue(), most=7)
    assert [i for i, _ in got] == [1, 9, 17, 25, 33, 41, 49]
