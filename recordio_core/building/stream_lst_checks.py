"""What a whole `.lst` must satisfy, checked across a streaming build's parts
(`stream_lst`) without holding the file anywhere.

- A line that does not parse: each part returns its first one (`PartListing.problem`, its own
  line number) and counts its lines to the end; `first_problem` numbers it in the whole file.
- A path outside the image root (refused unless `allow_outside_root`): each part returns its
  first one (`PartListing.outside`) and parses on, for a later line that does not parse.
- A repeated index: each part writes an **index piece** (`write_index_piece`) of `(index,
  line)` records (16 bytes each) of its lines before its first bad one, bucketed by a hash of
  the index; `find_duplicate_index` reads one range of buckets from every part's piece
  (`index_ranges`, `INDEX_CHECK_TASKS` ranges at most) and returns the earliest line repeating
  an index, with the line it first appeared on.

`first_error` then says what `parse_lst` of the whole file raises: the first line that does
not parse, anywhere; else the first of a path outside the root and a repeated index.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recordio_core.building.stream_list import BUCKETS, IndexPiece, PartListing
from recordio_core.building.stream_plan import PieceRange
from recordio_core.building.stream_read import read_ranges
from recordio_core.building.stream_sort import BUCKET_BITS
from recordio_core.format.errors import ListFileError, check_int
from recordio_core.storage.fsio import StorageOptions, write_bytes_atomic

INDEX_CHECK_TASKS = 16  # duplicate-index task runs per build, at most
ENTRIES_PER_INDEX_CHECK = 4_000_000  # fewer check runs for a smaller .lst
INDEX_RECORD = np.dtype([("index", "<u8"), ("line", "<u8")])


@dataclass(frozen=True)
class IndexRange:
    """Bytes `[start, stop)` of an index piece, and the lines before its part."""

    url: str
    start: int
    stop: int
    line_offset: int


def index_buckets(indexes: np.ndarray) -> np.ndarray:
    """The bucket (the top `BUCKET_BITS` bits of splitmix64) of each uint64 index."""
    z = indexes.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)


def write_index_piece(
    url: str, indexes: array, lines: array, storage_options: StorageOptions
) -> IndexPiece:
    """Write the `(index, line)` records of a part (uint64 arrays) to `url`, bucketed by
    `index_buckets`, and say where each bucket starts."""
    idx = np.frombuffer(indexes, dtype=np.uint64)
    buckets = index_buckets(idx)
    order = np.argsort(buckets, kind="stable")
    records = np.empty(len(idx), dtype=INDEX_RECORD)
    records["index"] = idx[order]
    del idx
    records["line"] = np.frombuffer(lines, dtype=np.uint64)[order]
    del order
    write_bytes_atomic(url, records.tobytes(), storage_options)
    offsets = np.zeros(BUCKETS + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(buckets, minlength=BUCKETS)) * INDEX_RECORD.itemsize
    return IndexPiece(url, offsets)


def first_problem(lst: str, parts: Sequence[PartListing]) -> ListFileError | None:
    """The first line of the whole `.lst` that does not parse (parts in any order),
    numbered in the file."""
    return _first(lst, parts, "problem")


def _first(lst: str, parts: Sequence[PartListing], kind: str) -> ListFileError | None:
    before = 0
    for part in sorted(parts, key=lambda p: p.part):
        found = getattr(part, kind)
        if found is not None:
            line, problem = found
            return ListFileError(lst, before + line, problem)
        before += part.lines
    return None


def first_error(
    lst: str, parts: Sequence[PartListing], repeats: Sequence[tuple[int, int, int]]
) -> ListFileError | None:
    """What `parse_lst` of the whole `.lst` raises: its first line that does not parse
    (`first_problem`), anywhere; else the first in the file of a path outside the root and a
    repeated index (`repeats`: `find_duplicate_index`'s findings); None if none of these."""
    problem = first_problem(lst, parts)
    if problem is not None:
        return problem
    outside = _first(lst, parts, "outside")
    if repeats and (outside is None or min(repeats)[0] < outside.lineno):
        line, index, first = min(repeats)
        return ListFileError(lst, line, f"duplicate index {index} (first seen on line {first})")
    return outside


def index_check_tasks_for(entries: int) -> int:
    """Duplicate-index task runs for a `.lst` of `entries`: one per
    `ENTRIES_PER_INDEX_CHECK`, at least 1 and at most `INDEX_CHECK_TASKS`."""
    return max(1, min(INDEX_CHECK_TASKS, -(-entries // ENTRIES_PER_INDEX_CHECK)))


def index_ranges(parts: Sequence[PartListing], tasks: int) -> list[tuple[IndexRange, ...]]:
    """Per check task, its range of buckets in every part's index piece (parts in any
    order; each range carries the lines before its part)."""
    check_int("tasks", tasks)
    ordered = sorted(parts, key=lambda p: p.part)
    line_offsets = np.concatenate([[0], np.cumsum([p.lines for p in ordered])]).tolist()
    bounds = [BUCKETS * i // tasks for i in range(tasks + 1)]
    out = []
    for b0, b1 in zip(bounds, bounds[1:], strict=False):
        ranges = []
        for part, lines_before in zip(ordered, line_offsets, strict=False):
            piece = part.index_piece
            if piece is not None and piece.offsets[b1] > piece.offsets[b0]:
                start, stop = int(piece.offsets[b0]), int(piece.offsets[b1])
                ranges.append(IndexRange(piece.url, start, stop, int(lines_before)))
        out.append(tuple(ranges))
    return out


def find_duplicate_index(
    ranges: Sequence[IndexRange], storage_options: StorageOptions = None
) -> tuple[int, int, int] | None:
    """`(line, index, first line)` of the earliest line (in the whole file) whose index an
    earlier line has, among the indexes of `ranges`; None when they are all distinct."""
    pieces = [PieceRange(r.url, r.start, r.stop) for r in ranges]
    datas = read_ranges(pieces, storage_options, "index piece")
    if not datas:
        return None
    index_parts, line_parts = [], []
    for r, data in zip(ranges, datas, strict=True):
        records = np.frombuffer(data, dtype=INDEX_RECORD)
        index_parts.append(records["index"])
        line_parts.append(records["line"] + np.uint64(r.line_offset))
    indexes, lines = np.concatenate(index_parts), np.concatenate(line_parts)
    order = np.lexsort((lines, indexes))
    indexes, lines = indexes[order], lines[order]
    same = indexes[1:] == indexes[:-1]  # same[j]: record j + 1 repeats record j's index
    if not same.any():
        return None
    second = same & ~np.concatenate([[False], same[:-1]])  # j + 1 is its index's second line
    at = np.flatnonzero(second)
    j = int(at[np.argmin(lines[at + 1])])
    return int(lines[j + 1]), int(indexes[j]), int(lines[j])
