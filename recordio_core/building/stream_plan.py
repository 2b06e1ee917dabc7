"""A streaming build's plan: from every part's per-bucket counts to groups of shards. Pure
arithmetic on per-part and per-bucket numbers, no I/O, nothing per image.

- `merge_parts`: the parts' listings (`stream_list.PartListing`) as one: each part's place in
  the whole listing (`index_offset`, `label_offset`; none for a `.lst`'s parts), the class
  map, the skipped images, and per split the entries per bucket summed over parts
  (`SplitCounts`).
- `plan_groups`: the shards of each split (`plan.plan_split` over the split's total, so the
  names, ranges and entries are those of the in-memory build), cut into at most `max_groups`
  groups of consecutive shards of one split (`GroupJob`); a group knows which buckets hold
  its records and the byte range of those buckets in every part's piece.

A split's records in hash order are bucket after bucket, so the records `[start, stop)` of a
split lie in buckets `b0..b1`, whose lines are the byte ranges `offsets[b0]:offsets[b1 + 1]` of
each piece; sorted together they are the split's records `first .. first + len`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recordio_core.building.plan import ShardPlan, num_shards_for, plan_split
from recordio_core.building.stream_list import BUCKETS, PartListing
from recordio_core.format.errors import check_int


@dataclass(frozen=True)
class PieceRange:
    """Bytes `[start, stop)` of a piece, and its part's offsets into the whole listing."""

    url: str
    start: int
    stop: int
    index_offset: int = 0
    label_offset: int = 0


@dataclass(frozen=True)
class GroupJob:
    """Consecutive shards of one split, packed by one task run. `pieces` hold the records of
    the buckets the shards' records lie in; sorted together they are the split's records from
    position `first` on."""

    split: str
    number: int
    shards: tuple[ShardPlan, ...]
    first: int
    pieces: tuple[PieceRange, ...]
    drops: tuple[PieceRange, ...] = ()  # `dedupe="drop"`: the copies to leave out

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def label(self) -> str:
        if len(self.shards) == 1:
            return f"{self.split}/{self.shards[0].name}"
        return f"{self.split}/{self.shards[0].name}..{self.shards[-1].shard:05d}"


@dataclass(frozen=True, eq=False)
class SplitCounts:
    """One split's entries per bucket, summed over parts, and per part (for byte ranges)."""

    name: str
    counts: np.ndarray  # int64[BUCKETS]
    pieces: tuple[str, ...]  # per part
    offsets: tuple[np.ndarray, ...]  # per part, int64[BUCKETS + 1]
    # `dedupe="drop"` (`stream_dedupe.with_drops`): `counts` are less the copies, listed
    # in these pieces (per `find_copies` task) bucketed as the listing's
    drop_pieces: tuple[str, ...] = ()
    drop_offsets: tuple[np.ndarray, ...] = ()

    @property
    def total(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True, eq=False)
class MergedListing:
    """Every part's listing as one: offsets per part, class map, skipped, counts per split."""

    index_offsets: tuple[int, ...]
    label_offsets: tuple[int, ...]
    class_map: dict[str, int]
    skipped: tuple[tuple[str, str], ...]
    splits: tuple[SplitCounts, ...]
    known_bytes: int
    known_count: int

    @property
    def entries(self) -> int:
        return sum(s.total for s in self.splits)


def merge_parts(parts: Sequence[PartListing], split_names: Sequence[str]) -> MergedListing:
    """The parts (in part order) as one listing; `split_names` as the pieces are ordered."""
    parts = sorted(parts, key=lambda p: p.part)
    index_offsets, label_offsets, class_map = [], [], {}
    n = 0
    for part in parts:
        own = part.index_piece is not None  # a `.lst`'s part: its indexes and labels as read
        index_offsets.append(0 if own else n)
        label_offsets.append(0 if own else len(class_map))
        for folder in part.classes:
            if folder in class_map:
                raise ValueError(f"class folder {folder!r} listed by two parts")
            class_map[folder] = len(class_map)
        n += part.entries
    splits = []
    for i, name in enumerate(split_names):
        counts = np.zeros(BUCKETS, dtype=np.int64)
        for part in parts:
            counts += part.counts[i]
        splits.append(
            SplitCounts(
                name,
                counts,
                tuple(p.pieces[i] for p in parts),
                tuple(p.offsets[i] for p in parts),
            )
        )
    return MergedListing(
        index_offsets=tuple(index_offsets),
        label_offsets=tuple(label_offsets),
        class_map=class_map,
        skipped=tuple(s for p in parts for s in p.skipped),
        splits=tuple(splits),
        known_bytes=sum(p.known_bytes for p in parts),
        known_count=sum(p.known_count for p in parts),
    )


def plan_groups(merged: MergedListing, records_per_shard: int, max_groups: int) -> list[GroupJob]:
    """The shards of every split in groups of consecutive shards of one split: as few shards
    per group as keeps the groups to `max_groups` (never fewer groups than splits)."""
    check_int("max_groups", max_groups)
    plans = [
        plan_split(s.name, s.total, num_shards_for(s.total, records_per_shard=records_per_shard))
        for s in merged.splits
    ]
    per_group = max(1, math.ceil(sum(map(len, plans)) / max_groups))
    limit = max(max_groups, len(plans))  # each split is at least one group
    while sum(math.ceil(len(shards) / per_group) for shards in plans) > limit:
        per_group += 1
    groups: list[GroupJob] = []
    for split, shards in zip(merged.splits, plans, strict=True):
        cum = np.concatenate([[0], np.cumsum(split.counts)])
        for i in range(0, len(shards), per_group):
            run = tuple(shards[i : i + per_group])
            groups.append(_group(merged, split, cum, run, len(groups)))
    return groups


def _group(
    merged: MergedListing,
    split: SplitCounts,
    cum: np.ndarray,
    shards: tuple[ShardPlan, ...],
    number: int,
) -> GroupJob:
    start, stop = shards[0].start, shards[-1].stop
    if stop == start:
        return GroupJob(split.name, number, shards, start, ())
    b0 = int(np.searchsorted(cum, start, side="right")) - 1
    b1 = int(np.searchsorted(cum, stop - 1, side="right")) - 1
    pieces = tuple(
        PieceRange(url, int(off[b0]), int(off[b1 + 1]), index_off, label_off)
        for url, off, index_off, label_off in zip(
            split.pieces, split.offsets, merged.index_offsets, merged.label_offsets, strict=True
        )
        if off[b1 + 1] > off[b0]
    )
    drops = tuple(
        PieceRange(url, int(off[b0]), int(off[b1 + 1]))
        for url, off in zip(split.drop_pieces, split.drop_offsets, strict=True)
        if off[b1 + 1] > off[b0]
    )
    return GroupJob(split.name, number, shards, int(cum[b0]), pieces, drops)
