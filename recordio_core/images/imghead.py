"""Read an image's format and size from its first bytes, without Pillow.

Pass-through packing checks every file's header (`verify="header"`): is it an image, and how
many pixels does it claim? Through Pillow that costs ~0.1 ms per file, as much as im2rec.py
spends on a small file in all. `header_size` walks the same structures Pillow's JPEG and PNG
plugins read when they open a file, in a few microseconds:

- JPEG: the SOI marker, then each marker segment up to the start of scan, checking that every
  segment fits in the file, that quantisation tables are whole, and that a frame header (SOFn)
  gives 8-bit samples, 1, 3 or 4 components and a non-empty size;
- PNG: the signature, then each chunk up to the first IDAT, checking lengths and CRCs, with an
  IHDR first whose size, bit depth and colour type form a valid combination.

`jpeg_frame` gives the rest of what a JPEG's header says that packing needs (the number of
components, whether EXIF is there), so a re-encode can skip Pillow's `open` too.

It answers only when the header is clean: `(format, width, height)`, or `None` for anything
else (another format, a damaged or unusual header). `None` is not a verdict: the caller then
asks Pillow, whose answer (and error message) stays the reference. So a file this module
accepts is one Pillow would open, and every file it does not know goes the slow way.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bit depths Pillow's PNG plugin accepts for each colour type (PNG spec, table 11.1).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Frame headers: SOF0-SOF3, SOF5-SOF7, SOF9-SOF11, SOF13-SOF15 (C4 is DHT, C8 JPG, CC DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS, _DQT, _APP0, _APP1, _APP2 = 0xDA, 0xDB, 0xE0, 0xE1, 0xE2
# Segments met before the scan in ordinary files: DHT, DRI, APPn, COM. Anything else (RSTn,
# SOI/EOI, reserved codes) is left to Pillow.
_PLAIN = frozenset({0xC4, 0xDD, 0xFE} | set(range(0xE0, 0xF0)))
_U16 = struct.Struct(">H")
_U16x2 = struct.Struct(">HH")
_U32 = struct.Struct(">I")
_U32x2 = struct.Struct(">II")


def header_size(data: bytes) -> tuple[str, int, int] | None:
    """`(format, width, height)` of a JPEG or PNG whose header is clean, else `None`."""
    if data.startswith(b"\xff\xd8\xff"):
        frame = _jpeg(data)  # a tuple: pass-through checks every file, so no object per file
        return None if frame is None else ("JPEG", frame[0], frame[1])
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    return None


@dataclass(frozen=True)
class JpegFrame:
    """What a clean JPEG header says: the size, the number of components (1 gray, 3 colour,
    4 CMYK/YCCK; Pillow's modes L, RGB and CMYK) and whether an APP1 segment holds EXIF
    (which may rotate the image)."""

    width: int
    height: int
    components: int
    exif: bool


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The frame of a JPEG whose header is clean (see the module notes), else `None`."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    frame = _jpeg(data)
    return None if frame is None else JpegFrame(*frame)


def _jpeg(data: bytes) -> tuple[int, int, int, bool] | None:
    """`(width, height, components, exif)` of a JPEG (after its SOI) whose header is clean."""
    n = len(data)
    pos = 2
    size: tuple[int, int] | None = None
    components = 0
    exif = False
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return None  # Pillow would resynchronise or fail: let it decide
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker not in _SOF_MARKERS and marker not in _PLAIN and marker not in (_DQT, _SOS):
            return None
        if pos + 4 > n:
            return None
        length = _U16.unpack_from(data, pos + 2)[0]
        end = pos + 2 + length
        if length < 2 or end > n:
            return None
        if marker in _SOF_MARKERS:
            if size is not None or length < 8:
                return None
            bits, components = data[pos + 4], data[pos + 9]
            height, width = _U16x2.unpack_from(data, pos + 5)
            if bits != 8 or components not in (1, 3, 4) or width < 1 or height < 1:
                return None
            if length < 8 + 3 * components:
                return None
            size = (width, height)
        elif not _segment_plain(data, marker, pos + 4, end):
            return None
        elif marker == _SOS:
            return None if size is None else (*size, components, exif)
        elif marker == _APP1 and data.startswith(b"Exif", pos + 4):
            exif = True
        pos = end
    return None


def _segment_plain(data: bytes, marker: int, pos: int, end: int) -> bool:
    """A segment Pillow reads without trouble (it parses DQT, JFIF, ICC and MPF further)."""
    if marker == _DQT:
        return _dqt_whole(data, pos, end)
    if marker in (_APP0, _APP2):
        return _app_plain(data[pos:end], marker)
    return True


def _dqt_whole(data: bytes, pos: int, end: int) -> bool:
    """Every table in a DQT segment is complete (Pillow raises on a short one)."""
    while pos < end:
        table_len = 1 + (64 if data[pos] >> 4 == 0 else 128)
        pos += table_len
    return pos == end


def _app_plain(body: bytes, marker: int) -> bool:
    """False for the APP segments Pillow parses further: short JFIF, ICC chunks, MPF (MPO)."""
    if marker == _APP0:
        return not body.startswith(b"JFIF") or len(body) >= 12
    if body.startswith(b"ICC_PROFILE\0"):
        return len(body) >= 14
    return not body.startswith(b"MPF\0")


def _png(data: bytes) -> tuple[str, int, int] | None:
    n = len(data)
    pos = len(_PNG_SIGNATURE)
    size: tuple[int, int] | None = None
    while pos + 8 <= n:
        length = _U32x2.unpack_from(data, pos)[0]
        ctype = data[pos + 4 : pos + 8]
        body = pos + 8
        end = body + length + 4
        if end > n or length > 0x7FFFFFFF:
            return None
        if ctype == b"IDAT":
            return ("PNG", *size) if size is not None else None
        if zlib.crc32(data[pos + 4 : body + length]) != _U32.unpack_from(data, end - 4)[0]:
            return None
        if size is None:
            if ctype != b"IHDR" or length != 13:
                return None
            width, height = _U32x2.unpack_from(data, body)
            depth, colour = data[body + 8], data[body + 9]
            if width < 1 or height < 1 or depth not in _PNG_DEPTHS.get(colour, ()):
                return None
            if data[body + 10] != 0 or data[body + 11] != 0 or data[body + 12] > 1:
                return None  # unknown compression/filter/interlace method
            size = (width, height)
        pos = end
    return None
