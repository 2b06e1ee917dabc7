"""Image decoding, transforms and encoding with Pillow (no OpenCV)."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

ChannelOrder = Literal["rgb", "bgr"]


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
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        im.save(out, format="JPEG", quality=quality)
    elif fmt == ".png":
        if not 0 <= quality <= 9:
            raise ValueError(f"PNG compression must be in 0..9, got {quality}")
        im.save(out, format="PNG", compress_level=quality)
    else:
        raise ValueError(f"img_fmt must be '.jpg', '.jpeg' or '.png', got {img_fmt!r}")
    return out.getvalue()
