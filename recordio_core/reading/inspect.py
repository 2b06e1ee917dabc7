"""What a dataset holds: counts, label and image-size histograms, and a contact sheet per class.

`inspect_dataset(source)` reads every record once (image headers only: sizes come from the
encoded file's header, nothing is decoded) except the few sample images per class that go on
the contact sheet (`sheet="sheet.png"`): one row per class, labelled with the class name when a
manifest's class map provides it.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

from recordio_core.format.errors import check_int
from recordio_core.format.framing import iter_records, open_source
from recordio_core.images.augment import image_bytes
from recordio_core.reading.sources import manifest_class_names, resolve_shards
from recordio_core.storage.fsio import StorageOptions, write_bytes_atomic

# shorter-side buckets for the size summary
SIZE_BUCKETS = ((0, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 1 << 62))
_BG = (32, 32, 32)
_FG = (235, 235, 235)


@dataclass(frozen=True)
class InspectReport:
    """Counts over the records read. Histogram keys are strings so the report is JSON:
    labels as `"3"` (or `"1,0,2"` for several labels), sizes as `"WxH"`."""

    source: str
    shards: int
    records: int
    bytes: int
    complete: bool
    labels: dict[str, int]
    sizes: dict[str, int]
    size_buckets: dict[str, int]
    formats: dict[str, int]
    undecodable: int
    class_names: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _label_key(flag: int, header_label: float, payload: bytes) -> tuple[str, int | None]:
    """The histogram key and the class (first label, when a whole number) of a record."""
    if flag > 0:
        import numpy as np

        values = np.frombuffer(payload, np.float32, flag, 24).tolist()
    else:
        values = [header_label]
    key = ",".join(f"{v:g}" for v in values)
    first = values[0] if values else None
    cls = int(first) if first is not None and float(first).is_integer() else None
    return key, cls


def _bucket(w: int, h: int) -> str:
    short = min(w, h)
    for lo, hi in SIZE_BUCKETS:
        if lo <= short < hi:
            return f"{lo}-{hi - 1}" if hi < 1 << 62 else f">={lo}"
    return "?"


@dataclass
class _Tally:
    """What `inspect_dataset` counts, one record at a time."""

    sample_classes: int = 0  # classes to keep sample images of (0: none)
    per_class: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    buckets: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    samples: dict[int, list[bytes]] = field(default_factory=dict)
    undecodable: int = 0
    records: int = 0
    bytes: int = 0

    def add(self, payload: bytes) -> None:
        self.records += 1
        self.bytes += len(payload)
        try:
            flag, header_label, _rid, img = image_bytes(payload)
            key, cls = _label_key(flag, header_label, payload)
        except ValueError:
            self.undecodable += 1
            self.labels["(no header)"] += 1
            return
        self.labels[key] += 1
        try:
            with Image.open(io.BytesIO(img)) as im:
                w, h = im.size
                self.formats[im.format or "?"] += 1
        except (OSError, SyntaxError, Image.DecompressionBombError):
            self.undecodable += 1
            return
        self.sizes[f"{w}x{h}"] += 1
        self.buckets[_bucket(w, h)] += 1
        if self.sample_classes and cls is not None:
            bucket = self.samples.setdefault(cls, [])
            if len(bucket) < self.per_class and len(self.samples) <= self.sample_classes:
                bucket.append(bytes(img))


def _check_inspect_options(
    per_class: int, thumb: int, max_classes: int, max_records: int | None
) -> None:
    for name, value, low in (
        ("per_class", per_class, 1),
        ("thumb", thumb, 8),
        ("max_classes", max_classes, 1),
    ):
        check_int(name, value, low)
    if max_records is not None and (not isinstance(max_records, int) or max_records < 1):
        raise ValueError(f"max_records must be None or an integer >= 1, got {max_records!r}")


def _tally(
    shards: Sequence[Any], tally: _Tally, max_records: int | None, so: StorageOptions
) -> bool:
    """Count the records of `shards` into `tally`; False if `max_records` stopped it early."""
    for shard in shards:
        src = open_source(shard.rec, so)
        try:
            for _, payload in iter_records(src):
                if max_records is not None and tally.records >= max_records:
                    return False
                tally.add(payload)
        finally:
            src.close()
    return True


def inspect_dataset(
    source: str | Sequence[str],
    *,
    split: str | None = None,
    max_records: int | None = None,
    sheet: str | None = None,
    per_class: int = 8,
    thumb: int = 64,
    max_classes: int = 50,
    storage_options: StorageOptions = None,
) -> InspectReport:
    """Read the dataset at `source` (what the reader accepts) and summarise it; with `sheet`,
    also write a contact sheet PNG there (`per_class` thumbnails of `thumb` pixels for each of
    the first `max_classes` classes)."""
    _check_inspect_options(per_class, thumb, max_classes, max_records)
    shards = resolve_shards(source, split=split, use_index=False, storage_options=storage_options)
    names: dict[int, str] = {}
    if isinstance(source, str) and (source.endswith(".json") or _is_manifest_dir(source, shards)):
        names = manifest_class_names(
            source if source.endswith(".json") else source.rstrip("/") + "/manifest.json",
            storage_options,
        )
    tally = _Tally(sample_classes=max_classes if sheet else 0, per_class=per_class)
    complete = _tally(shards, tally, max_records, storage_options)
    written = None
    if sheet:
        png = contact_sheet(tally.samples, tally.labels, names, per_class=per_class, thumb=thumb)
        write_bytes_atomic(sheet, png, storage_options)
        written = sheet
    return InspectReport(
        source=source if isinstance(source, str) else ",".join(source),
        shards=len(shards),
        records=tally.records,
        bytes=tally.bytes,
        complete=complete,
        labels=dict(sorted(tally.labels.items(), key=_natural)),
        sizes=dict(tally.sizes.most_common()),
        size_buckets={k: tally.buckets[k] for k in _bucket_order() if tally.buckets[k]},
        formats=dict(tally.formats.most_common()),
        undecodable=tally.undecodable,
        class_names={str(k): v for k, v in sorted(names.items())},
        sheet=written,
    )


def _is_manifest_dir(source: str, shards: Sequence[Any]) -> bool:
    return bool(shards) and not source.endswith(".rec") and shards[0].records is not None


def _natural(item: tuple[str, int]) -> tuple[int, Any]:
    key = item[0]
    try:
        return (0, [float(x) for x in key.split(",")])
    except ValueError:
        return (1, key)


def _bucket_order() -> list[str]:
    return [f"{lo}-{hi - 1}" if hi < 1 << 62 else f">={lo}" for lo, hi in SIZE_BUCKETS]


def contact_sheet(
    samples: dict[int, list[bytes]],
    counts: Counter[str] | dict[str, int],
    names: dict[int, str],
    *,
    per_class: int = 8,
    thumb: int = 64,
) -> bytes:
    """A PNG with one row per class: its label, name and count, then up to `per_class`
    thumbnails (aspect kept, centred in `thumb` x `thumb` cells)."""
    font = ImageFont.load_default()
    label_w = 150
    pad = 4
    classes = sorted(samples)
    rows = max(1, len(classes))
    width = label_w + per_class * (thumb + pad) + pad
    height = rows * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(sheet)
    if not classes:
        draw.text((pad, pad), "no images", fill=_FG, font=font)
    for row, cls in enumerate(classes):
        y = pad + row * (thumb + pad)
        name = names.get(cls, "")
        count = counts.get(str(cls), 0) if isinstance(counts, dict) else 0
        text = f"{cls}" + (f"  {name}" if name else "") + f"\n{count} images"
        draw.multiline_text((pad, y + 4), text, fill=_FG, font=font)
        for col, data in enumerate(samples[cls][:per_class]):
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.draft("RGB", (thumb, thumb))
                    small = ImageOps.contain(im.convert("RGB"), (thumb, thumb))
            except (OSError, SyntaxError, Image.DecompressionBombError):
                continue
            x = label_w + col * (thumb + pad)
            sheet.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=False)
    return out.getvalue()


@dataclass(frozen=True)
class SheetPick:
    """One record to show on a sheet: its class and where it is (shard files, record key)."""

    cls: int
    rec: str
    idx: str
    key: int


def sheet_from_records(
    picks: Sequence[SheetPick],
    counts: dict[str, int],
    names: dict[int, str],
    *,
    per_class: int = 4,
    thumb: int = 48,
    colors: int | None = 64,
    storage_options: StorageOptions = None,
) -> bytes:
    """A contact sheet (PNG) of the records in `picks`, read by key through each shard's
    `.idx` (only those records are read). `colors` reduces the sheet to that many colours so
    it stays small enough to embed (tens of KB); None keeps full colour."""
    from recordio_core.format.recordio import MXIndexedRecordIO

    samples: dict[int, list[bytes]] = {}
    by_shard: dict[tuple[str, str], list[SheetPick]] = {}
    for pick in picks:
        by_shard.setdefault((pick.rec, pick.idx), []).append(pick)
    for (rec, idx), group in by_shard.items():
        reader = MXIndexedRecordIO(idx, rec, "r", storage_options=storage_options)
        try:
            for pick in group:
                payload = reader.read_idx(pick.key)
                if payload is None:
                    continue
                try:
                    img = image_bytes(payload)[3]
                except ValueError:
                    continue
                samples.setdefault(pick.cls, []).append(bytes(img))
        finally:
            reader.close()
    png = contact_sheet(samples, counts, names, per_class=per_class, thumb=thumb)
    if colors is None:
        return png
    with Image.open(io.BytesIO(png)) as im:
        small = im.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)  # ~50x faster
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()
