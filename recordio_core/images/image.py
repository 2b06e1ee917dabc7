"""The image transform's entry points (`transform_image`, `verify_image`) and its notes: Pillow,
simplejpeg for JPEG decoding, OpenCV's resize and codecs when installed.

The steps live beside this module, one concern each: `image_options` (options, results,
errors, MXNet's size arithmetic), `image_decode` (opening and decoding, colour modes),
`image_resize`, `image_fast` (the array fast paths), `image_encode` (encoders and
`encode_array`/`decode_array`) and `image_opencv` (whether OpenCV is used). Everything callers
import from here is re-exported. The functions tests and benchmarks patch (`_opencv`, `_load`,
`_to_mode`, `_jpeg_without_pillow`, `_fast_jpeg`, `_fast_png`, `_encode_jpeg_array`) are
looked up on their home module by every caller (never imported by name) and deliberately
not re-exported: patch them there; `monkeypatch.setattr` on this module then fails
(AttributeError) instead of silently not applying (`tests/test_image.py` checks both).

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

from PIL import Image

from recordio_core.images import image_decode, image_fast, jpeg
from recordio_core.images.dhash import EXIF_TRANSPOSE as _TRANSPOSE
from recordio_core.images.dhash import dhash as _dhash
from recordio_core.images.image_decode import (
    _clean_header,
    _decode,
    _open,
    _orientation,
    _target_mode,
)
from recordio_core.images.image_encode import _encode, decode_array, encode_array
from recordio_core.images.image_fast import _plain_png
from recordio_core.images.image_opencv import opencv_wanted
from recordio_core.images.image_options import (
    DEFAULT_MAX_PIXELS,
    INTER_METHODS,
    VERIFY_MODES,
    ChannelOrder,
    ImageError,
    ImageOptions,
    Transformed,
    _geometry,
    _jpeg_scale,
    center_crop_box,
    resize_size,
)
from recordio_core.images.image_resize import _resize
from recordio_core.images.image_resize import _resize_affine as _resize_affine
from recordio_core.images.image_resize import _resize_linear as _resize_linear

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "INTER_METHODS",
    "VERIFY_MODES",
    "ChannelOrder",
    "ImageError",
    "ImageOptions",
    "Transformed",
    "center_crop_box",
    "decode_array",
    "encode_array",
    "opencv_wanted",
    "resize_size",
    "transform_image",
    "transform_image_checked",
    "verify_image",
]


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
    fast = image_fast._jpeg_without_pillow(data, opts, dhash)
    if fast is not None:
        return fast
    im = _open(data, opts.max_pixels)
    try:
        return _transform(im, data, opts, dhash)
    finally:
        im.close()


def verify_image(
    data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[str, int, int]:
    """Decode `data` completely; return `(format, width, height)`. Raises `ImageError`."""
    im = _open(data, max_pixels)
    try:
        image_decode._load(im)
        return str(im.format or "?"), im.width, im.height
    finally:
        im.close()


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
            fast = image_fast._fast_jpeg(
                data, im.size, im.mode, opts, target, scale, box, out_size, dhash
            )
            if fast is not None:
                return fast
        im, warning = _decode(im, data, mode=draft_mode, scale=scale)
    else:
        if _plain_png(im, data, target):
            w, h = im.size
            fast = image_fast._fast_png(data, (w, h), opts, target, *_geometry(w, h, opts), dhash)
            if fast is not None:
                return fast
        image_decode._load(im)
        orientation = _orientation(im) if opts.color != -1 else 1
        w, h = im.size
        if orientation in (5, 6, 7, 8):
            w, h = h, w
        box, out_size = _geometry(w, h, opts)
    im = image_decode._to_mode(im, target)
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
