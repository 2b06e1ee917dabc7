"""Image bytes for tests, good and bad: every mode `transform_image` must handle and the bad
inputs that must become rejects. Small and generated on the fly (no files in the repo).

    from imagecases import GOOD, BAD, photo   # tests/ is on sys.path under pytest
    data = GOOD["cmyk_jpeg"]()                # bytes
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image


def photo(w: int = 64, h: int = 48, seed: int = 0, noise: float = 10.0) -> np.ndarray:
    """A smooth gradient with noise: compresses and resizes like a photo, HxWx3 uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            xx * 255 / max(w - 1, 1),
            yy * 255 / max(h - 1, 1),
            128 + 100 * np.sin((xx + yy) / 7.0 + seed),
        ],
        axis=2,
    )
    base += rng.normal(0, noise, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def rgb_jpeg(w: int = 64, h: int = 48, seed: int = 0, quality: int = 92) -> bytes:
    return encode(Image.fromarray(photo(w, h, seed)), "JPEG", quality=quality)


def rgb_png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(photo(w, h, seed)), "PNG")


def gray_jpeg(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(photo(w, h, seed)).convert("L"), "JPEG", quality=92)


def cmyk_jpeg(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(photo(w, h, seed)).convert("CMYK"), "JPEG", quality=92)


def ycck_jpeg(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    """A JPEG whose Adobe marker says YCCK (transform 2): libjpeg converts YCCK to CMYK."""
    data = bytearray(cmyk_jpeg(w, h, seed))
    app14 = data.find(b"\xff\xee")
    if app14 < 0 or data[app14 + 4 : app14 + 9] != b"Adobe":
        raise RuntimeError("Pillow's CMYK JPEG has no Adobe marker to patch")
    data[app14 + 15] = 2  # FF EE, length, "Adobe", version, flags0, flags1, transform
    return bytes(data)


def palette_png(w: int = 64, h: int = 48, seed: int = 0, transparency: bool = False) -> bytes:
    im = Image.fromarray(photo(w, h, seed)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return encode(im, "PNG", **({"transparency": 0} if transparency else {}))


def rgba_png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    im = Image.fromarray(photo(w, h, seed))
    im.putalpha(Image.linear_gradient("L").resize((w, h)))
    return encode(im, "PNG")


def la_png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(photo(w, h, seed)).convert("LA"), "PNG")


def gray16_png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    gray = np.asarray(Image.fromarray(photo(w, h, seed)).convert("L")).astype(np.uint16)
    return encode(Image.fromarray((gray * 257 + 100).astype("<u2")), "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgb16_png(w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one, so it is built by hand)."""
    arr = photo(w, h, seed).astype(np.uint16) * 257 + 77
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def exif_jpeg(orientation: int, w: int = 64, h: int = 48, seed: int = 0) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(photo(w, h, seed)), "JPEG", quality=92, exif=exif.tobytes())


def solid_jpeg(w: int, h: int, color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    return encode(Image.new("RGB", (w, h), color), "JPEG", quality=95)


def noise_png(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), "PNG")


def png_header_only(w: int, h: int) -> bytes:
    """A PNG that declares `w` x `h` pixels but holds almost no data (a decompression bomb's
    header: Pillow reads the size without decoding anything)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _png_chunk(b"IEND", b"")
    )


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


GOOD: dict[str, Callable[[], bytes]] = {
    "rgb_jpeg": rgb_jpeg,
    "rgb_png": rgb_png,
    "gray_jpeg": gray_jpeg,
    "cmyk_jpeg": cmyk_jpeg,
    "ycck_jpeg": ycck_jpeg,
    "palette_png": palette_png,
    "palette_alpha_png": lambda: palette_png(transparency=True),
    "rgba_png": rgba_png,
    "la_png": la_png,
    "gray16_png": gray16_png,
    "rgb16_png": rgb16_png,
    "exif6_jpeg": lambda: exif_jpeg(6),
    "one_pixel_jpeg": lambda: solid_jpeg(1, 1),
    "wide_png": lambda: noise_png(4000, 20),
}

BAD: dict[str, tuple[Callable[[], bytes], str]] = {
    # name: (bytes, a word the reject reason must contain)
    "zero_byte": (lambda: b"", "empty"),
    "truncated_jpeg": (lambda: truncated(rgb_jpeg(200, 150)), "truncated"),
    "truncated_png": (lambda: truncated(rgb_png(200, 150)), "truncated"),
    "text": (lambda: b"hello, this is not an image\n" * 10, "text"),
    "html": (lambda: b"<!DOCTYPE html><html><body>404</body></html>", "HTML"),
    "scrambled": (lambda: bytes(np.random.default_rng(3).integers(0, 256, 4096, np.uint8)), "not"),
    "jpeg_header_garbage": (lambda: rgb_jpeg()[:20] + b"\0" * 300, "corrupt"),
}
