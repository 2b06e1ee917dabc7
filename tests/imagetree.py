"""Small image trees on disk for tests: `make_image_tree(root, spec)`.

    from imagetree import make_image_tree, ImageSpec, DEFAULT_TREE   # tests/ is on sys.path

    files = make_image_tree(tmp_path / "imgs")                 # the default mixed tree
    files = make_image_tree(tmp_path / "imgs", {"a/x.jpg": ImageSpec(40, 30),
                                                "a/gray.png": ImageSpec(20, 50, mode="L"),
                                                "bad.jpg": b"not an image"})

`spec` maps a relative path (forward slashes, folders created as needed) to an `ImageSpec`
(an image generated deterministically: smooth gradients plus a little texture, so re-encoded
and resized pixels can be compared with a tolerance) or to raw `bytes` written as is (zero-byte,
truncated or non-image files). The format comes from the extension (`.jpg`/`.jpeg` JPEG,
`.png` PNG, `.gif`, `.bmp`, ... whatever Pillow knows) unless `ImageSpec.fmt` says otherwise.
Returns `{relative path: absolute Path}`.

`DEFAULT_TREE` (about three dozen files, a few kB each) mixes: nested folders, folders and file
names with spaces and non-ASCII characters, upper-case extensions, RGB / gray / RGBA /
palette / CMYK / 16-bit / gray+alpha inputs, an EXIF-rotated JPEG, portrait / landscape /
square sizes, a folder without images, and files that are not images by extension.
`DEFAULT_BROKEN` adds a zero-byte, a truncated and a non-image file with image extensions.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


@dataclass(frozen=True)
class ImageSpec:
    """A generated image: size, Pillow mode, format (from the extension when None)."""

    width: int
    height: int
    mode: str = "RGB"
    fmt: str | None = None
    quality: int = 90
    exif_orientation: int | None = None
    seed: int | None = None  # None: derived from the file's path


def _pixels(width: int, height: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for _ in range(channels):
        a, b, phase = rng.uniform(0.5, 2.5), rng.uniform(0.5, 2.5), rng.uniform(0, 6.28)
        wave = np.sin(x / max(width, 1) * a * 3.14 + phase) * np.cos(y / max(height, 1) * b * 3.14)
        ramp = (x / max(width - 1, 1) + y / max(height - 1, 1)) * 0.5
        plane = 128 + 70 * wave + 50 * (ramp - 0.5) + rng.normal(0, 4, size=(height, width))
        planes.append(plane)
    arr = np.stack(planes, axis=-1)
    return np.clip(arr, 0, 255).astype(np.uint8)


def make_image(spec: ImageSpec, ext: str, seed: int) -> bytes:
    """Encode one generated image for `spec` (format from `spec.fmt` or the extension)."""
    fmt = spec.fmt or _FORMATS.get(ext.lower())
    if fmt is None:
        raise ValueError(f"no image format for extension {ext!r}; set ImageSpec.fmt")
    w, h, mode = spec.width, spec.height, spec.mode
    if mode in ("RGB", "CMYK", "P"):
        im = Image.fromarray(_pixels(w, h, 3, seed), "RGB")
        if mode == "CMYK":
            im = im.convert("CMYK")
        elif mode == "P":
            im = im.quantize(colors=64)
    elif mode == "RGBA":
        im = Image.fromarray(_pixels(w, h, 4, seed), "RGBA")
    elif mode == "L":
        im = Image.fromarray(_pixels(w, h, 1, seed)[:, :, 0], "L")
    elif mode == "LA":
        im = Image.fromarray(_pixels(w, h, 2, seed), "LA")
    elif mode in ("I;16", "I"):
        arr = _pixels(w, h, 1, seed)[:, :, 0].astype(np.uint16) * 257
        im = Image.fromarray(arr.astype("<u2"))
        if mode == "I":
            im = im.convert("I")
    elif mode == "1":
        im = Image.fromarray(_pixels(w, h, 1, seed)[:, :, 0] > 128)
    else:
        raise ValueError(f"unsupported mode {mode!r} in ImageSpec")
    out = io.BytesIO()
    kwargs: dict = {}
    if fmt == "JPEG":
        kwargs["quality"] = spec.quality
        if spec.exif_orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = spec.exif_orientation
            kwargs["exif"] = exif.tobytes()
    im.save(out, format=fmt, **kwargs)
    return out.getvalue()


def make_image_tree(
    root: str | Path, spec: Mapping[str, ImageSpec | bytes | None] | None = None
) -> dict[str, Path]:
    """Write the files of `spec` (default `DEFAULT_TREE`) under `root`; return rel -> path.

    A value of `None` creates an (empty) folder at that relative path.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for rel, item in (DEFAULT_TREE if spec is None else spec).items():
        path = root / rel
        if item is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, bytes):
            data = item
        else:
            seed = item.seed if item.seed is not None else zlib.crc32(rel.encode("utf-8"))
            data = make_image(item, path.suffix, seed)
        path.write_bytes(data)
        out[rel] = path
    return out


def truncated_jpeg(width: int = 64, height: int = 48, keep: float = 0.5) -> bytes:
    """A JPEG cut after `keep` of its bytes (decoders fail or return a partial image)."""
    data = make_image(ImageSpec(width, height), ".jpg", 7)
    return data[: max(1, int(len(data) * keep))]


S = ImageSpec
DEFAULT_TREE: dict[str, ImageSpec | bytes | None] = {
    # root folder: label 0 in recursive mode, the only images in non-recursive mode
    "root a.jpg": S(64, 48),
    "root_b.PNG": S(30, 50, mode="RGBA"),
    "Zeta.jpeg": S(41, 41),
    "notes.txt": b"not an image",
    "anim.gif": S(16, 16, mode="P"),
    # nested class folders
    "cats/c1.jpg": S(80, 60),
    "cats/c2.jpg": S(60, 80, mode="L"),
    "cats/c3 copy.png": S(45, 33, mode="P"),
    "cats/C4.JPG": S(70, 50, exif_orientation=6),
    "cats/kittens/k1.jpg": S(50, 50),
    "cats/kittens/k2.png": S(37, 58, mode="LA"),
    "dogs/d1.jpg": S(90, 40),
    "dogs/d2.jpg": S(40, 90, mode="CMYK"),
    "dogs/d3.png": S(48, 36, mode="I;16"),
    "dogs/d4.bmp": S(20, 20),
    "dogs b/spaced name.jpg": S(52, 39),
    "dogs b/x.jpg": S(39, 52),
    "dogs-b/dash.jpg": S(33, 44),
    "ünïcødé/ñame é.jpg": S(46, 46),
    "ünïcødé/日本.png": S(35, 28),
    "ünïcødé/deep/er/leaf.jpeg": S(28, 35),
    "empty/readme.txt": b"no images here",
    "zz/a.jpg": S(24, 64),
    "zz/b.png": S(64, 24, mode="RGB"),
    "zz/c.jpg": S(57, 31),
    "zz/d.jpg": S(31, 57, mode="L"),
    "zz/e.png": S(44, 44, mode="L"),
    "zz/f.jpg": S(66, 22),
    "zz/g.jpg": S(22, 66),
    "zz/h.png": S(29, 29, mode="RGBA"),
    "zz/i.jpg": S(53, 47),
    "zz/j.jpg": S(47, 53),
    "zz/k.jpg": S(61, 32),
    "zz/l.jpg": S(32, 61),
}

DEFAULT_BROKEN: dict[str, ImageSpec | bytes | None] = {
    "broken/zero.jpg": b"",
    "broken/truncated.jpg": truncated_jpeg(),
    "broken/text.png": b"this is not a PNG at all\n",
    "broken/fine.jpg": S(40, 30),
    "broken/png_named.jpg": S(30, 40, fmt="PNG"),  # mislabelled, but decodable
}
