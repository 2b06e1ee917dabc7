"""One image's way through the reader, as MXNet 1.9.1's `ImageRecordIter` does it, with Pillow.

decode (`data_shape[0]` channels: 1 gray, 3 RGB, 4 RGBA) -> optional `resize` of the shorter
side -> enlarge when still smaller than `data_shape` (`fit_sizes`) -> crop `data_shape`
(centre, or random with `rand_crop`) -> optional mirror -> `(x - mean) * scale / std` written
straight into the batch.

Resampling and cropping happen in one Pillow affine transform that samples at the same points
as OpenCV's `cv2.resize(..., INTER_LINEAR)` followed by a crop, so pixels agree with MXNet's
within one grey level (checked against MXNet in `tests/test_reader_mxnet.py`).
`inter_method`: 0 nearest, 1 bilinear (default), 2 bicubic (Pillow's kernel, a = -0.5;
OpenCV's uses a = -0.75), 3 area (Pillow `BOX`), 4 Lanczos (Pillow's, 3 lobes; OpenCV's has 4),
9 auto (bicubic to enlarge, area to shrink, else bilinear), 10 random among 0-4.
Channels come out in RGB(A) order, as MXNet's iterator returns them.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from recordio_core.images.image import resize_size

Layout = Literal["NCHW", "NHWC"]
DType = Literal["float32", "uint8"]

INTER_METHODS = (0, 1, 2, 3, 4, 9, 10)
_AFFINE_FILTERS = {0: Image.Resampling.NEAREST, 1: Image.Resampling.BILINEAR}
_AFFINE_FILTERS[2] = Image.Resampling.BICUBIC
_RESIZE_FILTERS = {3: Image.Resampling.BOX, 4: Image.Resampling.LANCZOS}
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_IR_HEADER = struct.Struct("<IfQQ")


def fit_sizes(width: int, height: int, out_w: int, out_h: int) -> list[tuple[int, int]]:
    """MXNet 1.9.1 enlarges an image smaller than the crop, keeping its aspect ratio, in up to
    two resizes: first a too-short height becomes `out_h` (width scaled, floored), then a
    still too-narrow width becomes `out_w` (height scaled from the first result, floored).
    Returns the `(width, height)` of each resize (none when the image is large enough)."""
    sizes: list[tuple[int, int]] = []
    if height < out_h:
        width, height = out_h * width // height, out_h
        sizes.append((width, height))
    if width < out_w:
        width, height = out_w, out_w * height // width
        sizes.append((width, height))
    return sizes


def interpolation(inter_method: int, old: tuple[int, int], new: tuple[int, int], u: float) -> int:
    """The interpolation actually used (MXNet's `GetInterMethod`); `u` in [0, 1) picks one for
    `inter_method=10`."""
    if inter_method == 9:
        if new[0] > old[0] and new[1] > old[1]:
            return 2
        if new[0] < old[0] and new[1] < old[1]:
            return 3
        return 1
    if inter_method == 10:
        return min(int(u * 5), 4)
    return inter_method


@dataclass(frozen=True)
class AugmentSpec:
    """What to make of each image. Validated by the reader's options; see the module doc."""

    data_shape: tuple[int, int, int]
    resize: int = -1
    rand_crop: bool = False
    rand_mirror: bool = False
    inter_method: int = 1
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    dtype: DType = "float32"
    layout: Layout = "NCHW"

    @property
    def channels(self) -> int:
        return self.data_shape[0]

    @property
    def normalizes(self) -> bool:
        return self.dtype == "float32" and (
            any(m != 0 for m in self.mean) or any(s != 1 for s in self.std) or self.scale != 1
        )

    @property
    def needs_draws(self) -> bool:
        """Whether images need random numbers (crop position, mirror, interpolation)."""
        return self.rand_crop or self.rand_mirror or self.inter_method == 10


def image_bytes(payload: bytes) -> tuple[int, float, int, memoryview]:
    """`(flag, header label, id, image bytes)` of an image record payload (labels skipped).

    Raises `ValueError` when the payload is too short for its header and labels.
    """
    if len(payload) < _IR_HEADER.size:
        raise ValueError(f"a {len(payload)}-byte record is too short for an image header")
    flag, label, rid, _id2 = _IR_HEADER.unpack_from(payload, 0)
    start = _IR_HEADER.size + 4 * flag
    if start > len(payload):
        raise ValueError(f"the header declares {flag} labels but the record is too short")
    return flag, label, rid, memoryview(payload)[start:]


def open_image(data: bytes | memoryview, channels: int) -> Image.Image:
    """Decode to the mode the reader needs: 1 -> "L", 3 -> "RGB", 4 -> "RGBA".

    A JPEG asked for gray is decoded straight to its luma plane (as libjpeg-turbo's gray
    output in MXNet). Raises `ValueError` when the bytes are not a readable image.
    """
    mode = _MODES[channels]
    try:
        im = Image.open(io.BytesIO(data))
        if mode == "L" and im.format == "JPEG":
            im.draft("L", im.size)
        im.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image ({len(data)} bytes): {exc}") from None
    if im.mode != mode:
        if channels == 4 and "A" not in im.getbands():
            raise ValueError(f"data_shape asks for 4 channels but the image is {im.mode}")
        im = im.convert(mode)
    return im


def _resample(
    im: Image.Image,
    size: tuple[int, int],
    method: int,
    crop: tuple[int, int, int, int] | None = None,
) -> Image.Image:
    """Resize `im` to `size` (`(w, h)`) and, when `crop=(x, y, w, h)` is given, return only
    that window of the result (computed directly, without the rest)."""
    w, h = im.size
    sx, sy = w / size[0], h / size[1]
    x, y, out_w, out_h = crop if crop is not None else (0, 0, size[0], size[1])
    if method in _AFFINE_FILTERS:
        return im.transform(
            (out_w, out_h),
            Image.Transform.AFFINE,
            (sx, 0.0, x * sx, 0.0, sy, y * sy),
            _AFFINE_FILTERS[method],
        )
    box = (x * sx, y * sy, (x + out_w) * sx, (y + out_h) * sy)
    return im.resize((out_w, out_h), _RESIZE_FILTERS[method], box=box)


def transform_image(im: Image.Image, spec: AugmentSpec, draws: tuple[float, ...]) -> np.ndarray:
    """Resize, crop and mirror one decoded image; returns an `(H, W)` or `(H, W, C)` uint8
    array of the output size. `draws` are four uniform numbers in [0, 1) (crop y, crop x,
    mirror, interpolation) or empty when `spec.needs_draws` is false."""
    _, out_h, out_w = spec.data_shape
    size = im.size
    sizes = [] if spec.resize <= 0 else [resize_size(size[0], size[1], spec.resize)]
    sizes += fit_sizes(*(sizes[-1] if sizes else size), out_w, out_h)
    new_w, new_h = sizes[-1] if sizes else size
    y, x = new_h - out_h, new_w - out_w
    if spec.rand_crop:
        y, x = min(int(draws[0] * (y + 1)), y), min(int(draws[1] * (x + 1)), x)
    else:
        y, x = y // 2, x // 2
    u = draws[3] if draws else 0.0
    cropped = False
    for i, new in enumerate(sizes):
        if new == im.size:  # resizing to the same size copies (OpenCV too)
            continue
        method = interpolation(spec.inter_method, im.size, new, u)
        cropped = i == len(sizes) - 1
        im = _resample(im, new, method, (x, y, out_w, out_h) if cropped else None)
    arr = np.asarray(im)
    if not cropped:
        arr = arr[y : y + out_h, x : x + out_w]
    if spec.rand_mirror and draws[2] < 0.5:
        arr = arr[:, ::-1]
    return arr


class ImageWriter:
    """Writes transformed images into a batch array, normalising on the way."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec
        c = spec.channels
        mean = np.asarray(spec.mean[:c], dtype=np.float32)
        mul = np.asarray([spec.scale / s for s in spec.std[:c]], dtype=np.float32)
        self._normalize = spec.normalizes
        if spec.layout == "NCHW":
            self._mean, self._mul = mean[:, None, None], mul[:, None, None]
        else:
            self._mean, self._mul = mean, mul
        self.item_shape = (
            spec.data_shape
            if spec.layout == "NCHW"
            else (spec.data_shape[1], spec.data_shape[2], spec.data_shape[0])
        )

    def allocate(self, n: int) -> np.ndarray:
        return np.empty((n, *self.item_shape), dtype=np.dtype(self.spec.dtype))

    def write(self, out: np.ndarray, arr: np.ndarray) -> None:
        """Write one `(H, W[, C])` uint8 image into `out` (one item of the batch array)."""
        if arr.ndim == 2:
            arr = arr[:, :, None]
        src = arr.transpose(2, 0, 1) if self.spec.layout == "NCHW" else arr
        if self._normalize:
            np.subtract(src, self._mean, out=out, casting="unsafe")
            out *= self._mul
        else:
            out[...] = src

    def process(self, data: bytes | memoryview, out: np.ndarray, draws: tuple[float, ...]) -> None:
        """Decode, transform and write one image."""
        im = open_image(data, self.spec.channels)
        self.write(out, transform_image(im, self.spec, draws))
