"""A realistic image corpus for benchmarks: crops of real photos at ImageNet-like sizes.

Sources, whichever are installed: Debian's `mate-backgrounds` (`apt-get install -y
mate-backgrounds`: real JPEG photos and PNG art under /usr/share/backgrounds) and
scikit-learn's sample images (china.jpg, flower.jpg; read from the installed package without
importing it). Without either, the corpus falls back to synthetic gradients with noise, which
decode and encode faster than photos (the script says so).

Mix (seeded, so every run builds the same files): about 85 % photos 400-500 x 333-375 (three
in four landscape), 15 % larger (800-2000 on the long side); 88 % colour JPEG at quality
80-95, 5 % PNG, 4 % gray JPEG, 3 % CMYK JPEG. Each crop is a region of 1-3x the output size
resized down (LANCZOS), like a downscaled camera photo rather than a 1:1 cut of a wallpaper.
Images go into `n_classes` folders (`class_00`, ...) and a `.lst` with labels is written.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_GLOBS = ("/usr/share/backgrounds/**/*.jpg", "/usr/share/backgrounds/**/*.jpeg")
ART_GLOBS = ("/usr/share/backgrounds/**/*.png",)


def _sklearn_images() -> list[str]:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return []
    base = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images"
    return sorted(str(p) for p in base.glob("*.jpg"))


def source_images() -> tuple[list[str], list[str]]:
    """(photo paths, art paths) found on this machine."""
    photos = sorted({p for g in PHOTO_GLOBS for p in glob.glob(g, recursive=True)})
    photos += _sklearn_images()
    art = sorted({p for g in ART_GLOBS for p in glob.glob(g, recursive=True)})
    return photos, art


def _synthetic(rng: random.Random, w: int, h: int) -> Image.Image:
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / rng.uniform(5, 60) + c) * np.cos(yy / rng.uniform(5, 60))
            for c in range(3)
        ],
        axis=2,
    )
    base += nrng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def _size(rng: random.Random) -> tuple[int, int]:
    if rng.random() < 0.15:
        long = rng.randint(800, 2000)
        short = int(long * rng.uniform(0.6, 0.8))
    else:
        long = rng.randint(400, 500)
        short = rng.randint(333, 375)
    return (long, short) if rng.random() < 0.75 else (short, long)


def build_corpus(
    root: str | os.PathLike[str], n: int = 2000, *, seed: int = 0, n_classes: int = 10
) -> tuple[list[tuple[int, int, str]], dict[str, int]]:
    """Write `n` images under `root`; return (`[(index, label, relpath)]`, stats by kind)."""
    rng = random.Random(seed)
    root = Path(root)
    photos, art = source_images()
    opened: dict[str, Image.Image] = {}

    def load(path: str) -> Image.Image:
        if path not in opened:
            with Image.open(path) as im:
                opened[path] = im.convert("RGB")
        return opened[path]

    stats = {"jpeg": 0, "png": 0, "gray": 0, "cmyk": 0, "large": 0, "synthetic": 0}
    entries: list[tuple[int, int, str]] = []
    for i in range(n):
        w, h = _size(rng)
        stats["large"] += max(w, h) >= 800
        kind = rng.choices(["jpeg", "png", "gray", "cmyk"], weights=[88, 5, 4, 3])[0]
        pool = (art or photos) if kind == "png" and rng.random() < 0.5 else photos
        if pool:
            src = load(rng.choice(pool))
            zoom = rng.uniform(1.0, 3.0)
            cw = min(src.width, int(w * zoom))
            ch = min(src.height, int(h * zoom))
            if cw * h > ch * w:  # keep the aspect ratio of the output
                cw = max(1, ch * w // h)
            else:
                ch = max(1, cw * h // w)
            x = rng.randint(0, src.width - cw)
            y = rng.randint(0, src.height - ch)
            img = src.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.LANCZOS)
        else:
            stats["synthetic"] += 1
            img = _synthetic(rng, w, h)
        label = rng.randrange(n_classes)
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".png" if kind == "png" else ".jpg"
        rel = f"class_{label:02d}/img_{i:05d}{ext}"
        if kind == "png":
            img.save(root / rel, "PNG", compress_level=6)
        elif kind == "gray":
            img.convert("L").save(root / rel, "JPEG", quality=rng.randint(80, 95))
        elif kind == "cmyk":
            img.convert("CMYK").save(root / rel, "JPEG", quality=rng.randint(80, 95))
        else:
            img.save(root / rel, "JPEG", quality=rng.randint(80, 95))
        stats[kind] += 1
        entries.append((i, label, rel))
    return entries, stats


def write_lst(path: str | os.PathLike[str], entries: list[tuple[int, int, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for index, label, rel in entries:
            f.write(f"{index}\t{float(label):f}\t{rel}\n")
