"""A minimal PNG writer (stdlib zlib + struct) and the image sizes of Gemini's aspect ratios."""

from __future__ import annotations

import struct
import zlib

from genpool.shared import contract

# The ratios Gemini serves are the ones genpool's contract lists ("w:h").
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    ratio: (int(ratio.split(":")[0]), int(ratio.split(":")[1])) for ratio in contract.ASPECT_RATIOS
}

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(aspect_ratio: str, longest_px: int) -> tuple[int, int]:
    """(width, height) with the longest side `longest_px` and exactly the ratio, rounded to a whole multiple."""
    ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
    # Scale the ratio by a whole factor so width:height is exact, not merely close.
    factor = max(1, longest_px // max(ratio_w, ratio_h))
    return ratio_w * factor, ratio_h * factor


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _rows(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """Filter-0 scanlines of a vertical gradient from `rgb`, so the image is not a flat colour."""
    red, green, blue = rgb
    lines = []
    for y in range(height):
        shade = (y * 96) // max(1, height - 1)
        pixel = bytes(((red + shade) % 256, (green + shade // 2) % 256, blue))
        lines.append(b"\x00" + pixel * width)
    return b"".join(lines)


def write_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """An 8-bit RGB PNG of the given size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(_rows(width, height, rgb), 6)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")
