"""The array fast paths: upright JPEGs (simplejpeg) and plain PNGs (OpenCV's `imdecode`) go
straight to `cv2.resize` and `cv2.imencode` without Pillow images in between, to the same
bytes as the general path; each returns None when it does not apply.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from recordio_core.images import image_encode, image_opencv, jpeg
from recordio_core.images.dhash import dhash as _dhash
from recordio_core.images.image_options import ImageOptions, Transformed, _geometry, _jpeg_scale
from recordio_core.images.imghead import jpeg_frame


def _jpeg_without_pillow(data: bytes, opts: ImageOptions, dhash: bool) -> Transformed | None:
    """The most common image of all, before Pillow opens anything: a JPEG whose header
    `imghead.jpeg_frame` reads clean, gray or colour, without EXIF (so upright) and within
    `max_pixels` and Pillow's own limit, goes straight to `_fast_jpeg` (~3 % less CPU per
    image than with Pillow's `open`). None otherwise, or when `_fast_jpeg` declines (a decoder
    warning, say): Pillow then opens the file and every check, reject and warning is as
    before."""
    frame = jpeg_frame(data)
    if frame is None or frame.exif or frame.components == 4 or not jpeg.available():
        return None
    pixels = frame.width * frame.height
    limits = (opts.max_pixels, Image.MAX_IMAGE_PIXELS)
    if any(limit is not None and pixels > limit for limit in limits):
        return None
    stored = "L" if frame.components == 1 else "RGB"
    target = {1: "RGB", 0: "L"}.get(opts.color, stored)
    box, out_size = _geometry(frame.width, frame.height, opts)
    scale = _jpeg_scale(box, out_size, opts)
    size = (frame.width, frame.height)
    return _fast_jpeg(data, size, stored, opts, target, scale, box, out_size, dhash)


def _fast_jpeg(
    data: bytes,
    size: tuple[int, int],
    stored: str,
    opts: ImageOptions,
    target: str,
    scale: int,
    box: tuple[int, int, int, int],
    out_size: tuple[int, int],
    dhash: bool,
) -> Transformed | None:
    """The common case without Pillow images in between: an upright JPEG of `size`, stored
    gray or colour (`stored` "L" or "RGB"), decoded by simplejpeg for `target` (a colour JPEG
    to gray from its Y channel, as Pillow's `draft("L")`; a gray one for colour output as
    gray, widened after the resize) straight into the array `cv2.resize` takes (OpenCV's
    INTER_LINEAR) and, as a JPEG, encoded from that array by `cv2.imencode`, so no Pillow
    image is made unless a PNG or a dhash is asked for. Same bytes as the general path; None
    when it does not apply or the strict decode fails (the general path then decodes with
    Pillow and reports the warning)."""
    if stored not in ("L", "RGB") or target not in ("L", "RGB"):
        return None  # CMYK: the general path converts with Pillow
    if opts.resize and (image_opencv._opencv() is None or opts.inter_method != 1):
        return None
    gray = "L" in (stored, target)  # a gray JPEG for colour output is widened after resizing
    arr = jpeg.decode_array(data, size, "L" if gray else "RGB", scale=scale)
    if arr is None:
        return None
    if gray:
        arr = arr[:, :, 0]
    dh, dw = arr.shape[:2]
    w, h = size
    if (dw, dh) != (w, h):
        box = (
            round(box[0] * dw / w),
            round(box[1] * dh / h),
            round(box[2] * dw / w),
            round(box[3] * dh / h),
        )
    return _finish_array(arr, target, box, out_size, opts, dhash)


def _finish_array(
    arr: np.ndarray,
    target: str,
    box: tuple[int, int, int, int],
    out_size: tuple[int, int],
    opts: ImageOptions,
    dhash: bool,
) -> Transformed:
    """Crop `box` out of the upright decoded `arr` (gray H x W or RGB H x W x 3), resize it to
    `out_size` with `cv2.resize`, widen gray to `target` "RGB" (cheaper after the resize than
    before, and the same values) and encode it: the fast paths' common end, the same
    arithmetic as the general path's."""
    arr = arr[box[1] : box[3], box[0] : box[2]]
    if (arr.shape[1], arr.shape[0]) != out_size:
        cv2 = image_opencv._opencv()
        arr = cv2.resize(arr, out_size, interpolation=cv2.INTER_LINEAR)
    if target == "RGB" and arr.ndim == 2:  # gray for colour output: Pillow's convert("RGB")
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    arr = np.ascontiguousarray(arr)
    encoded = None if opts.is_png else image_encode._encode_jpeg_array(arr, opts.quality)
    if encoded is not None and not dhash:
        return Transformed(encoded, "", None)
    out = Image.fromarray(arr, target)
    return Transformed(
        encoded or image_encode._encode(out, opts), "", _dhash(out) if dhash else None
    )


# Chunks that can carry EXIF for Pillow (an orientation the fast path would not apply).
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_PNG_EXIF_TEXT = b"Raw profile type exif\0"


def _plain_png(im: Image.Image, data: bytes, target: str) -> bool:
    """Whether `_fast_png` may stand in for Pillow's decode of the opened PNG `im`: 8-bit gray
    or RGB stored as `target` (no palette, alpha or transparency key, no 16-bit samples), not
    animated, and no EXIF anywhere in the file (an orientation is applied by the general
    path). Walks the chunk headers, not the pixel data."""
    if im.format != "PNG" or im.mode != target or target not in ("L", "RGB"):
        return False
    if data[12:16] != b"IHDR" or data[24] != 8 or data[25] != (0 if target == "L" else 2):
        return False
    pos, end = 8, len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IEND":
            return True
        if kind in (b"tRNS", b"eXIf", b"acTL") or (
            kind in _PNG_TEXT_CHUNKS and data.startswith(_PNG_EXIF_TEXT, pos + 8)
        ):
            return False
        pos += 12 + length
    return True  # no IEND: OpenCV's decoder refuses the file and Pillow decides


def _fast_png(
    data: bytes,
    size: tuple[int, int],
    opts: ImageOptions,
    target: str,
    box: tuple[int, int, int, int],
    out_size: tuple[int, int],
    dhash: bool,
) -> Transformed | None:
    """A plain PNG (`_plain_png`) of `size` decoded by OpenCV's `imdecode` (libpng; ~1 ms, or
    ~12 %, less per re-encode of a photo-like PNG than through Pillow) into the array
    `cv2.resize` takes. PNG decoding is lossless, so the pixels are Pillow's. None when OpenCV
    is not in use or refuses the file: the general path then decodes with Pillow, so what is
    rejected does not change."""
    cv2 = image_opencv._opencv()
    if cv2 is None or (opts.resize and opts.inter_method != 1):
        return None
    flags = cv2.IMREAD_IGNORE_ORIENTATION | (
        cv2.IMREAD_GRAYSCALE if target == "L" else cv2.IMREAD_COLOR
    )
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if arr is None or (arr.shape[1], arr.shape[0]) != size:
        return None
    if target == "RGB":
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return _finish_array(arr, target, box, out_size, opts, dhash)
