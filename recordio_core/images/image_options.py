"""Image transform options, results and errors, and MXNet's size arithmetic.

`ImageOptions` (im2rec's names and defaults), `ImageError` (a reject reason), `Transformed`
(what `recordio_core.images.image.transform_image_checked` made of one image) and the
geometry every decode path shares: crop box, output size, JPEG DCT scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recordio_core.images.image_opencv import opencv_wanted

ChannelOrder = Literal["rgb", "bgr"]

DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's default `Image.MAX_IMAGE_PIXELS` (about 0.25 GiB of 24-bit pixels)."""

VERIFY_MODES = ("none", "header", "decode")
INTER_METHODS = (0, 1, 2, 3, 4, 9, 10)
_ENCODINGS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


class ImageError(ValueError):
    """Why an image could not be used (becomes a reject reason): short and human-readable."""


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


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
      many times the output size (see `recordio_core.images.image`); `None` to decode at full size.
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


# --------------------------------------------------------------------------- results


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
