"""Image decoding, transforms and encoding: Pillow, simplejpeg for JPEG decoding, OpenCV's
resize when installed.

`transform_image` is what im2rec.py does to each image (OpenCV `imread(path, color)`, optional
center crop to a square, shorter-side resize with `cv2.resize`, `imencode`), done with Pillow:

- **Decode**: JPEGs in RGB, gray or CMYK with simplejpeg's *strict* libjpeg-turbo decode
  (`recordio_core.images.jpeg`: bit-identical pixels to Pillow's, and it reports libjpeg's warnings
  on corrupt-but-decodable files, which Pillow swallows); when the strict decode fails, Pillow
  decodes as before (same rejects, same pixels) and the image carries the warning
  (`transform_image_checked`). An upright RGB or gray JPEG resized by OpenCV goes from
  simplejpeg's array to `cv2.resize` without Pillow images in between (same bytes, ~15 % less
  CPU per image on the bench corpus); when its header is clean (`imghead.jpeg_frame`) and
  holds no EXIF, Pillow does not even open it (same bytes and rejects, ~3 % less). Plain
  8-bit gray or RGB PNGs (no EXIF, transparency key or animation) are decoded by OpenCV's
  `imdecode` when OpenCV is in use: lossless, so the same pixels, for ~12 % less CPU.
  Everything else: Pillow. EXIF orientation is applied
  for `color` 1 and 0 (as OpenCV's `imread` does; with -1, "unchanged", OpenCV ignores EXIF
  and so do we). CMYK/YCCK JPEGs, palette,
  RGBA, LA, 16-bit and gray inputs are normalised to `color`: 1 RGB, 0 gray, -1 as stored
  where the output encoding can hold it, with OpenCV's choices (alpha, including gray+alpha
  which becomes RGBA, is kept for PNG and dropped for JPEG; 16-bit gray stays 16-bit in a
  PNG; otherwise 16-bit samples keep their high byte; Pillow reads 16-bit RGB as 8-bit). A
  JPEG decoded to gray comes straight from its Y channel, as libjpeg does for OpenCV.
- **Resize** (`inter_method=1`, the default): OpenCV's INTER_LINEAR, i.e. plain 2x2
  bilinear with half-pixel centres and no antialiasing. With OpenCV installed (the `opencv`
  extra: `pip install 'recordio-flow[opencv]'`) that is `cv2.resize` itself, exactly what
  im2rec.py does, and ~5x faster than the Pillow form below (`RECFLOW_OPENCV=0` turns it
  off, and then Pillow also encodes the JPEGs, to the same bytes). Pillow's `resize(BILINEAR)`
  antialiases when shrinking and differs from OpenCV by up to ~90 levels on fine detail; its
  `transform(AFFINE, BILINEAR)` matches within 1 level but is slow. We build the same
  interpolation from Pillow's fast primitives (nearest-neighbour row/column gathers and an
  8-bit masked blend): measured against `cv2.resize` from MXNet's venv on photo crops, every
  pixel is within 1 level (mean |diff| about 0.15; up to 2 on pure noise) and it is 2x faster
  than Pillow's own bilinear resize. Below a 1.7x shrink it is separable (rows, then
  columns); from 1.7x on it gathers the four corners of every output pixel at the output size
  and blends those, which does less work than a row pass over the full input width.
  Enlarging uses `transform(AFFINE, BILINEAR)` (also within 1 level). Other `inter_method`s
  (im2rec.cc's 0 nearest, 2 cubic, 3 area, 4 lanczos, 9 auto, 10 random) map to Pillow's
  nearest, bicubic, box and Lanczos filters (close, not identical).
- **Shrinking JPEGs a lot**: off by default (full-size decode, MXNet's pixels); with
  `reducing_gap` set (e.g. 2.0), a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (DCT
  scaling, `Image.draft`) as long as the decoded image stays at least `reducing_gap` times the
  output size; the output size is still exactly MXNet's. This is faster for large photos
  and looks better (less aliasing), but pixels then differ more from OpenCV's, whose
  full-size INTER_LINEAR aliases: on `benchmarks/bench_im2rec.py`'s corpus 2.0 (the default
  until 2026-12-07) decodes photos shrunk 4x or more at 1/2 scale and those differ by up to
  ~10 levels per image (25 dB; mean 0.18 over the corpus). With the default `None` every RGB
  and gray JPEG of that corpus gets im2rec.py's pixels exactly, for ~4 % more CPU per image
  (README, "Codec paths against MXNet's pixels").
- **Encode**: `.jpg` (quality 0-100; libjpeg-turbo with the same defaults as OpenCV, 4:2:0)
  or `.png` (compression 0-9). JPEGs are encoded by OpenCV's `imencode` when it is in use
  and by Pillow otherwise: the bytes are the same (`tests/test_image.py` checks every
  quality), OpenCV's call costs less around the codec.

Every failure is an `ImageError` (a `ValueError`) with a short reason that can be shown to a
user as a reject.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from recordio_core.images import jpeg
from recordio_core.images.dhash import EXIF_TRANSPOSE as _TRANSPOSE
from recordio_core.images.dhash import dhash as _dhash
from recordio_core.images.imghead import header_size, jpeg_frame

ChannelOrder = Literal["rgb", "bgr"]

DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's default `Image.MAX_IMAGE_PIXELS` (about 0.25 GiB of 24-bit pixels)."""

VERIFY_MODES = ("none", "header", "decode")
INTER_METHODS = (0, 1, 2, 3, 4, 9, 10)
_ENCODINGS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
_ORIENTATION_TAG = 0x0112
_AFFINE = Image.Transform.AFFINE
_NEAREST = Image.Resampling.NEAREST
_BILINEAR = Image.Resampling.BILINEAR

# We enforce our own pixel limit (ImageOptions.max_pixels); Pillow's warning between its
# limit and twice its limit would only repeat what we check.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """Why an image could not be used (becomes a reject reason): short and human-readable."""


@dataclass(frozen=True)
class ImageOptions:
    """What to do to each image; MXNet's im2rec names and defaults.

    - `resize`: shorter side in pixels (0 keeps the size); the longer side becomes
      `long * resize // short` (MXNet's integer arithmetic).
    - `center_crop`: crop the centre square first (margin `(long - short) // 2`).
    - `color`: 1 RGB, 0 gray, -1 as stored (alpha only with `.png`).
    - `encoding`: `.jpg` (or `.jpeg`) or `.png`; `quality`: JPEG quality 0-100 or PNG
      compression 0-9.
    - `pass_through`: store the file's bytes untouched (then only `verify` applies).
    - `inter_method`: im2rec.cc's resize filter: 0 nearest, 1 bilinear (OpenCV's, default),
      2 cubic, 3 area, 4 lanczos, 9 auto (cubic to enlarge, area to shrink), 10 one of 0-4
      picked per image from a checksum of its bytes (reproducible, unlike im2rec.cc).
    - `verify` (pass-through only): "none" stores any bytes (im2rec.py's behaviour);
      "header" (default) rejects empty files, files Pillow does not recognise as an image and
      images over `max_pixels`, reading only the header (clean JPEG/PNG headers are read by
      `imghead` in microseconds, anything else by Pillow); "decode" also decodes every image.
    - `max_pixels`: reject images (and resize results) with more pixels; `None` for no
      limit of ours. Pillow's own `Image.MAX_IMAGE_PIXELS` still refuses images over twice its
      value; raise it too to go beyond.
    - `reducing_gap`: JPEG DCT-domain shrinking while the decoded image stays at least this
      many times the output size (see the module notes); `None` to decode at full size.
    """

    resize: int = 0
    center_crop: bool = False
    color: int = 1
    encoding: str = ".jpg"
    quality: int = 95
    pass_through: bool = False
    inter_method: int = 1
    verify: str = "header"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    reducing_gap: float | None = None

    def __post_init__(self) -> None:
        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.resize) or self.resize < 0:
            raise ValueError(f"resize must be an int >= 0 (0 keeps the size), got {self.resize!r}")
        if not isinstance(self.center_crop, bool):
            raise ValueError(f"center_crop must be True or False, got {self.center_crop!r}")
        if not is_int(self.color) or self.color not in (-1, 0, 1):
            raise ValueError(
                f"color must be 1 (colour), 0 (gray) or -1 (unchanged), got {self.color!r}"
            )
        if not isinstance(self.encoding, str) or self.encoding.lower() not in _ENCODINGS:
            raise ValueError(f"encoding must be '.jpg' or '.png', got {self.encoding!r}")
        object.__setattr__(self, "encoding", self.encoding.lower())
        if not is_int(self.quality):
            raise ValueError(f"quality must be an int, got {self.quality!r}")
        if self.is_png and not 0 <= self.quality <= 9:
            raise ValueError(
                f"quality is the PNG compression level 0-9 with encoding '.png', got {self.quality}"
            )
        if not self.is_png and not 0 <= self.quality <= 100:
            raise ValueError(
                f"quality is the JPEG quality 0-100 with encoding '.jpg', got {self.quality}"
            )
        if not isinstance(self.pass_through, bool):
            raise ValueError(f"pass_through must be True or False, got {self.pass_through!r}")
        if not is_int(self.inter_method) or self.inter_method not in INTER_METHODS:
            raise ValueError(
                "inter_method must be one of 0 (nearest), 1 (bilinear), 2 (cubic), 3 (area), "
                f"4 (lanczos), 9 (auto), 10 (random), got {self.inter_method!r}"
            )
        if self.verify not in VERIFY_MODES:
            raise ValueError(
                f"verify must be one of {', '.join(map(repr, VERIFY_MODES))}, got {self.verify!r}"
            )
        if self.max_pixels is not None and (not is_int(self.max_pixels) or self.max_pixels < 1):
            raise ValueError(
                f"max_pixels must be a positive int or None (no limit), got {self.max_pixels!r}"
            )
        if self.reducing_gap is not None and (
            isinstance(self.reducing_gap, bool)
            or not isinstance(self.reducing_gap, (int, float))
            or not self.reducing_gap >= 1.0
        ):
            raise ValueError(
                f"reducing_gap must be a number >= 1.0 or None (decode JPEGs at full size), "
                f"got {self.reducing_gap!r}"
            )

        opencv_wanted()  # a bad RECFLOW_OPENCV fails here, not as a reject per image

    @property
    def is_png(self) -> bool:
        return self.encoding == ".png"


# --------------------------------------------------------------------------- size arithmetic


def resize_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """MXNet's output size `(w, h)`: the shorter side becomes `resize`, the longer side
    `long * resize // short` (a square counts as landscape). `resize <= 0` keeps the size."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if resize <= 0:
        return width, height
    if height > width:
        return resize, height * resize // width
    return width * resize // height, resize


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centre square `(left, top, right, bottom)` as im2rec crops it (margin
    `(long - short) // 2`)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if height > width:
        margin = (height - width) // 2
        return 0, margin, width, margin + width
    margin = (width - height) // 2
    return margin, 0, margin + height, height


# --------------------------------------------------------------------------- decoding


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


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


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


# --------------------------------------------------------------------------- resizing


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


def opencv_wanted() -> bool:
    """`RECFLOW_OPENCV`: "1" (the default) resizes with OpenCV when it is installed, "0" with
    Pillow only. Anything else is a ValueError (checked when ImageOptions are made)."""
    raw = os.environ.get("RECFLOW_OPENCV", "1")
    if raw not in ("0", "1"):
        raise ValueError(
            "RECFLOW_OPENCV must be 1 (resize with OpenCV when installed, the default) or 0 "
            f"(Pillow only), got {raw!r}"
        )
    return raw == "1"


@functools.cache
def _opencv() -> Any:
    """OpenCV's module when it is installed (the `opencv` extra), else None.

    Its INTER_LINEAR *is* MXNet's resize (im2rec.py calls `cv2.resize`), SIMD-fast: about a
    fifth of the gather-and-blend form's time. It runs single-threaded here, because packing
    already keeps every core busy with one image per worker. Set `RECFLOW_OPENCV=0` to use
    Pillow only.
    """
    if not opencv_wanted():
        return None
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # absent, or a build that cannot load here: Pillow does the work
        return None
    return cv2


_LINEAR_MODES = ("L", "LA", "RGB", "RGBA")  # the 8-bit modes both fast forms take


def _resize_linear(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`cv2.resize(img, size)` (INTER_LINEAR): OpenCV itself when installed, else the same
    arithmetic from Pillow's primitives; see the module notes."""
    w, h = im.size
    ow, oh = size
    if (ow, oh) == (w, h):
        return im
    if im.mode not in _LINEAR_MODES:
        return _resize_affine(im, size)
    cv2 = _opencv()
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


# --------------------------------------------------------------------------- the transform


@dataclass(frozen=True)
class Transformed:
    """What `transform_image_checked` made of one image.

    - `data`: the bytes to store (encoded image, or the file's own bytes in pass-through);
    - `warning`: libjpeg's complaint when the JPEG decoded only with warnings (corrupt but
      decodable: "Corrupt JPEG data: ...", "Premature end of JPEG file"), else "";
    - `dhash`: the 64-bit difference hash (`recordio_core.images.dhash`) of the image as packed
      (after crop and resize, before encoding; in pass-through with `verify="decode"`, the
      decoded file) when asked for and the image was decoded, else None.
    """

    data: bytes
    warning: str = ""
    dhash: int | None = None


def transform_image(data: bytes, opts: ImageOptions) -> bytes:
    """im2rec's per-image work: decode, normalise colour, center crop, resize, encode.

    With `opts.pass_through` the bytes come back untouched (after the `opts.verify` check).
    Raises `ImageError` with a short reason for anything that cannot be used.
    """
    return transform_image_checked(data, opts).data


def transform_image_checked(data: bytes, opts: ImageOptions, *, dhash: bool = False) -> Transformed:
    """`transform_image`, also reporting JPEG decoder warnings and (with `dhash`) the image's
    difference hash. Pass-through decodes only with `verify="decode"`; otherwise it reports
    neither. Raises `ImageError` with a short reason for anything that cannot be used.
    """
    if opts.pass_through:
        if opts.verify == "none":
            return Transformed(data)
        if opts.verify == "header" and _clean_header(data, opts.max_pixels):
            return Transformed(data)
        im = _open(data, opts.max_pixels)
        try:
            if opts.verify != "decode":
                return Transformed(data)
            orientation = _orientation(im)
            decoded, warning = _decode(im, data)
            return Transformed(data, warning, _dhash(decoded, orientation) if dhash else None)
        finally:
            im.close()
    fast = _jpeg_without_pillow(data, opts, dhash)
    if fast is not None:
        return fast
    im = _open(data, opts.max_pixels)
    try:
        return _transform(im, data, opts, dhash)
    finally:
        im.close()


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


def verify_image(
    data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[str, int, int]:
    """Decode `data` completely; return `(format, width, height)`. Raises `ImageError`."""
    im = _open(data, max_pixels)
    try:
        _load(im)
        return str(im.format or "?"), im.width, im.height
    finally:
        im.close()


def _geometry(
    w: int, h: int, opts: ImageOptions
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Crop box and output size for an upright `w` x `h` image (MXNet's arithmetic)."""
    box = center_crop_box(w, h) if opts.center_crop else (0, 0, w, h)
    cw, ch = box[2] - box[0], box[3] - box[1]
    out_size = resize_size(cw, ch, opts.resize)
    if opts.max_pixels is not None and out_size[0] * out_size[1] > opts.max_pixels:
        raise ImageError(
            f"resizing {cw}x{ch} to {out_size[0]}x{out_size[1]} would exceed the limit of "
            f"{opts.max_pixels} pixels"
        )
    return box, out_size


def _transform(im: Image.Image, data: bytes, opts: ImageOptions, dhash: bool) -> Transformed:
    is_jpeg = im.format == "JPEG"
    target = _target_mode(im, opts.color, opts.is_png)
    warning = ""
    if is_jpeg:
        # Everything is known before decoding: plan a DCT-scaled decode.
        orientation = _orientation(im) if opts.color != -1 else 1
        raw_w, raw_h = im.size
        w, h = (raw_h, raw_w) if orientation in (5, 6, 7, 8) else (raw_w, raw_h)
        box, out_size = _geometry(w, h, opts)
        scale = _jpeg_scale(box, out_size, opts)
        draft_mode = "L" if target == "L" and im.mode == "RGB" else None
        if orientation == 1 and jpeg.handles(im):
            fast = _fast_jpeg(data, im.size, im.mode, opts, target, scale, box, out_size, dhash)
            if fast is not None:
                return fast
        im, warning = _decode(im, data, mode=draft_mode, scale=scale)
    else:
        if _plain_png(im, data, target):
            w, h = im.size
            fast = _fast_png(data, (w, h), opts, target, *_geometry(w, h, opts), dhash)
            if fast is not None:
                return fast
        _load(im)
        orientation = _orientation(im) if opts.color != -1 else 1
        w, h = im.size
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        box, out_size = _geometry(w, h, opts)
    im = _to_mode(im, target)
    if orientation != 1:
        im = im.transpose(_TRANSPOSE[orientation])
    dw, dh = im.size
    if (dw, dh) != (w, h):  # decoded at a reduced scale: same crop, in decoded pixels
        box = (
            round(box[0] * dw / w),
            round(box[1] * dh / h),
            round(box[2] * dw / w),
            round(box[3] * dh / h),
        )
    if box != (0, 0, dw, dh):
        im = im.crop(box)
    im = _resize(im, out_size, opts.inter_method, data)
    return Transformed(_encode(im, opts), warning, _dhash(im) if dhash else None)


def _jpeg_scale(
    box: tuple[int, int, int, int], out_size: tuple[int, int], opts: ImageOptions
) -> int:
    """The JPEG DCT scaling (1, 2, 4 or 8) that keeps the decoded crop `box` at least
    `reducing_gap` times `out_size` (1 without resize or `reducing_gap`)."""
    if opts.reducing_gap is None or not opts.resize:
        return 1
    cw, ch = box[2] - box[0], box[3] - box[1]
    room = min(cw / out_size[0], ch / out_size[1]) / opts.reducing_gap
    return next((s for s in (8, 4, 2) if s <= room), 1)


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
    if opts.resize and (_opencv() is None or opts.inter_method != 1):
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
        cv2 = _opencv()
        arr = cv2.resize(arr, out_size, interpolation=cv2.INTER_LINEAR)
    if target == "RGB" and arr.ndim == 2:  # gray for colour output: Pillow's convert("RGB")
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    arr = np.ascontiguousarray(arr)
    encoded = None if opts.is_png else _encode_jpeg_array(arr, opts.quality)
    if encoded is not None and not dhash:
        return Transformed(encoded, "", None)
    out = Image.fromarray(arr, target)
    return Transformed(encoded or _encode(out, opts), "", _dhash(out) if dhash else None)


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
    cv2 = _opencv()
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


def _encode_jpeg_array(arr: np.ndarray, quality: int) -> bytes | None:
    """JPEG bytes of an 8-bit gray (H x W) or RGB (H x W x 3) array by OpenCV's `imencode`
    (libjpeg-turbo, 4:2:0, the same bytes as Pillow's `save(quality=...)`: table-tested over
    every quality, and ~0.15 ms less per 256-px image, most of it Pillow's own overhead);
    None when OpenCV is not in use (Pillow then encodes)."""
    cv2 = _opencv()
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
