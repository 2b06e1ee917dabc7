"""A folder listing in partitions, streamed to storage: the first step of a streaming build.

`plan_list_parts` reads only the source's top level and cuts its folders, in walk order, into
at most `MAX_LIST_PARTS` runs of consecutive folders (`ListPart`; the first also takes the
root's own files). `list_part` walks one part exactly as `recordio_core.building.listing`
walks the whole tree (the same order, the same skipped names), and streams every image to a
**piece file** per split under a staging folder, never holding the part in memory:

- each image's split is its own (`stable_split_of`: a hash of its path), so no global pass;
- each line starts with the image's 8-byte order digest (`order_digest_of`), and a piece is
  sorted by it (an external sort, `LineSorter`, spilling to local temporary files past
  `SPILL_BYTES`), so a split's records in `hash_order` are, bucket after bucket, the merge
  of every part's lines of that bucket (`BUCKET_BITS`: the digest's top 12 bits);
- indexes and labels are the part's own (0, 1, ... in its walk order); the part's place in
  the whole listing (`index_offset`, `label_offset`, known once every part has counted) is
  added when a piece is read (`recordio_core.building.stream_read`), so the entries are the
  very ones `list_images` would give.

A piece line: `<order digest, 16 hex>\\t<index>\\t<labels, comma separated>\\t<path>\\t
<fingerprint>\\n`. `PartListing` holds, per split, the entries and byte offsets of each bucket
of its piece: per-bucket counts, never per-image state.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from recordio_core.building.listing import (
    _is_dir,
    _path_problem,
    _walk_local,
    normalize_exts,
)
from recordio_core.building.shardkey import fingerprint_size, info_fingerprint
from recordio_core.building.split import order_digest_of, stable_split_names, stable_split_of
from recordio_core.storage.fsio import StorageOptions, atomic_write, is_local, join_url
from recordio_core.storage.treelist import listing_filesystem

MAX_LIST_PARTS = 128  # listing tasks per build, at most
BUCKET_BITS = 12
BUCKETS = 1 << BUCKET_BITS
SPILL_BYTES = 16 << 20  # a part's lines held in memory before a sorted run goes to local disk
MAX_RUNS = 32  # sorted runs on disk before they are merged into one
_LINE_OVERHEAD = 60  # bytes a line costs in memory beyond its characters (a str object)
_KEY = itemgetter(slice(0, 16))


@dataclass(frozen=True)
class ListPart:
    """Part `number` of a listing: the top-level `folders` (relative to the root, in walk
    order), walked recursively, after the root's own files when `root_files`."""

    number: int
    folders: tuple[str, ...]
    root_files: bool = False

    @property
    def label(self) -> str:
        if not self.folders:
            return f"part {self.number} (the root's files)"
        last = f"..{self.folders[-1]}" if len(self.folders) > 1 else ""
        return f"part {self.number} ({self.folders[0]}{last})"


@dataclass(frozen=True, eq=False)
class PartListing:
    """What `list_part` wrote: per split (in `stable_split_names` order) its piece's URL,
    entries per bucket (`counts`, `BUCKETS` each) and the byte offset where each bucket
    starts (`offsets`, `BUCKETS + 1`: the last is the piece's size)."""

    part: int
    pieces: tuple[str, ...]
    counts: tuple[np.ndarray, ...]
    offsets: tuple[np.ndarray, ...]
    entries: int
    classes: tuple[str, ...]  # folders holding an image, in walk order: local label = position
    skipped: tuple[tuple[str, str], ...] = ()
    known_bytes: int = 0  # sizes the fingerprints tell, for the shard size
    known_count: int = 0
    missing_fingerprints: int = 0  # images whose stat failed (the pack step asks again)
    # per split, images per local label (int64[len(classes)]): the records per class
    class_counts: tuple[np.ndarray, ...] = ()
    peak_lines_bytes: int = field(default=0)  # the most line memory held at once


def plan_list_parts(
    root: str,
    *,
    recursive: bool = True,
    storage_options: StorageOptions = None,
    max_parts: int = MAX_LIST_PARTS,
) -> list[ListPart]:
    """Cut the listing of `root` into at most `max_parts` parts of consecutive top-level
    folders, in walk order; the first part also takes the root's own files. Without
    `recursive`, one part: the root's files. Reads only the top level."""
    if isinstance(max_parts, bool) or not isinstance(max_parts, int) or max_parts < 1:
        raise ValueError(f"max_parts must be an integer >= 1, got {max_parts!r}")
    folders = _top_folders(root, storage_options) if recursive else []
    if not folders:
        return [ListPart(0, (), True)]
    k = min(max_parts, len(folders))
    base, extra = divmod(len(folders), k)
    parts, start = [], 0
    for i in range(k):
        stop = start + base + (1 if i < extra else 0)
        parts.append(ListPart(i, tuple(folders[start:stop]), i == 0))
        start = stop
    return parts


def _top_folders(root: str, storage_options: StorageOptions) -> list[str]:
    """The root's folders, sorted by name (the walk's order); errors as `list_images`'s."""
    fs, path = listing_filesystem(root, storage_options)
    if is_local(fs):
        if not os.path.isdir(path):
            if os.path.exists(path):
                raise NotADirectoryError(f"image root {root!r} is not a folder")
            raise FileNotFoundError(f"image root {root!r} does not exist")
        with os.scandir(path) as it:
            return sorted(e.name for e in it if _is_dir(e))
    if not fs.isdir(path):
        if fs.exists(path):
            raise NotADirectoryError(f"image root {root!r} is not a folder")
        raise FileNotFoundError(f"image root {root!r} does not exist (or holds no files)")
    names = [_basename(i) for i in fs.ls(path, detail=True) if i.get("type") == "directory"]
    return sorted(n for n in names if n)


def _basename(info: dict[str, Any]) -> str:
    return str(info["name"]).rstrip("/").rpartition("/")[2]


def _walk_fs(fs: Any, base: str, top: str, recursive: bool) -> Iterator[tuple[str, str, Any, str]]:
    """`listing._walk_fsspec`'s order, one `ls` per folder (memory: one folder's listing)."""
    base = base.rstrip("/")
    stack = [top]
    while stack:
        rel_dir = stack.pop()
        path = base if rel_dir == "." else f"{base}/{rel_dir}"
        try:
            infos = fs.ls(path, detail=True)
        except FileNotFoundError:
            if rel_dir == top:
                raise
            continue
        files, dirs = [], []
        for info in infos:
            name = _basename(info)
            if name and name not in (".", ".."):
                (dirs if info.get("type") == "directory" else files).append((name, info))
        for name, info in sorted(files, key=itemgetter(0)):
            yield rel_dir, name, None, info_fingerprint(info)
        if recursive:
            stack.extend(d if rel_dir == "." else f"{rel_dir}/{d}" for d, _ in sorted(dirs)[::-1])


def walk_part(
    root: str, part: ListPart, *, recursive: bool = True, storage_options: StorageOptions = None
) -> Iterator[tuple[str, str, str | None, str]]:
    """`(folder, file name, why not a file or None, fingerprint)` of the part, in walk order."""
    fs, path = listing_filesystem(root, storage_options)
    local = is_local(fs)
    if part.root_files:
        yield from _walk_local(path, False, True) if local else _walk_fs(fs, path, ".", False)
    if recursive:
        for folder in part.folders:
            yield from (
                _walk_local(path, True, True, folder) if local else _walk_fs(fs, path, folder, True)
            )


class LineSorter:
    """Lines sorted by their first 16 characters, stable: held in memory up to `spill_bytes`,
    then sorted runs on local disk merged as they are read (`heapq.merge` keeps ties in run
    order, and runs are in arrival order)."""

    def __init__(self, spill_bytes: int = SPILL_BYTES, max_runs: int = MAX_RUNS) -> None:
        self.spill_bytes = spill_bytes
        self.max_runs = max_runs
        self.lines: list[str] = []
        self.held = 0
        self.peak = 0
        self.runs: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)
        self.held += len(line) + _LINE_OVERHEAD
        if self.held >= self.spill_bytes:
            self.peak = max(self.peak, self.held)
            self._spill()

    def _spill(self) -> None:
        self.lines.sort(key=_KEY)
        self.runs.append(_write_run(self.lines))
        self.lines, self.held = [], 0
        if len(self.runs) >= self.max_runs:
            merged = _write_run(self._merged())
            self.close()
            self.runs = [merged]

    def _merged(self) -> Iterator[str]:
        files = [open(run, encoding="utf-8", newline="\n") for run in self.runs]  # noqa: SIM115
        try:
            yield from heapq.merge(*files, key=_KEY)
        finally:
            for f in files:
                f.close()

    def sorted_lines(self) -> Iterator[str]:
        """Every line added, sorted (stable); the sorter is empty afterwards."""
        self.peak = max(self.peak, self.held)
        if not self.runs:
            self.lines.sort(key=_KEY)
            lines, self.lines, self.held = self.lines, [], 0
            yield from lines
            return
        if self.lines:
            self._spill()
        try:
            yield from self._merged()
        finally:
            self.close()

    def close(self) -> None:
        for run in self.runs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(run)
        self.runs = []


def _write_run(lines: Any) -> str:
    fd, path = tempfile.mkstemp(prefix="recflow-run-", suffix=".tsv")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    return path


def _images(
    root: str,
    part: ListPart,
    recursive: bool,
    wanted: tuple[str, ...],
    skipped: list[tuple[str, str]],
    storage_options: StorageOptions,
) -> Iterator[tuple[str, str, str]]:
    """`(folder, relative path, fingerprint)` of the part's images; the names a `.lst`
    cannot hold go to `skipped` with the reason, as `list_images` does."""
    for rel_dir, fname, not_a_file, fp in walk_part(
        root, part, recursive=recursive, storage_options=storage_options
    ):
        if posixpath.splitext(fname)[1].lower() not in wanted:
            continue
        rel = fname if rel_dir == "." else f"{rel_dir}/{fname}"
        problem = not_a_file or _path_problem(rel)
        if problem is not None:
            skipped.append((rel.encode("utf-8", "backslashreplace").decode("utf-8"), problem))
            continue
        yield rel_dir, rel, fp


def list_part(
    root: str,
    part: ListPart,
    staging: str,
    *,
    recursive: bool = True,
    exts: tuple[str, ...] = (".jpeg", ".jpg", ".png"),
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    salt: str = "",
    seed: int = 100,
    storage_options: StorageOptions = None,
    staging_options: StorageOptions = None,
    spill_bytes: int = SPILL_BYTES,
) -> PartListing:
    """List `part` of `root` and write its piece per split under `staging`."""
    wanted = normalize_exts(exts)
    names = [split for _, split in stable_split_names(train_ratio, test_ratio)]
    which = stable_split_of(train_ratio, test_ratio, salt)
    digest = order_digest_of(seed)
    sorters = [LineSorter(max(1, spill_bytes // len(names))) for _ in names]
    classes: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    tally = _Tally(len(names))
    try:
        for rel_dir, rel, fp in _images(root, part, recursive, wanted, skipped, storage_options):
            label = classes.setdefault(rel_dir, len(classes)) if recursive else 0
            split = which(rel)
            sorters[split].add(f"{digest(rel).hex()}\t{tally.n}\t{label}.0\t{rel}\t{fp}\n")
            tally.add(split, label, fp)
        written = [
            (url := join_url(staging, f"{split}-{part.number:05d}.tsv"),)
            + write_sorted_piece(url, sorter.sorted_lines(), staging_options)
            for split, sorter in zip(names, sorters, strict=True)
        ]
    finally:
        for sorter in sorters:
            sorter.close()
    return PartListing(
        part=part.number,
        pieces=tuple(w[0] for w in written),
        counts=tuple(w[1] for w in written),
        offsets=tuple(w[2] for w in written),
        entries=tally.n,
        classes=tuple(classes) if recursive else ((".",) if tally.n else ()),
        skipped=tuple(skipped),
        known_bytes=tally.known_bytes,
        known_count=tally.known_count,
        missing_fingerprints=tally.missing,
        peak_lines_bytes=sum(s.peak for s in sorters),
        class_counts=tally.class_counts(max(1, len(classes))),
    )


class _Tally:
    """A part's counts as it is listed: images, known sizes, missing fingerprints, and per
    split the images per local label."""

    def __init__(self, splits: int) -> None:
        self.n = self.known_bytes = self.known_count = self.missing = 0
        self.per_label: list[list[int]] = [[] for _ in range(splits)]

    def add(self, split: int, label: int, fingerprint: str) -> None:
        self.n += 1
        size = fingerprint_size(fingerprint) if fingerprint else None
        if size is not None:
            self.known_bytes += size
            self.known_count += 1
        self.missing += not fingerprint
        row = self.per_label[split]
        if label >= len(row):
            row.extend([0] * (label + 1 - len(row)))
        row[label] += 1

    def class_counts(self, classes: int) -> tuple[np.ndarray, ...]:
        out = []
        for row in self.per_label:
            counts = np.zeros(classes, dtype=np.int64)
            counts[: len(row)] = row
            out.append(counts)
        return tuple(out)


def write_sorted_piece(
    url: str, lines: Iterator[str], storage_options: StorageOptions = None, bits: int = BUCKET_BITS
) -> tuple[np.ndarray, np.ndarray]:
    """Write lines sorted by their 16-hex key to `url`; (lines per bucket, the byte offset
    where each bucket starts, one more: the size). A bucket is the key's top `bits` bits."""
    buckets = 1 << bits
    counts = np.zeros(buckets, dtype=np.int64)
    ends = np.zeros(buckets, dtype=np.int64)  # offset after each bucket's last line
    shift = 16 - bits
    pos = 0
    buf: list[bytes] = []
    held = 0
    with atomic_write(url, storage_options) as f:
        for line in lines:
            data = line.encode("utf-8")
            bucket = int(line[:4], 16) >> shift
            counts[bucket] += 1
            pos += len(data)
            ends[bucket] = pos
            buf.append(data)
            held += len(data)
            if held >= 1 << 20:
                f.write(b"".join(buf))
                buf, held = [], 0
        f.write(b"".join(buf))
    # a bucket starts where the last non-empty bucket before it ended
    offsets = np.zeros(buckets + 1, dtype=np.int64)
    offsets[1:] = np.maximum.accumulate(ends)
    return counts, offsets
