"""Encoding (JPEG by OpenCV's `imencode` when in use, else Pillow, to the same bytes; PNG by
Pillow) and the array codec calls `encode_array` / `decode_array`.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from recordio_core.images import image_opencv
from recordio_core.images.image_options import ChannelOrder, ImageError, ImageOptions, _short


def _encode_jpeg_array(arr: np.ndarray, quality: int) -> bytes | None:
    """JPEG bytes of an 8-bit gray (H x W) or RGB (H x W x 3) array by OpenCV's `imencode`
    (libjpeg-turbo, 4:2:0, the same bytes as Pillow's `save(quality=...)`: table-tested over
    every quality, and ~0.15 ms less per 256-px image, most of it Pillow's own overhead);
    None when OpenCV is not in use (Pillow then encodes)."""
    cv2 = image_opencv._opencv()
    if cv2 is None:
        return None
    try:
        src = arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", src, (cv2.IMWRITE_JPEG_QUALITY, quality))
    except cv2.error as exc:
        raise ImageError(f"OpenCV's JPEG encoder failed: {_short(exc)}") from None
    if not ok:
        raise ImageError(f"OpenCV's JPEG encoder failed on a {arr.shape[1]}x{arr.shape[0]} image")
    return buf.tobytes()


def _encode(im: Image.Image, opts: ImageOptions) -> bytes:
    out = io.BytesIO()
    try:
        if opts.is_png:
            im.save(out, format="PNG", compress_level=opts.quality)
        else:
            return _jpeg_bytes(im, opts.quality)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot encode as {opts.encoding}: {_short(exc)}") from None
    return out.getvalue()


def _jpeg_bytes(im: Image.Image, quality: int) -> bytes:
    """`im` as a JPEG (other modes than L and RGB converted to RGB): OpenCV's encoder when in
    use (`_encode_jpeg_array`), else Pillow's, to the same bytes."""
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    encoded = _encode_jpeg_array(np.asarray(im), quality)
    if encoded is not None:
        return encoded
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return out.getvalue()


# --------------------------------------------------------------------------- arrays


def decode_array(data: bytes, iscolor: int = -1, channel_order: ChannelOrder = "rgb") -> np.ndarray:
    """Decode encoded image bytes to a uint8 array (HxW for gray, HxWxC otherwise).

    `iscolor`: 1 three channels, 0 gray, -1 as stored.
    """
    with Image.open(io.BytesIO(data)) as im:
        if iscolor == 1:
            im = im.convert("RGB")
        elif iscolor == 0:
            im = im.convert("L")
        elif im.mode not in ("L", "RGB", "RGBA", "LA"):
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        arr = np.asarray(im)
    if channel_order == "bgr" and arr.ndim == 3 and arr.shape[2] >= 3:
        arr = np.ascontiguousarray(arr[:, :, [2, 1, 0, *range(3, arr.shape[2])]])
    return arr


def encode_array(
    img: np.ndarray, img_fmt: str = ".jpg", quality: int = 95, channel_order: ChannelOrder = "rgb"
) -> bytes:
    """Encode a uint8 array as JPEG (`quality` 0-100) or PNG (`quality` = compression 0-9)."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be uint8, got {arr.dtype}")
    if channel_order == "bgr" and arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[:, :, [2, 1, 0, *range(3, arr.shape[2])]]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    im = Image.fromarray(np.ascontiguousarray(arr))
    fmt = img_fmt.lower()
    out = io.BytesIO()
    if fmt in (".jpg", ".jpeg"):
        if not 0 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in 0..100, got {quality}")
        return _jpeg_bytes(im, quality)
    if fmt == ".png":
        if not 0 <= quality <= 9:
            raise ValueError(f"PNG compression must be in 0..9, got {quality}")
        im.save(out, format="PNG", compress_level=quality)
    else:
        raise ValueError(f"img_fmt must be '.jpg', '.jpeg' or '.png', got {img_fmt!r}")
    return out.getvalue()
