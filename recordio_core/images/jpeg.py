"""JPEG decoding with libjpeg-turbo through simplejpeg: DCT-scaled and strict about corrupt data.

Pillow never reports libjpeg's *warnings* ("Corrupt JPEG data: premature end of data segment",
"N extraneous bytes before marker", "bad Huffman code", "Premature end of JPEG file"): a JPEG
with scrambled entropy data decodes to garbled pixels without a word. simplejpeg's
`decode_jpeg(..., strict=True)` raises a `ValueError` on them instead, and decodes as fast as
Pillow or faster (no Pillow image object in between; power-of-two DCT scaling uses
libjpeg-turbo's SIMD IDCTs). Measured on this machine (shared/docs/jpeg-notes.md): no false
positives on ~1,940 good photos, and the pixels are bit-identical to Pillow's decode (full size,
1/2, 1/4, 1/8, gray from the Y channel, CMYK once Adobe's inversion is undone), so switching
decoder changes no byte of a dataset.

`decode` returns the pixels as a Pillow image in the mode Pillow itself would have decoded
(`L`, `RGB` or `CMYK`), or, when the strict decode fails, no image and libjpeg's message: the
caller then decodes with Pillow as before (so what is rejected and what is kept stays exactly
as it was) and, if Pillow manages, flags the image with that message. simplejpeg is a
dependency; when it cannot be imported, `available()` is False and callers keep Pillow's path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image

# Pillow's JPEG modes we can reproduce, and the simplejpeg colorspace for each
_COLORSPACES = {"L": "GRAY", "RGB": "RGB", "CMYK": "CMYK"}


@functools.cache
def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except Exception:  # absent or cannot load here: Pillow decodes, warnings go unseen
        return None
    return simplejpeg


def available() -> bool:
    """True when simplejpeg can be imported (JPEG decoder warnings are then detected)."""
    return _simplejpeg() is not None


@dataclass(frozen=True)
class Decoded:
    """A strict decode: `image` (None when it failed) and libjpeg's message when it failed."""

    image: Image.Image | None
    warning: str = ""


def handles(im: Image.Image) -> bool:
    """Whether `decode` can stand in for Pillow's decode of `im` (an opened, unloaded JPEG)."""
    return im.format == "JPEG" and im.mode in _COLORSPACES and available()


def _strict(data: bytes, size: tuple[int, int], mode: str, scale: int) -> tuple[Any, str]:
    """simplejpeg's strict decode of a JPEG of `size` to `mode`: (pixels, "") or (None,
    libjpeg's message)."""
    sj = _simplejpeg()
    w, h = size
    kwargs: dict[str, Any] = {}
    if scale > 1:
        kwargs = {"min_width": math.ceil(w / scale), "min_height": math.ceil(h / scale)}
    try:
        colorspace = _COLORSPACES[mode]
        return sj.decode_jpeg(data, colorspace=colorspace, strict=True, **kwargs), ""
    except (ValueError, RuntimeError, MemoryError) as exc:
        return None, (str(exc).strip() or type(exc).__name__)[:200]


def decode_array(data: bytes, size: tuple[int, int], mode: str, *, scale: int = 1) -> Any:
    """`decode`'s pixels as simplejpeg returns them (H x W x 3 for RGB, H x W x 1 for L), or
    None when the strict decode fails: for a JPEG of `size` (as its frame header says) decoded
    to `mode` "L" or "RGB". Needs no Pillow image, so a caller that read the header itself
    (`recordio_core.images.imghead.jpeg_frame`) skips Pillow's `open`."""
    return _strict(data, size, mode, scale)[0]


def decode(data: bytes, im: Image.Image, *, mode: str | None = None, scale: int = 1) -> Decoded:
    """Decode the JPEG `data` (already opened by Pillow as `im`) as Pillow would.

    - `mode`: "L" to decode a colour JPEG straight to gray from its Y channel (Pillow's
      `draft("L")`); None for the mode Pillow gives (`im.mode`).
    - `scale`: 1, 2, 4 or 8: decode at 1/scale size by DCT scaling (Pillow's `draft` with
      `(w // scale, h // scale)`); the result is `ceil(w / scale)` x `ceil(h / scale)`.

    Call only when `handles(im)`. A libjpeg warning or error gives `Decoded(None, message)`.
    """
    target = mode or im.mode
    arr, message = _strict(data, im.size, target, scale)
    if arr is None:
        return Decoded(None, message)
    if target == "L":
        return Decoded(Image.fromarray(arr[:, :, 0], "L"))
    if target == "CMYK":
        # libjpeg hands out CMYK as stored; Adobe's files store it inverted, which Pillow
        # undoes ("CMYK;I"): do the same so the colours match Pillow's decode.
        rawmode = "CMYK;I" if "adobe" in im.info else "CMYK"
        out = Image.frombuffer("CMYK", (arr.shape[1], arr.shape[0]), arr, "raw", rawmode, 0, 1)
        return Decoded(out.copy() if rawmode == "CMYK" else out)
    return Decoded(Image.fromarray(arr, "RGB"))
