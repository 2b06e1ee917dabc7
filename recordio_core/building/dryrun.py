"""A dry run: what a build would write, estimated from a small decoded sample; writes nothing.

`sample_entries` picks a fixed, evenly spread sample of the planned entries (the same on every
run), `measure_sample` reads and transforms each exactly as packing would (CPU time per image,
framed record size, rejects), and `DryRun` turns the plan plus those measurements into the
numbers a user wants before committing to a long build: records per split and per class, the
shards and their files, estimated bytes and time. `dry_run_markdown` and `dry_run_text` say it
for the Prefect artifact and the command line. Nothing here touches the output location.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recordio_core.building.mdtable import class_table, human_bytes
from recordio_core.building.pack import PackOptions, record_payload
from recordio_core.format.framing import frame_record
from recordio_core.format.lst import LstEntry, format_lst_line
from recordio_core.images.image import ImageError, transform_image_checked
from recordio_core.storage.fsio import StorageOptions, get_fs, is_local, join_url

DEFAULT_SAMPLE = 32
MAX_SHARDS_SHOWN = 50


def sample_entries(entries: Sequence[LstEntry], n: int = DEFAULT_SAMPLE) -> list[LstEntry]:
    """`n` entries spread evenly over `entries` (all of them when there are fewer)."""
    if n < 1:
        raise ValueError(f"sample size must be >= 1, got {n}")
    if len(entries) <= n:
        return list(entries)
    step = len(entries) / n
    return [entries[int(i * step)] for i in range(n)]


@dataclass(frozen=True)
class SampleMeasure:
    """Packing the sample: images tried, records made, their total framed bytes, CPU seconds
    spent reading and transforming, and the images that would be rejects."""

    images: int
    records: int
    record_bytes: int
    seconds: float
    rejects: int
    lst_bytes: int = 0

    @property
    def bytes_per_record(self) -> float:
        return self.record_bytes / self.records if self.records else 0.0

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.images if self.images else 0.0

    @property
    def reject_fraction(self) -> float:
        return self.rejects / self.images if self.images else 0.0


def measure_sample(
    entries: Sequence[LstEntry],
    root: str,
    opts: PackOptions,
    source_options: StorageOptions = None,
) -> SampleMeasure:
    """Read and transform `entries` one by one as packing would; nothing is written."""
    fs, root_path = get_fs(root, source_options)
    local = is_local(fs)
    records = record_bytes = rejects = lst_bytes = 0
    seconds = 0.0
    for entry in entries:
        start = time.process_time()
        try:
            if local:
                with open(join_url(root_path, entry.path), "rb") as f:
                    data = f.read()
            else:
                data = fs.cat_file(join_url(root_path, entry.path))
            out = transform_image_checked(data, opts.image, dhash=opts.near_duplicates)
        except (OSError, ImageError, ValueError):
            rejects += 1
            seconds += time.process_time() - start
            continue
        seconds += time.process_time() - start
        if out.warning and opts.on_decode_warning == "reject":
            rejects += 1
            continue
        records += 1
        record_bytes += len(frame_record(record_payload(entry, out.data, opts)))
        lst_bytes += len(format_lst_line(entry).encode("utf-8"))
    return SampleMeasure(len(entries), records, record_bytes, seconds, rejects, lst_bytes)


@dataclass(frozen=True)
class PlannedShard:
    split: str
    name: str
    images: int
    rec: str


@dataclass(frozen=True)
class DryRun:
    """What a build would do. `labels[split]` counts records per first label (as "%g")."""

    output: str
    listed: int
    skipped: int
    dropped_duplicates: int
    shards: tuple[PlannedShard, ...]
    labels: Mapping[str, Counter]
    sample: SampleMeasure
    workers: int = 1
    class_names: Mapping[str, str] = field(default_factory=dict)  # label -> folder

    @property
    def images(self) -> int:
        return sum(s.images for s in self.shards)

    @property
    def splits(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.shards:
            out[s.split] = out.get(s.split, 0) + s.images
        return out

    @property
    def estimated_records(self) -> int:
        return round(self.images * (1.0 - self.sample.reject_fraction))

    @property
    def estimated_bytes(self) -> int:
        """`.rec` bytes, plus ~20 bytes of `.idx` and a `.lst` line per record."""
        per_lst = self.sample.lst_bytes / self.sample.records if self.sample.records else 0
        per_record = self.sample.bytes_per_record + 20 + per_lst
        return math.ceil(self.estimated_records * per_record)

    @property
    def estimated_seconds(self) -> float:
        """CPU time per image times images, spread over the workers (I/O not counted)."""
        return self.images * self.sample.seconds_per_image / max(1, self.workers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "output": self.output,
            "images_listed": self.listed,
            "skipped": self.skipped,
            "duplicates_dropped": self.dropped_duplicates,
            "images": self.images,
            "splits": {
                name: {
                    "records": count,
                    "labels": dict(sorted(self.labels.get(name, Counter()).items(), key=_num)),
                }
                for name, count in self.splits.items()
            },
            "shards": [
                {"split": s.split, "shard": s.name, "images": s.images, "rec": s.rec}
                for s in self.shards
            ],
            "sample": {
                "images": self.sample.images,
                "rejects": self.sample.rejects,
                "bytes_per_record": round(self.sample.bytes_per_record, 1),
                "cpu_seconds_per_image": round(self.sample.seconds_per_image, 5),
            },
            "estimated_records": self.estimated_records,
            "estimated_bytes": self.estimated_bytes,
            "estimated_seconds": round(self.estimated_seconds, 1),
            "workers": self.workers,
        }


def _num(item: tuple[str, int]) -> float:
    try:
        return float(item[0])
    except ValueError:
        return math.inf


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dry_run_markdown(d: DryRun) -> str:
    """The Prefect artifact: headline, records per split and class, shards, the sample."""
    s = d.sample
    lines = [
        f"# Dry run: `{d.output}` (nothing written)",
        "",
        f"**{d.images}** images in {len(d.shards)} shards would be packed "
        f"({d.listed} listed, {d.skipped} skipped by the listing"
        + (f", {d.dropped_duplicates} duplicate copies dropped" if d.dropped_duplicates else "")
        + f"). Estimated **{human_bytes(d.estimated_bytes)}** and "
        f"**{_duration(d.estimated_seconds)}**"
        f" of packing on {d.workers} worker(s), from a sample of {s.images} images "
        f"({s.rejects} would be rejects, {s.bytes_per_record / 1024:.1f} KiB per record, "
        f"{s.seconds_per_image * 1000:.1f} ms CPU per image).",
        "",
    ]
    names = list(d.splits)
    labels = sorted({k for c in d.labels.values() for k in c}, key=lambda k: _num((k, 0)))
    lines += ["| split | images | shards |", "| --- | ---: | ---: |"]
    for name, count in d.splits.items():
        lines.append(f"| {name} | {count} | {sum(1 for x in d.shards if x.split == name)} |")
    lines += class_table(
        "Images per class",
        names,
        labels,
        lambda split, label: d.labels.get(split, Counter()).get(label, 0),
        lambda label: d.class_names.get(label, ""),
    )
    lines += ["", f"## Shards ({len(d.shards)})", ""]
    for shard in d.shards[:MAX_SHARDS_SHOWN]:
        lines.append(f"- `{shard.rec}`: {shard.images} images")
    if len(d.shards) > MAX_SHARDS_SHOWN:
        lines.append(f"- ... and {len(d.shards) - MAX_SHARDS_SHOWN} more")
    return "\n".join(lines) + "\n"


def dry_run_text(summary: Mapping[str, Any]) -> str:
    """What `recflow build --dry-run` prints, from `DryRun.to_dict()`."""
    splits, shards = summary["splits"], summary["shards"]
    lines = [
        f"dry run: nothing written to {summary['output']}",
        f"  {summary['images']} images would be packed into {len(shards)} shards "
        f"({summary['images_listed']} listed, {summary['skipped']} skipped, "
        f"{summary['duplicates_dropped']} duplicate copies dropped)",
    ]
    for name, split in splits.items():
        per_class = ", ".join(f"{k}: {v}" for k, v in split["labels"].items())
        lines.append(f"  {name}: {split['records']} images ({per_class})")
    for shard in shards[:MAX_SHARDS_SHOWN]:
        lines.append(f"    {shard['rec']}  {shard['images']} images")
    if len(shards) > MAX_SHARDS_SHOWN:
        lines.append(f"    ... and {len(shards) - MAX_SHARDS_SHOWN} more")
    sample = summary["sample"]
    lines.append(
        f"  estimated {summary['estimated_records']} records, "
        f"{human_bytes(float(summary['estimated_bytes']))} ({summary['estimated_bytes']} bytes), "
        f"{_duration(float(summary['estimated_seconds']))} on {summary['workers']} worker(s) "
        f"(sample of {sample['images']} images: {sample['rejects']} rejects, "
        f"{sample['bytes_per_record']:.0f} bytes per record)"
    )
    return "\n".join(lines)
