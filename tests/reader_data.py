"""Small RecordIO datasets for the reader-side tests (made on the fly, a few KB each)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from recordio_core.format.lst import LstEntry, write_lst
from recordio_core.format.manifest import Manifest, ShardEntry, SplitEntry, tool_versions
from recordio_core.format.manifest import write_manifest as write_manifest_file
from recordio_core.format.recordio import IRHeader, MXIndexedRecordIO, MXRecordIO, pack, pack_img

# (height, width): landscape, portrait, square, and some smaller than a 24x24 crop
SIZES = [(30, 40), (48, 32), (36, 36), (20, 50), (26, 26), (40, 29), (18, 22), (33, 60)]


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth RGB uint8 image (gradients and a slow wave), so resamplers agree closely."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b, c = rng.uniform(0.5, 3.0, 3)
    phase = rng.uniform(0, 6.28)
    r = (xx * a * 255 / w + 10) % 256
    g = (yy * b * 255 / h + 30) % 256
    bl = 128 + 90 * np.sin((xx + yy) / (6 + 4 * c) + phase)
    return np.clip(np.stack([r, g, bl], -1), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Dataset:
    rec: str
    idx: str
    lst: str
    ids: list[int]
    labels: list[float]
    labels4: list[tuple[float, float, float, float]]


def make_dataset(
    folder: str,
    name: str = "data",
    n: int = 24,
    *,
    start_id: int = 0,
    id_step: int = 3,
    classes: int = 3,
    img_fmt: str = ".jpg",
    seed: int = 0,
    pack_label: bool = False,
) -> Dataset:
    """Write `name.rec/.idx/.lst` with `n` image records of varied sizes under `folder`.

    Ids are `start_id + i * id_step`; the header label is `i % classes` (or, with
    `pack_label`, the four labels); the `.lst` holds four labels per line.
    """
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, name)
    ids, labels, labels4, entries = [], [], [], []
    writer = MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "w")
    for i in range(n):
        rid = start_id + i * id_step
        h, w = SIZES[(i + seed) % len(SIZES)]
        img = smooth_image(h, w, seed * 1000 + i)
        label = float(i % classes)
        four = (label, float(i), float(2 * i + 1), float(seed))
        header_label: float | list[float] = list(four) if pack_label else label
        quality = 9 if img_fmt == ".png" else 92
        writer.write_idx(
            rid, pack_img(IRHeader(0, header_label, rid, 0), img, quality=quality, img_fmt=img_fmt)
        )
        ids.append(rid)
        labels.append(label)
        labels4.append(four)
        entries.append(LstEntry(rid, four, f"img/{rid}.jpg"))
    writer.close()
    write_lst(prefix + ".lst", entries)
    return Dataset(prefix + ".rec", prefix + ".idx", prefix + ".lst", ids, labels, labels4)


def make_raw_records(path: str, payloads: list[bytes]) -> list[int]:
    """Write arbitrary payloads to a `.rec` (no index); return their offsets."""
    writer = MXRecordIO(path, "w")
    offsets = []
    for p in payloads:
        offsets.append(writer.tell())
        writer.write(p)
    writer.close()
    return offsets


def write_manifest(folder: str, splits: dict[str, list[Dataset]]) -> str:
    """A real `manifest.json` (recordio_core.format.manifest) for datasets made under `folder`."""

    def sha(path: str) -> str:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    manifest = Manifest(
        parameters={"label_width": 1},
        class_map={"cat": 0, "dog": 1, "eel": 2},
        splits={
            name: SplitEntry(
                shards=tuple(
                    ShardEntry(
                        rec=os.path.relpath(d.rec, folder),
                        idx=os.path.relpath(d.idx, folder),
                        lst=os.path.relpath(d.lst, folder),
                        records=len(d.ids),
                        bytes=os.path.getsize(d.rec),
                        sha256=sha(d.rec),
                    )
                    for d in shards
                )
            )
            for name, shards in splits.items()
        },
        tools=tool_versions(),
    )
    return write_manifest_file(folder, manifest)


__all__ = ["Dataset", "make_dataset", "make_raw_records", "pack", "smooth_image", "write_manifest"]
