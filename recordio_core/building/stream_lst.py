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

What the whole file must satisfy (no line that does not parse, no path outside the root,
no repeated index) is checked across the parts by `stream_lst_checks`: a part returns its
first bad lines instead of raising, and writes an index piece of the lines before them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recordio_core.building.shardkey import source_fingerprints
from recordio_core.building.split import order_digest_of, stable_split_names, stable_split_of
from recordio_core.building.stream_list import (
    MAX_LIST_PARTS,
    MIN_LIST_PARTS,
    IndexPiece,
    PartListing,
    Tally,
    size_line,
    write_size_piece,
)
from recordio_core.building.stream_lst_checks import INDEX_CHECK_TASKS, write_index_piece
from recordio_core.building.stream_sort import (
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
)
from recordio_core.storage.treelist import listing_filesystem

MAX_LST_PARTS = MAX_LIST_PARTS - INDEX_CHECK_TASKS  # so listing a .lst costs no more runs
LST_PART_BYTES = 32 << 20  # what a listing task aims at: about 500,000 lines
MIN_PART_BYTES = 1 << 20  # ... and no less, to spread a small file over MIN_LIST_PARTS
FINGERPRINT_BATCH = 50_000  # paths whose fingerprints are asked for at once (one listing)
LOCAL_FINGERPRINT_BATCH = 1_000  # ... on local disk (a stat each: no need to hold many)


@dataclass(frozen=True)
class LstPart:
    """Part `number` of a `.lst`: the lines starting at bytes `[start, stop)`."""

    number: int
    start: int
    stop: int

    @property
    def label(self) -> str:
        return f"part {self.number} (bytes {self.start}..{self.stop})"


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
    index_url = join_url(staging, f"indexes-{part.number:05d}.bin")
    keys = write_index_piece(index_url, indexes, line_numbers, staging_options)
    if bad:  # and the indexes before it: a repeat there may come first
        return _bad_part(part, reading, keys)
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


def _bad_part(part: LstPart, reading: _Reading, keys: IndexPiece) -> PartListing:
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
