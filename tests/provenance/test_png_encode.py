import io
import zlib

import numpy as np
import pytest
from PIL import Image

from provenance.png_encode import PngText, encode_png
from tests.provenance.assets import png_chunks
from tests.support import photo_like


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_any_reader_gets_the_exact_pixels_back(mode: str) -> None:
    image = photo_like(3, (97, 61)).convert(mode)
    pixels = np.asarray(image)
    data = encode_png(pixels)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == mode
        assert decoded.size == (97, 61)
        assert np.array_equal(np.asarray(decoded), pixels)


def test_a_single_row_and_a_single_column_encode() -> None:
    for shape in [(1, 40, 3), (40, 1, 3)]:
        pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        with Image.open(io.BytesIO(encode_png(pixels))) as decoded:
            assert np.array_equal(np.asarray(decoded), pixels)


def test_text_chunks_come_before_the_pixels_and_read_back() -> None:
    pixels = np.asarray(photo_like(4, (48, 40)))
    texts = [
        PngText("Plain", "latin-1 text: café"),
        PngText("Wide", "标识 AIGC"),
        PngText("XML:com.adobe.xmp", "<x:xmpmeta/>", international=True),
    ]
    data = encode_png(pixels, texts)
    kinds = [kind for kind, _ in png_chunks(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert kinds.index(b"IDAT") > max(i for i, k in enumerate(kinds) if k in (b"tEXt", b"iTXt"))
    assert kinds.count(b"tEXt") == 1 and kinds.count(b"iTXt") == 2
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.text["Plain"] == "latin-1 text: café"
        assert decoded.text["Wide"] == "标识 AIGC"
        assert decoded.text["XML:com.adobe.xmp"] == "<x:xmpmeta/>"


def test_every_chunk_carries_a_correct_crc() -> None:
    data = encode_png(np.asarray(photo_like(5, (48, 40))), [PngText("Key", "value")])
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        body = data[pos + 4 : pos + 8 + length]
        crc = int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        assert zlib.crc32(body) == crc
        pos += 12 + length
    assert pos == len(data)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "8-bit"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_pixels_it_cannot_write_are_refused(pixels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_png(pixels)


@pytest.mark.parametrize("keyword", ["", "k" * 80, "bad\x00key"])
def test_invalid_text_keywords_are_refused(keyword: str) -> None:
    with pytest.raises(ValueError, match="keyword"):
        encode_png(np.zeros((2, 2, 3), np.uint8), [PngText(keyword, "x")])
