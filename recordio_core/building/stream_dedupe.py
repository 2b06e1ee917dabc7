"""Dropping byte-identical copies (`dedupe="drop"`) in a streaming build, bucket by bucket
on the workers, never with every image in one place.

With `sizes=True` every listing part (`stream_list.list_part`, `stream_lst.list_lst_part`)
also writes a **size piece**: its images keyed by a hash of their size (`stream_list.size_key`), so
files of one size share a bucket, and a file that could be a copy of another is in the
same bucket as it. `find_copies` reads one range of size buckets from every part's size
piece (`size_ranges`) and does there what `quality.plan_dedupe` does over the whole listing:
it hashes the files whose size another file shares (or is unknown: those all share bucket
0), keeps of each group of byte-identical files the first by (path, index) and drops the
others. It writes the dropped images' order keys and indexes to a **drop piece** per split,
bucketed as the listing's pieces are, and returns their per-bucket counts, the dropped
images (for the rejects) and the duplicate groups (for the manifest). `with_drops` takes the
counts off the listing's, so the plan is the one of the splits without the copies, and each
pack group reads the drop ranges of its buckets and leaves those images out
(`stream_read.read_group`): the shards of the in-memory build with `dedupe="drop"`.

One difference, on filesystems that do not tell a file's size: such a file is compared with
the files of bucket 0 only, where the in-memory build compares it with every hashed file.

A size line (`stream_list.size_line`): `<size key, 16 hex>\\t<split>\\t<order digest, 16
hex>\\t<position in the part>\\t<index>\\t<labels>\\t<path>\\t<fingerprint>\\n`; a drop
line: `<order digest>\\t<index>\\n`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from recordio_core.building.quality import (
    NO_DIGEST,
    DuplicateGroup,
    Seen,
    duplicate_groups,
    exact_groups,
    hash_sources,
)
from recordio_core.building.shardkey import fingerprint_size
from recordio_core.building.stream_list import BUCKETS, UNKNOWN_SIZE, PartListing
from recordio_core.building.stream_plan import MergedListing, PieceRange, SplitCounts
from recordio_core.building.stream_read import read_ranges
from recordio_core.building.stream_sort import write_sorted_piece
from recordio_core.format.errors import check_int
from recordio_core.storage.fsio import StorageOptions, join_url


@dataclass(frozen=True)
class SizeRange:
    """Bytes `[start, stop)` of part `part`'s size piece, and its offsets in the listing."""

    url: str
    start: int
    stop: int
    part: int
    index_offset: int = 0
    label_offset: int = 0


@dataclass(frozen=True, eq=False)
class Copies:
    """What one `find_copies` found: per split its drop piece, entries per bucket and bucket
    offsets; the dropped images `(path, index, path kept)`; the duplicate groups; and the
    known sizes of the dropped images (for the shard size, as the in-memory build counts)."""

    pieces: tuple[str, ...]
    counts: tuple[np.ndarray, ...]
    offsets: tuple[np.ndarray, ...]
    dropped: tuple[tuple[str, int, str], ...] = ()
    groups: tuple[DuplicateGroup, ...] = ()
    hashed: int = 0
    dropped_bytes: int = 0
    dropped_known: int = 0


def size_ranges(
    parts: Sequence[PartListing], merged: MergedListing, tasks: int
) -> list[tuple[SizeRange, ...]]:
    """Per `find_copies` task, its range of size buckets in every part's size piece."""
    check_int("tasks", tasks)
    ordered = sorted(parts, key=lambda p: p.part)
    bounds = [BUCKETS * i // tasks for i in range(tasks + 1)]
    out = []
    for b0, b1 in zip(bounds, bounds[1:], strict=False):
        ranges = []
        for i, part in enumerate(ordered):
            off = part.size_offsets
            if part.size_piece and off is not None and off[b1] > off[b0]:
                ranges.append(
                    SizeRange(
                        part.size_piece,
                        int(off[b0]),
                        int(off[b1]),
                        part.part,
                        merged.index_offsets[i],
                        merged.label_offsets[i],
                    )
                )
        out.append(tuple(ranges))
    return out


@dataclass(frozen=True)
class _Row:
    key: str
    split: int
    order: str
    part: int
    position: int
    index: int
    labels: tuple[float, ...]
    path: str
    fp: str


def _rows(ranges: Sequence[SizeRange], storage_options: StorageOptions) -> list[_Row]:
    pieces = [PieceRange(r.url, r.start, r.stop) for r in ranges]
    datas = read_ranges(pieces, storage_options, "size piece")
    rows = []
    for r, data in zip(ranges, datas, strict=True):
        for line in data.decode("utf-8").split("\n"):
            if not line:
                continue
            key, split, order, pos, index, labels, path, fp = line.split("\t")
            values = [float(x) for x in labels.split(",")]
            if r.label_offset:
                values[0] += r.label_offset
            rows.append(
                _Row(
                    key,
                    int(split),
                    order,
                    r.part,
                    int(pos),
                    int(index) + r.index_offset,
                    tuple(values),
                    path,
                    fp,
                )
            )
    return rows


def find_copies(
    root: str,
    ranges: Sequence[SizeRange],
    split_names: Sequence[str],
    staging: str,
    number: int,
    storage_options: StorageOptions = None,
    staging_options: StorageOptions = None,
) -> Copies:
    """The copies among the images of `ranges` (module docstring), their drop pieces
    written under `staging` as task `number`'s."""
    rows = _rows(ranges, storage_options)
    sizes = Counter(r.key for r in rows)
    # in the listing's order (split, then hash order, ties in listing order), as in memory
    todo = sorted(
        (r for r in rows if r.key == UNKNOWN_SIZE or sizes[r.key] > 1),
        key=lambda r: (r.split, r.order, r.part, r.position),
    )
    digests = hash_sources(root, sorted({r.path for r in todo}), storage_options)
    seen = [
        Seen(r.path, r.labels, split_names[r.split], digests.get(r.path, NO_DIGEST)) for r in todo
    ]
    drops: list[list[str]] = [[] for _ in split_names]
    dropped: list[tuple[str, int, str]] = []
    dropped_bytes = dropped_known = 0
    for members in exact_groups([s.sha256 for s in seen]):
        ordered = sorted(members, key=lambda i: (todo[i].path, todo[i].index))
        kept = todo[ordered[0]].path
        for i in ordered[1:]:
            r = todo[i]
            drops[r.split].append(f"{r.order}\t{r.index}\n")
            dropped.append((r.path, r.index, kept))
            size = fingerprint_size(r.fp) if r.fp else None
            if size is not None:
                dropped_bytes += size
                dropped_known += 1
    written = []
    for name, lines in zip(split_names, drops, strict=True):
        url = join_url(staging, "dedupe", f"{name}-{number:05d}.tsv")
        lines.sort(key=lambda line: line[:16])
        written.append((url, *write_sorted_piece(url, iter(lines), staging_options)))
    return Copies(
        pieces=tuple(w[0] for w in written),
        counts=tuple(w[1] for w in written),
        offsets=tuple(w[2] for w in written),
        dropped=tuple(dropped),
        groups=tuple(duplicate_groups(seen)),
        hashed=len(digests),
        dropped_bytes=dropped_bytes,
        dropped_known=dropped_known,
    )


def with_drops(merged: MergedListing, copies: Sequence[Copies]) -> MergedListing:
    """The listing without the copies: per split, the counts less the dropped ones, and the
    drop pieces beside the listing's (for the pack groups to leave them out)."""
    if not copies:
        return merged
    splits = []
    for i, split in enumerate(merged.splits):
        counts = split.counts - sum((c.counts[i] for c in copies), np.zeros(BUCKETS, np.int64))
        splits.append(
            SplitCounts(
                split.name,
                counts,
                split.pieces,
                split.offsets,
                drop_pieces=tuple(c.pieces[i] for c in copies),
                drop_offsets=tuple(c.offsets[i] for c in copies),
            )
        )
    return replace(
        merged,
        splits=tuple(splits),
        known_bytes=merged.known_bytes - sum(c.dropped_bytes for c in copies),
        known_count=merged.known_count - sum(c.dropped_known for c in copies),
    )
