"""A user's `.lst` listed in line ranges, streamed to storage: a streaming build's listing
when the source is a `.lst` rather than a folder.

`plan_lst_parts` cuts the file into `LstPart`s of consecutive bytes (`LST_PART_BYTES` each,
at least `MIN_LIST_PARTS` where the file is large enough, at most `MAX_LST_PARTS`); a part
owns the lines that *start* in its range, so reading it needs no other part. `list_lst_part`
parses its lines exactly as `format.lst.parse_lst` parses the whole file (the same checks,
the same universal line ends, a UTF-8 byte order mark skipped) and streams each entry to
the same piece files a folder listing writes (`stream_list`): the split and order come from
the entry's path hash, the index and labels are the `.lst`'s own (nothing is added when a
piece is read), and the fingerprints are the source's (`shardkey.source_fingerprints`: a
stat per file on local disk, `LOCAL_FINGERPRINT_BATCH` at a time; elsewhere one listing of
the source per `FINGERPRINT_BATCH` lines, which on object storage costs a LIST request per
1,000 objects of the whole source each time). So the shards are those of the in-memory
build of the same `.lst`.

What the whole file must satisfy is checked without holding it anywhere:

- a line that does not parse: the part returns its first one (`PartListing.problem`, its
  own line number) instead of raising, and counts its lines to the end; `first_problem`
  numbers it in the whole file once every part has counted (`ListFileError`, as `parse_lst`
  raises);
- a path outside the image root (refused unless `allow_outside_root`): the part returns its
  first one (`PartListing.outside`) and parses on, for a later line that does not parse;
- a repeated index: each part writes an **index piece** of `(index, line)` pairs (16 bytes
  each) of its lines before its first bad one, bucketed by a hash of the index;
  `find_duplicate_index` reads one range of buckets from every part's piece (`index_ranges`,
  `INDEX_CHECK_TASKS` ranges at most) and returns the earliest line repeating an index, with
  the line it first appeared on.

`first_error` then says what `parse_lst` of the whole file raises: the first line that does
not parse, anywhere; else the first of a path outside the root and a repeated index.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recordio_core.building.shardkey import source_fingerprints
from recordio_core.building.split import order_digest_of, stable_split_names, stable_split_of
from recordio_core.building.stream_list import (
    BUCKETS,
    MAX_LIST_PARTS,
    MIN_LIST_PARTS,
    IndexPiece,
    PartListing,
    Tally,
    size_line,
    write_size_piece,
)
from recordio_core.building.stream_plan import PieceRange
from recordio_core.building.stream_read import read_ranges
from recordio_core.building.stream_sort import (
    BUCKET_BITS,
    SPILL_BYTES,
    LineSorter,
    write_sorted_piece,
)
from recordio_core.format.errors import ListFileError, check_int
from recordio_core.format.lst import LstEntry, parse_lst_line, path_outside_root, plain_entry
from recordio_core.format.textio import split_lines
from recordio_core.storage.fsio import (
    StorageOptions,
    get_fs,
    is_local,
    join_url,
    write_bytes_atomic,
)
from recordio_core.storage.treelist import listing_filesystem

INDEX_CHECK_TASKS = 16  # duplicate-index task runs per build, at most
MAX_LST_PARTS = MAX_LIST_PARTS - INDEX_CHECK_TASKS  # so listing a .lst costs no more runs
LST_PART_BYTES = 32 << 20  # what a listing task aims at: about 500,000 lines
MIN_PART_BYTES = 1 << 20  # ... and no less, to spread a small file over MIN_LIST_PARTS
ENTRIES_PER_INDEX_CHECK = 4_000_000  # fewer check runs for a smaller .lst
FINGERPRINT_BATCH = 50_000  # paths whose fingerprints are asked for at once (one listing)
LOCAL_FINGERPRINT_BATCH = 1_000  # ... on local disk (a stat each: no need to hold many)
INDEX_RECORD = np.dtype([("index", "<u8"), ("line", "<u8")])


@dataclass(frozen=True)
class LstPart:
    """Part `number` of a `.lst`: the lines starting at bytes `[start, stop)`."""

    number: int
    start: int
    stop: int

    @property
    def label(self) -> str:
        return f"part {self.number} (bytes {self.start}..{self.stop})"


@dataclass(frozen=True)
class IndexRange:
    """Bytes `[start, stop)` of an index piece, and the lines before its part."""

    url: str
    start: int
    stop: int
    line_offset: int


def plan_lst_parts(
    url: str,
    storage_options: StorageOptions = None,
    *,
    max_parts: int = MAX_LST_PARTS,
    min_parts: int = MIN_LIST_PARTS,
    part_bytes: int = LST_PART_BYTES,
    min_part_bytes: int = MIN_PART_BYTES,
) -> list[LstPart]:
    """Cut the `.lst` at `url` into byte ranges of about `part_bytes`: at least `min_parts`
    where each still holds `min_part_bytes`, at most `max_parts`, and one for an empty file.
    Reads only the file's size."""
    for name, value in (
        ("max_parts", max_parts),
        ("min_parts", min_parts),
        ("part_bytes", part_bytes),
        ("min_part_bytes", min_part_bytes),
    ):
        check_int(name, value)
    fs, path = get_fs(url, storage_options)
    try:
        size = int(fs.size(path))
    except FileNotFoundError:
        raise FileNotFoundError(f".lst {url!r} does not exist") from None
    wanted = max(-(-size // part_bytes), min(min_parts, size // min_part_bytes))
    k = max(1, min(max_parts, wanted))
    return [LstPart(i, size * i // k, size * (i + 1) // k) for i in range(k)]


def _raw_lines(url: str, part: LstPart, storage_options: StorageOptions) -> Iterator[bytes]:
    """The lines (with their `\\n`) that start in the part's byte range."""
    fs, path = get_fs(url, storage_options)
    with fs.open(path, "rb") as f:
        pos = part.start
        if pos > 0:  # the line under way at `start` belongs to the part before
            f.seek(pos - 1)
            pos += len(f.readline()) - 1
        while pos < part.stop:
            line = f.readline()
            if not line:
                return
            yield line
            pos += len(line)


def _text_lines(text: str) -> list[str]:
    """The lines of one `\\n`-ended piece of text as `split_lines` cuts the whole file."""
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return split_lines(text)


def index_buckets(indexes: np.ndarray) -> np.ndarray:
    """The bucket (the top `BUCKET_BITS` bits of splitmix64) of each uint64 index."""
    z = indexes.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)


def _write_index_piece(
    url: str, indexes: array, lines: array, storage_options: StorageOptions
) -> IndexPiece:
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


@dataclass
class _Reading:
    """How far a part's reading got: its lines so far, its first line that does not parse
    and its first path outside the root (number, why)."""

    lines: int = 0
    problem: tuple[int, str] | None = None
    outside: tuple[int, str] | None = None


def _entries(
    lst: str,
    part: LstPart,
    reading: _Reading,
    label_width: int | None,
    allow_outside_root: bool,
    storage_options: StorageOptions,
) -> Iterator[tuple[int, LstEntry]]:
    """`(line number in the part, entry)` of the part's lines, as `parse_lst` parses them,
    until a bad line (`reading.problem`, or `reading.outside`: then the lines are still
    parsed, for a `problem`, but not yielded); every line is counted (`reading.lines`)."""
    for raw in _raw_lines(lst, part, storage_options):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if reading.problem is None:
                reading.problem = (reading.lines + 1, f"not UTF-8 text ({exc})")
            text = raw.decode("utf-8", "replace")  # to count its lines
        if reading.lines == 0 and part.start == 0:
            text = text.removeprefix("\ufeff")
        for line in _text_lines(text):
            reading.lines += 1
            if reading.problem is None:
                entry = _entry(line, lst, reading, label_width, allow_outside_root)
                if entry is not None and reading.outside is None:
                    yield reading.lines, entry


def _entry(
    line: str, lst: str, reading: _Reading, label_width: int | None, allow_outside_root: bool
) -> LstEntry | None:
    """The entry of line `reading.lines`, or None: a blank line, or a bad one (then
    `reading.problem`)."""
    lineno = reading.lines
    try:
        entry = plain_entry(line, label_width) or parse_lst_line(
            line, source=lst, lineno=lineno, label_width=label_width
        )
    except ListFileError as exc:
        reading.problem = (lineno, exc.problem)
        return None
    why = None if entry is None or allow_outside_root else path_outside_root(entry.path)
    if why and reading.outside is None:
        reading.outside = (
            lineno,
            f"path {entry.path!r} {why}; such paths are refused unless explicitly allowed "
            "(allow_outside_root)",
        )
    return None if why else entry


class _Pieces:
    """A part's entries on their way to its pieces: batched until their fingerprints are
    asked for, then sorted per split (and by size, with `sizes`)."""

    def __init__(
        self, root: str, splits: int, spill_bytes: int, sizes: bool, options: StorageOptions
    ) -> None:
        self.root, self.options = root, options
        self.sorters = [LineSorter(max(1, spill_bytes // splits)) for _ in range(splits)]
        self.by_size = LineSorter(max(1, spill_bytes // splits)) if sizes else None
        local = is_local(listing_filesystem(root, options)[0])
        self.batch_size = LOCAL_FINGERPRINT_BATCH if local else FINGERPRINT_BATCH
        # (split, order digest, index, labels, path, line number): a line but its fingerprint
        self.batch: list[tuple[int, str, int, str, str, int]] = []
        self.tally = Tally()

    def add(self, split: int, order: str, entry: LstEntry, lineno: int) -> None:
        labels = ",".join(map(repr, entry.labels))
        self.batch.append((split, order, entry.index, labels, entry.path, lineno))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        found = source_fingerprints(self.root, {row[4] for row in self.batch}, self.options)
        for split, order, index, labels, path, at in self.batch:
            fp = found[path]
            self.sorters[split].add(f"{order}\t{index}\t{labels}\t{path}\t{fp}\n")
            if self.by_size is not None:
                self.by_size.add(size_line(split, order, at, index, labels, path, fp))
            self.tally.add(fp)
        self.batch.clear()

    def write(
        self, staging: str, number: int, names: Sequence[str], options: StorageOptions
    ) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], tuple[str, np.ndarray | None]]:
        """Write part `number`'s piece per split (URL, counts, offsets) and its size piece."""
        self.flush()
        written = [
            (url := join_url(staging, f"{split}-{number:05d}.tsv"),)
            + write_sorted_piece(url, sorter.sorted_lines(), options)
            for split, sorter in zip(names, self.sorters, strict=True)
        ]
        return written, write_size_piece(staging, number, self.by_size, options)

    def close(self) -> None:
        for sorter in [*self.sorters, *([self.by_size] if self.by_size else [])]:
            sorter.close()


def list_lst_part(
    lst: str,
    root: str,
    part: LstPart,
    staging: str,
    *,
    label_width: int | None = None,
    allow_outside_root: bool = False,
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    salt: str = "",
    seed: int = 100,
    storage_options: StorageOptions = None,
    lst_storage_options: StorageOptions = None,
    staging_options: StorageOptions = None,
    spill_bytes: int = SPILL_BYTES,
    sizes: bool = False,
) -> PartListing:
    """Parse `part` of the `.lst` at `lst` (paths relative to `root`) and write its piece
    per split and its index piece under `staging` (with `sizes`, its size piece too, for
    `dedupe="drop"`); with a bad line, its `problem`, line count and the index piece of
    the lines before it only."""
    names = [split for _, split in stable_split_names(train_ratio, test_ratio)]
    which = stable_split_of(train_ratio, test_ratio, salt)
    digest = order_digest_of(seed)
    pieces = _Pieces(root, len(names), spill_bytes, sizes, storage_options)
    indexes, line_numbers = array("Q"), array("Q")
    reading = _Reading()
    try:
        entries = _entries(lst, part, reading, label_width, allow_outside_root, lst_storage_options)
        for lineno, entry in entries:
            indexes.append(entry.index)
            line_numbers.append(lineno)
            pieces.add(which(entry.path), digest(entry.path).hex(), entry, lineno)
        bad = reading.problem is not None or reading.outside is not None
        if not bad:
            written, size_piece = pieces.write(staging, part.number, names, staging_options)
    finally:
        pieces.close()
    keys = _write_index_piece(
        join_url(staging, f"indexes-{part.number:05d}.bin"), indexes, line_numbers, staging_options
    )
    if bad:  # and the indexes before it: a repeat there may come first
        return PartListing(
            part.number,
            (),
            (),
            (),
            0,
            (),
            lines=reading.lines,
            problem=reading.problem,
            outside=reading.outside,
            index_piece=keys,
        )
    tally = pieces.tally
    return PartListing(
        part=part.number,
        pieces=tuple(w[0] for w in written),
        counts=tuple(w[1] for w in written),
        offsets=tuple(w[2] for w in written),
        entries=tally.n,
        classes=(),
        known_bytes=tally.known_bytes,
        known_count=tally.known_count,
        missing_fingerprints=tally.missing,
        peak_lines_bytes=sum(s.peak for s in pieces.sorters),
        lines=reading.lines,
        index_piece=keys,
        size_piece=size_piece[0],
        size_offsets=size_piece[1],
    )


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
