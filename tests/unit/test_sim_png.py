"""The PNG writer produces real PNGs: signature, IHDR, CRCs and decodable pixel data of the right size."""

from __future__ import annotations

import struct
import zlib

import pytest

from genpool.sim.png import ASPECT_RATIOS, PNG_SIGNATURE, image_size, write_png


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) after checking every chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour) == (8, 2)
    return width, height, zlib.decompress(chunks[1][1])


@pytest.mark.parametrize("ratio", sorted(ASPECT_RATIOS))
def test_image_size_has_the_exact_ratio(ratio: str) -> None:
    width, height = image_size(ratio, 64)
    ratio_w, ratio_h = ASPECT_RATIOS[ratio]
    assert width * ratio_h == height * ratio_w
    assert max(width, height) <= 64


def test_png_decodes_to_the_requested_size_and_colour() -> None:
    width, height, raw = read_png(write_png(16, 9, (10, 20, 30)))
    assert (width, height) == (16, 9)
    assert len(raw) == height * (1 + 3 * width)
    assert raw[0] == 0 and raw[1:4] == bytes((10, 20, 30))


def test_png_is_deterministic() -> None:
    assert write_png(8, 8, (1, 2, 3)) == write_png(8, 8, (1, 2, 3))
    assert write_png(8, 8, (1, 2, 3)) != write_png(8, 8, (1, 2, 4))
