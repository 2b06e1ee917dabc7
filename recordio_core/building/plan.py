"""Shard planning: pure arithmetic, no I/O.

- `shard_ranges(n, k)`: `k` contiguous ranges over `n` records whose counts differ by at most
  one (the first `n % k` shards hold one more).
- `num_shards_for(n, ...)`: how many shards for a target records-per-shard or bytes-per-shard,
  or a fixed count (im2rec's `--chunks`).
- `auto_records_per_shard(known_bytes, known_count)`: the build's default images per shard,
  `DEFAULT_RECORDS_PER_SHARD` raised so that small files still make shards of
  `MIN_SHARD_BYTES`.
- `plan_split(split, n, k)`: the `ShardPlan`s of one split, named
  `{split}-{shard:05d}-of-{num_shards:05d}`.
- `nsplit_range(n, nsplit, part)` and `nsplit_line_range(data, nsplit, part)`: im2rec.cc's
  `nsplit`/`part`. The C++ tool reads its list through dmlc-core's `InputSplit` (type "text"),
  which cuts the list file's **bytes** into `nsplit` ranges of `step = ceil(size / nsplit)`
  (`nsplit_range`), then moves each inner boundary forward to the start of the next line
  (`LineSplitter::SeekRecordBegin`: past the first `\\n`/`\\r` at or after the boundary and any
  further `\\n`/`\\r`). So a line starting at byte `s > 0` belongs to part `(s - 1) // step`
  (the first line to part 0): parts hold equal *bytes*, not equal line counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from recordio_core.format.errors import check_int

_NEWLINES = b"\r\n"

DEFAULT_RECORDS_PER_SHARD = 2000
# A shard of small files (a few KB: thumbnails, CIFAR-sized images) holds at least this much,
# so 100k such files make a few shards, not 50: every shard is two task runs (pack, validate)
# and a worker start, which cost more than packing 2,000 small files.
MIN_SHARD_BYTES = 64 << 20


@dataclass(frozen=True)
class ShardPlan:
    """Records `[start, stop)` of one split's list go into shard `shard` of `num_shards`."""

    split: str
    shard: int
    num_shards: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if not self.split or "/" in self.split or self.split != self.split.strip():
            raise ValueError(f"split must be a non-empty name without '/', got {self.split!r}")
        check_int("num_shards", self.num_shards, 1)
        check_int("shard", self.shard, 0)
        if self.shard >= self.num_shards:
            raise ValueError(f"shard must be < num_shards={self.num_shards}, got {self.shard}")
        check_int("start", self.start, 0)
        check_int("stop", self.stop, self.start)

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"{self.split}-{self.shard:05d}-of-{self.num_shards:05d}"


def shard_ranges(n: int, num_shards: int) -> list[tuple[int, int]]:
    """`num_shards` contiguous `(start, stop)` ranges covering `[0, n)`, counts within one.

    More shards than records gives empty trailing ranges (callers choose the count; see
    `num_shards_for`, which never asks for more shards than records).
    """
    check_int("n", n, 0)
    check_int("num_shards", num_shards, 1)
    base, extra = divmod(n, num_shards)
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(num_shards):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def num_shards_for(
    n: int,
    *,
    records_per_shard: int | None = None,
    bytes_per_shard: int | None = None,
    total_bytes: int | None = None,
    chunks: int | None = None,
) -> int:
    """The number of shards for `n` records; give at most one of the three targets.

    - `chunks`: exactly that many (im2rec's `--chunks`), at least 1;
    - `records_per_shard`: `ceil(n / records_per_shard)`;
    - `bytes_per_shard` (needs `total_bytes`, an estimate of the packed size):
      `ceil(total_bytes / bytes_per_shard)`, capped at `n` so no shard is planned empty;
    - none: one shard.

    The result is at least 1 (an empty split still gets one, empty, shard).
    """
    check_int("n", n, 0)
    given = [
        name
        for name, value in (
            ("records_per_shard", records_per_shard),
            ("bytes_per_shard", bytes_per_shard),
            ("chunks", chunks),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"give at most one of records_per_shard, bytes_per_shard, chunks; got {given}"
        )
    if total_bytes is not None and bytes_per_shard is None:
        raise ValueError("total_bytes is only used with bytes_per_shard")
    if chunks is not None:
        return check_int("chunks", chunks, 1)
    if records_per_shard is not None:
        check_int("records_per_shard", records_per_shard, 1)
        return max(1, math.ceil(n / records_per_shard))
    if bytes_per_shard is not None:
        check_int("bytes_per_shard", bytes_per_shard, 1)
        if total_bytes is None:
            raise ValueError("bytes_per_shard needs total_bytes (the estimated packed size)")
        check_int("total_bytes", total_bytes, 0)
        return max(1, min(n, math.ceil(total_bytes / bytes_per_shard)))
    return 1


def auto_records_per_shard(
    known_bytes: int,
    known_count: int,
    *,
    records: int = DEFAULT_RECORDS_PER_SHARD,
    min_bytes: int = MIN_SHARD_BYTES,
) -> int:
    """Images per shard when none is asked for: `records`, or more when images of the mean
    size (`known_bytes / known_count`, over the images whose size is known) would make a
    shard of fewer than `min_bytes`. No known size: `records`.

    With the defaults, images of 33.5 KB or more keep 2,000 per shard; 2.5 KB files get
    ~26,800 per shard (64 MiB).
    """
    check_int("known_bytes", known_bytes, 0)
    check_int("known_count", known_count, 0)
    check_int("records", records, 1)
    check_int("min_bytes", min_bytes, 1)
    if known_count == 0 or known_bytes == 0:
        return records
    mean = known_bytes / known_count
    return max(records, math.ceil(min_bytes / mean))


def plan_split(split: str, n: int, num_shards: int) -> list[ShardPlan]:
    """The shards of one split: `num_shards` plans over `n` records, counts within one."""
    return [
        ShardPlan(split=split, shard=i, num_shards=num_shards, start=start, stop=stop)
        for i, (start, stop) in enumerate(shard_ranges(n, num_shards))
    ]


def nsplit_range(n: int, nsplit: int, part: int) -> tuple[int, int]:
    """im2rec.cc / dmlc-core's raw partition of `n` units (bytes of the list file).

    `step = ceil(n / nsplit)`; part `p` is `[min(step*p, n), min(step*(p+1), n))`.
    """
    check_int("n", n, 0)
    check_int("nsplit", nsplit, 1)
    check_int("part", part, 0)
    if part >= nsplit:
        raise ValueError(f"part must be in [0, nsplit={nsplit}), got {part}")
    step = (n + nsplit - 1) // nsplit
    return min(step * part, n), min(step * (part + 1), n)


def _seek_line_begin(data: bytes, pos: int) -> int:
    """dmlc's LineSplitter::SeekRecordBegin: past the next end-of-line run at/after `pos`."""
    size = len(data)
    i = pos
    while i < size and data[i] not in _NEWLINES:
        i += 1
    if i >= size:
        return size
    i += 1
    while i < size and data[i] in _NEWLINES:
        i += 1
    return i


def nsplit_line_range(data: bytes, nsplit: int, part: int) -> tuple[int, int]:
    """Byte range `[begin, end)` of the whole lines im2rec.cc packs for `part` of `nsplit`.

    `data` is the list file's content. Parts never overlap and together cover every line.
    """
    size = len(data)
    begin, end = nsplit_range(size, nsplit, part)
    if begin == end:
        return begin, begin
    if end != size:
        end = _seek_line_begin(data, end)
    if begin != 0:
        begin = _seek_line_begin(data, begin)
    return begin, max(begin, end)


def nsplit_output_name(output: str, nsplit: int, part: int) -> str:
    """im2rec.cc's output file: `output` itself, or `output + ".part%03d" % part` if nsplit > 1."""
    check_int("nsplit", nsplit, 1)
    check_int("part", part, 0)
    return output if nsplit == 1 else f"{output}.part{part:03d}"
