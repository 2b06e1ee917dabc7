"""Opening and decoding with Pillow (and simplejpeg's strict JPEG decode): rejects with short
reasons, EXIF orientation, and the colour mode `color` asks for.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from recordio_core.images import jpeg
from recordio_core.images.dhash import EXIF_TRANSPOSE as _TRANSPOSE
from recordio_core.images.image_options import ImageError, _short
from recordio_core.images.imghead import header_size

_ORIENTATION_TAG = 0x0112

# We enforce our own pixel limit (ImageOptions.max_pixels); Pillow's warning between its
# limit and twice its limit would only repeat what we check.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _open(data: bytes, max_pixels: int | None) -> Image.Image:
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"not a recognised image ({_sniff(data)})") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb refused by Pillow: {exc}") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
        raise ImageError(f"unreadable image header: {_short(exc)}") from None
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError(f"image has an empty size {w}x{h}")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(
            f"image of {w}x{h} = {w * h} pixels is over the limit of {max_pixels} "
            "(decompression bomb protection; raise max_pixels to allow it)"
        )
    return im


_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"RIFF": "RIFF/WebP",
}


def _clean_header(data: bytes, max_pixels: int | None) -> bool:
    """True when a JPEG/PNG header parses cleanly (`imghead`) within both pixel limits.

    False is not a reject: the caller then opens the image with Pillow, whose outcome and
    reasons stay the reference (bombs, odd formats, damaged headers all go that way).
    """
    head = header_size(data)
    if head is None:
        return False
    pixels = head[1] * head[2]
    pillow_limit = Image.MAX_IMAGE_PIXELS
    return (max_pixels is None or pixels <= max_pixels) and (
        pillow_limit is None or pixels <= pillow_limit
    )


def _sniff(data: bytes) -> str:
    for magic, name in _SIGNATURES.items():
        if data.startswith(magic):
            return f"{name} signature but a corrupt header"
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<svg")):
        return "looks like HTML/XML text"
    if head[:1] in (b"{", b"["):
        return "looks like JSON text"
    sample = data[:512]
    if sample and all(32 <= c < 127 or c in (9, 10, 13) for c in sample):
        return "looks like plain text"
    return f"{len(data)} bytes starting {data[:8].hex()}"


def _load(im: Image.Image) -> None:
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ImageError(f"decompression bomb refused by Pillow: {exc}") from None
    except MemoryError:
        raise ImageError("not enough memory to decode the image") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError, IndexError) as exc:
        text = _short(exc)
        if "truncated" in text.lower():
            raise ImageError(f"truncated image ({text})") from None
        raise ImageError(f"cannot decode image: {text}") from None


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8); 1 when absent or unreadable."""
    if im.format == "JPEG" and "exif" not in im.info:
        return 1  # JPEG EXIF lives in APP1, parsed at open: no EXIF, nothing to do
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF never makes an image unusable
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _target_mode(im: Image.Image, color: int, png: bool) -> str:
    """The Pillow mode `color` asks for, given what the file holds and what the encoding can
    hold (OpenCV's choices: gray+alpha comes back as BGRA, a palette with transparency too)."""
    if color == 1:
        return "RGB"
    if color == 0:
        return "L"
    # color == -1: as stored where the encoding allows
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        return "I;16" if png else "L"
    if mode in ("L", "1", "F"):
        return "L"
    alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (
        mode == "P" and "transparency" in im.info
    )
    return "RGBA" if alpha and png else "RGB"


def _to_mode(im: Image.Image, target: str) -> Image.Image:
    mode = im.mode
    if mode == target:
        return im
    if mode in _SIXTEEN_BIT:
        arr = np.asarray(im)
        if mode == "I":
            arr = np.clip(arr, 0, 65535)
        if target == "I;16":
            return Image.fromarray(arr.astype("<u2"))
        # OpenCV keeps the high byte of 16-bit samples; Pillow's convert would clip instead.
        im = Image.fromarray((arr >> 8).astype(np.uint8), "L")
        mode = "L"
        if target == "L":
            return im
    if mode == "P" and target != "RGBA":
        im.info.pop("transparency", None)  # drop alpha without Pillow's RGBA warning
    try:
        return im.convert(target)
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot convert {mode} image to {target}: {_short(exc)}") from None


def _decode(
    im: Image.Image, data: bytes, *, mode: str | None = None, scale: int = 1
) -> tuple[Image.Image, str]:
    """Decode the opened `im` (`mode` "L": gray from a colour JPEG's Y channel; `scale`: JPEG
    DCT scaling 1/2/4/8): `(image, libjpeg warning or "")`.

    JPEGs go through simplejpeg's strict decode (same pixels as Pillow's, see
    `recordio_core.images.jpeg`). When it fails, Pillow decodes as it always did, so what is
    rejected and the pixels of what is kept do not change; an image Pillow then decodes carries
    libjpeg's message as its warning.
    """
    warning = ""
    if jpeg.handles(im):
        got = jpeg.decode(data, im, mode=mode, scale=scale)
        if got.image is not None:
            return got.image, ""
        warning = got.warning
    if mode or scale > 1:
        w, h = im.size
        im.draft(mode, (w // scale, h // scale) if scale > 1 else None)
    _load(im)
    return im, warning
