"""Robust image decoding: odd modes become 8-bit RGB, broken files name themselves."""

import io

import numpy as np
import pytest
from PIL import Image

from mvlpt.datasets.images import CorruptImageError, check_split, decode_image
from mvlpt.tasks.registry import ArraySplit


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_grayscale_and_one_bit():
    g = decode_image(_encode(Image.new("L", (4, 3), 77)))
    assert g.mode == "RGB" and g.size == (4, 3) and g.getpixel((0, 0)) == (77, 77, 77)
    b = decode_image(_encode(Image.new("1", (4, 4), 1)))
    assert b.mode == "RGB" and b.getpixel((1, 1)) == (255, 255, 255)


def test_cmyk_jpeg():
    img = decode_image(_encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95))
    assert img.mode == "RGB"
    r, g, b = img.getpixel((4, 4))
    assert r > 200 and g < 60 and b < 60  # pure red


def test_palette_with_transparency_is_composited_on_white():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30, 200, 0, 0] + [0] * (256 * 3 - 6))
    p.putpixel((0, 0), 1)
    data = _encode(p, transparency=0)
    img = decode_image(data)
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == (255, 255, 255)  # transparent colour -> white background
    assert img.getpixel((0, 0)) == (200, 0, 0)


def test_sixteen_bit_png_scales_to_eight_bits():
    arr = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16)
    img16 = Image.fromarray(arr)
    assert img16.mode.startswith("I")
    img = decode_image(_encode(img16))
    px = [img.getpixel((x, 0))[0] for x in range(4)]
    assert img.mode == "RGB" and px[0] == 0 and px[2] == 255 and 126 <= px[1] <= 129 and px[3] == 4


def test_rgba_composited_on_white():
    img = decode_image(_encode(Image.new("RGBA", (2, 2), (255, 0, 0, 0))))
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_truncated_and_garbage_files_name_themselves(tmp_path):
    good = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(CorruptImageError, match=r"shard\.tar@s1\.png") as e:
        decode_image(good[: len(good) // 2], name="shard.tar@s1.png")
    assert "corrupt image" in str(e.value)
    p = tmp_path / "x.jpg"
    p.write_bytes(b"not an image at all")
    with pytest.raises(CorruptImageError, match="x.jpg"):
        decode_image(p)
    with pytest.raises(CorruptImageError, match="empty"):
        decode_image(b"", name="empty.png")


def test_check_split_skip_or_fail():
    class Split(ArraySplit):
        def image(self, i):
            if i == 2:
                raise CorruptImageError("data.zip@2.png", "truncated")
            return super().image(i)

    s = Split([f"id{i}" for i in range(4)], np.arange(4), np.zeros((4, 2, 2, 3), np.uint8))
    kept, report = check_split(s, on_corrupt="skip", task="t")
    assert kept.ids == ["id0", "id1", "id3"] and list(kept.labels) == [0, 1, 3]
    assert report.skipped[0][2] == "data.zip@2.png" and "data.zip@2.png" in report.summary()
    with pytest.raises(CorruptImageError, match=r"task t: corrupt image data\.zip@2\.png"):
        check_split(s, on_corrupt="fail", task="t")
    kept, report = check_split(s, on_corrupt="fail", indices=[0, 1])  # only the samples asked for
    assert len(kept) == 2 and not report
