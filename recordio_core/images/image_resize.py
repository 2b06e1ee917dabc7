"""Resizing: OpenCV's INTER_LINEAR (`cv2.resize` when in use, else the same arithmetic from
Pillow's primitives) and im2rec.cc's other filters; see `recordio_core.images.image`'s notes.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
from PIL import Image

from recordio_core.images import image_opencv

_AFFINE = Image.Transform.AFFINE
_NEAREST = Image.Resampling.NEAREST
_BILINEAR = Image.Resampling.BILINEAR


@functools.lru_cache(maxsize=512)
def _linear_axis(n_in: int, n_out: int) -> tuple[float, bytes] | None:
    """OpenCV INTER_LINEAR taps along one axis when shrinking (n_out <= n_in).

    Returns `(scale, weights)` where output i blends source rows `i0 = floor(f_i)` and
    `i0 + 1` with 8-bit weight `weights[i]` (0-255) for the second, `f_i` computed exactly as
    Pillow's nearest-neighbour scaler computes its source positions (so the gathers and the
    weights agree), or None if rounding makes Pillow's second gather not `i0 + 1`.
    """
    scale = n_in / n_out
    # Pillow's ImagingScaleAffine: x = a2 + a0 * 0.5, then x += a0 per pixel (sequential).
    steps = np.full(n_out, scale)
    steps[0] = -0.5 + scale * 0.5
    f0 = np.add.accumulate(steps)
    steps[0] = 0.5 + scale * 0.5
    f1 = np.add.accumulate(steps)
    i0 = np.floor(f0)
    i1 = np.floor(f1)
    if f0[0] < 0 or not np.array_equal(i1, i0 + 1):
        return None
    a = f0 - i0
    a[i0 >= n_in - 1] = 0.0  # OpenCV: the last source pixel has nothing to its right
    return scale, np.rint(a * 255.0).astype(np.uint8).tobytes()


def _row_mask(weights: bytes, size: tuple[int, int]) -> Image.Image:
    """An "L" mask of `size` whose every row is `weights` (one byte per column)."""
    return Image.frombytes("L", size, weights * size[1])


def _column_mask(weights: bytes, size: tuple[int, int]) -> Image.Image:
    """An "L" mask of `size` whose every column is `weights` (one byte per row)."""
    return Image.frombytes("L", size, np.repeat(np.frombuffer(weights, np.uint8), size[0]))


def _linear_weights(w: int, h: int, ow: int, oh: int) -> tuple[bytes, bytes] | None:
    """The 8-bit weights along x and y (empty for an axis that keeps its size) of a shrink
    the gather-and-blend form can do, or None when it cannot (enlarging, rounding)."""
    if ow > w or oh > h:
        return None
    tx = _linear_axis(w, ow) if ow != w else (1.0, b"")
    ty = _linear_axis(h, oh) if oh != h else (1.0, b"")
    if tx is None or ty is None:
        return None
    return tx[1], ty[1]


# Shrinking by at least this factor on both axes, the four-corner form (four gathers and three
# blends, all at the output size) does less work than the separable one (two gathers and a
# blend at (input width x output height), then the same at the output size).
_CORNERS_FROM = 1.7


_LINEAR_MODES = ("L", "LA", "RGB", "RGBA")  # the 8-bit modes both fast forms take


def _resize_linear(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`cv2.resize(img, size)` (INTER_LINEAR): OpenCV itself when installed, else the same
    arithmetic from Pillow's primitives; see `recordio_core.images.image`."""
    w, h = im.size
    ow, oh = size
    if (ow, oh) == (w, h):
        return im
    if im.mode not in _LINEAR_MODES:
        return _resize_affine(im, size)
    cv2 = image_opencv._opencv()
    if cv2 is not None:
        out = cv2.resize(np.asarray(im), size, interpolation=cv2.INTER_LINEAR)
        return Image.fromarray(out, im.mode)
    weights = _linear_weights(w, h, ow, oh)
    if weights is None:
        return _resize_affine(im, size)
    xw, yw = weights
    sx, sy = w / ow, h / oh
    if sx >= _CORNERS_FROM and sy >= _CORNERS_FROM:
        wx = _row_mask(xw, size)
        wy = _column_mask(yw, size)
        top = im.transform(size, _AFFINE, (sx, 0, -0.5, 0, sy, -0.5), _NEAREST)
        top.paste(im.transform(size, _AFFINE, (sx, 0, 0.5, 0, sy, -0.5), _NEAREST), None, wx)
        bottom = im.transform(size, _AFFINE, (sx, 0, -0.5, 0, sy, 0.5), _NEAREST)
        bottom.paste(im.transform(size, _AFFINE, (sx, 0, 0.5, 0, sy, 0.5), _NEAREST), None, wx)
        top.paste(bottom, None, wy)
        return top
    if oh != h:
        my = _column_mask(yw, (w, oh))
        top = im.transform((w, oh), _AFFINE, (1, 0, 0, 0, sy, -0.5), _NEAREST)
        bottom = im.transform((w, oh), _AFFINE, (1, 0, 0, 0, sy, 0.5), _NEAREST)
        top.paste(bottom, None, my)
        im = top
    if ow != w:
        mx = _row_mask(xw, size)
        left = im.transform(size, _AFFINE, (sx, 0, -0.5, 0, 1, 0), _NEAREST)
        right = im.transform(size, _AFFINE, (sx, 0, 0.5, 0, 1, 0), _NEAREST)
        left.paste(right, None, mx)
        im = left
    return im


def _resize_affine(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Plain bilinear (no antialiasing) through Pillow's generic affine transform."""
    w, h = im.size
    ow, oh = size
    if im.mode in ("RGBA", "LA"):
        # Pillow premultiplies alpha for non-nearest transforms of these modes; OpenCV does not.
        return Image.merge(im.mode, [_resize_affine(band, size) for band in im.split()])
    if im.mode == "I;16":
        out = np.asarray(_resize_affine(im.convert("I"), size))
        return Image.fromarray(np.clip(out, 0, 65535).astype("<u2"))
    # OpenCV clamps at the borders; extend the image by one edge pixel each side so the
    # bilinear taps outside the image see the edge pixel instead of the fill colour.
    padded = Image.new(im.mode, (w + 2, h + 2))
    padded.paste(im, (1, 1))
    padded.paste(im.crop((0, 0, w, 1)), (1, 0))
    padded.paste(im.crop((0, h - 1, w, h)), (1, h + 1))
    padded.paste(padded.crop((1, 0, 2, h + 2)), (0, 0))
    padded.paste(padded.crop((w, 0, w + 1, h + 2)), (w + 1, 0))
    coeffs = (w / ow, 0.0, 1.0, 0.0, h / oh, 1.0)
    return padded.transform((ow, oh), _AFFINE, coeffs, _BILINEAR)


def _resize_nearest(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    w, h = im.size
    ow, oh = size
    sx, sy = w / ow, h / oh
    # OpenCV INTER_NEAREST: source = floor(dst * scale) (no half-pixel shift)
    return im.transform(size, _AFFINE, (sx, 0, -0.5 * sx, 0, sy, -0.5 * sy), _NEAREST)


def _resize(im: Image.Image, size: tuple[int, int], method: int, data: bytes) -> Image.Image:
    if im.size == size:
        return im
    w, h = im.size
    ow, oh = size
    if method == 10:
        method = zlib.crc32(data) % 5
    elif method == 9:
        method = 2 if (ow > w and oh > h) else 3 if (ow < w and oh < h) else 1
    if method == 1:
        return _resize_linear(im, size)
    if method == 0:
        return _resize_nearest(im, size)
    if method == 3 and (ow > w or oh > h):
        return _resize_linear(im, size)  # OpenCV's INTER_AREA enlarges bilinearly
    resample = {
        2: Image.Resampling.BICUBIC,
        3: Image.Resampling.BOX,
        4: Image.Resampling.LANCZOS,
    }[method]
    if im.mode == "I;16":
        out = np.asarray(im.convert("I").resize(size, resample))
        return Image.fromarray(np.clip(out, 0, 65535).astype("<u2"))
    return im.resize(size, resample)
