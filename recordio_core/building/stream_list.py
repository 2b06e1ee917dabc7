"""A folder listing in partitions, streamed to storage: the first step of a streaming build.

`plan_list_parts` reads the source's top level (and counts the first folder's files, to
estimate the size) and cuts its folders, in walk order, into `MIN_LIST_PARTS` to
`MAX_LIST_PARTS` runs of consecutive folders (`ListPart`; the first also takes the root's own
files), about `ENTRIES_PER_PART` images each. `list_part` walks one part exactly as
`recordio_core.building.listing` walks the whole tree (the same order, the same skipped
names), and streams every image to a **piece file** per split under a staging folder, never
holding the part in memory:

- each image's split is its own (`stable_split_of`: a hash of its path), so no global pass;
- each line starts with the image's 8-byte order digest (`order_digest_of`), and a piece is
  sorted by it (an external sort, `stream_sort.LineSorter`, spilling to local temporary files
  past `SPILL_BYTES`), so a split's records in `hash_order` are, bucket after bucket, the merge
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

import hashlib
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypeVar

import fsspec
import numpy as np

from recordio_core.building.listing import (
    _is_dir,
    _path_problem,
    _walk_local,
    normalize_exts,
)
from recordio_core.building.shardkey import fingerprint_size, info_fingerprint
from recordio_core.building.split import order_digest_of, stable_split_names, stable_split_of
from recordio_core.building.stream_sort import (
    BUCKET_BITS,
    SPILL_BYTES,
    LineSorter,
    write_sorted_piece,
)
from recordio_core.format.errors import check_int
from recordio_core.storage.fsio import StorageOptions, is_local, join_url
from recordio_core.storage.treelist import listing_filesystem

MAX_LIST_PARTS = 128  # listing tasks per build, at most
MIN_LIST_PARTS = 8  # ... and at least (where there are as many folders): concurrency
ENTRIES_PER_PART = 500_000  # what a listing task aims at: 8 parts for 1.28 M, 128 for 100 M
BUCKETS = 1 << BUCKET_BITS
T = TypeVar("T")


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
class IndexPiece:
    """A `.lst` part's `(index, line)` pairs, bucketed by a hash of the index
    (`stream_lst`); the byte offset where each bucket starts (`BUCKETS + 1`)."""

    url: str
    offsets: np.ndarray


@dataclass(frozen=True, eq=False)
class PartListing:
    """What `list_part` wrote: per split (in `stable_split_names` order) its piece's URL,
    entries per bucket (`counts`, `BUCKETS` each) and the byte offset where each bucket
    starts (`offsets`, `BUCKETS + 1`: the last is the piece's size). A part of a `.lst`
    (`stream_lst`) has no classes: its indexes and labels are the file's own; it has an
    `index_piece`, its count of `lines`, and instead of pieces maybe its first line that
    does not parse (`problem`: the line's number in the part, what is wrong) or its first
    path outside the image root (`outside`, likewise)."""

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
    peak_lines_bytes: int = field(default=0)  # the most line memory held at once
    lines: int = 0
    index_piece: IndexPiece | None = None
    # with `sizes`: its images keyed by size (`stream_dedupe`), and where each bucket starts
    size_piece: str = ""
    size_offsets: np.ndarray | None = None
    problem: tuple[int, str] | None = None
    outside: tuple[int, str] | None = None


def plan_list_parts(
    root: str,
    *,
    recursive: bool = True,
    storage_options: StorageOptions = None,
    max_parts: int = MAX_LIST_PARTS,
    min_parts: int = MIN_LIST_PARTS,
    per_part: int = ENTRIES_PER_PART,
) -> list[ListPart]:
    """Cut the listing of `root` into parts of consecutive top-level folders, in walk order;
    the first part also takes the root's own files. Without `recursive`, one part: the
    root's files. As many parts as the source's size asks for (`per_part` files each,
    estimated from the first folder's count times the number of folders), at least
    `min_parts` (concurrency) and at most `max_parts` (task runs), never more than folders.
    Reads the top level and the first folder only."""
    for name, value in (("max_parts", max_parts), ("min_parts", min_parts), ("per_part", per_part)):
        check_int(name, value)
    folders = _top_folders(root, storage_options) if recursive else []
    if not folders:
        return [ListPart(0, (), True)]
    estimate = _files_in(root, folders[0], storage_options, limit=per_part * max_parts)
    wanted = -(-estimate * len(folders) // per_part)
    k = min(len(folders), max_parts, max(min_parts, wanted))
    base, extra = divmod(len(folders), k)
    parts, start = [], 0
    for i in range(k):
        stop = start + base + (1 if i < extra else 0)
        parts.append(ListPart(i, tuple(folders[start:stop]), i == 0))
        start = stop
    return parts


def _files_in(root: str, folder: str, storage_options: StorageOptions, limit: int) -> int:
    """Files under `folder` of `root` (any extension), counted up to `limit`."""
    part = ListPart(0, (folder,))
    n = 0
    for n, _ in enumerate(walk_part(root, part, storage_options=storage_options), start=1):
        if n >= limit:
            break
    return n


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
        # printable ASCII without white space at either end: nothing `_path_problem` refuses
        plain = rel.isascii() and rel.isprintable() and rel[0] != " " and rel[-1] != " "
        problem = not_a_file or (None if plain else _path_problem(rel))
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
    sizes: bool = False,
) -> PartListing:
    """List `part` of `root` and write its piece per split under `staging`; with `sizes`,
    its size piece too (for `dedupe="drop"`: `stream_dedupe`)."""
    wanted = normalize_exts(exts)
    names = [split for _, split in stable_split_names(train_ratio, test_ratio)]
    which = stable_split_of(train_ratio, test_ratio, salt)
    digest = order_digest_of(seed)
    sorters = [LineSorter(max(1, spill_bytes // len(names))) for _ in names]
    by_size = LineSorter(max(1, spill_bytes // len(names))) if sizes else None
    classes: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    tally = Tally()
    try:
        for rel_dir, rel, fp in _images(root, part, recursive, wanted, skipped, storage_options):
            label = classes.setdefault(rel_dir, len(classes)) if recursive else 0
            split = which(rel)
            order = digest(rel).hex()
            sorters[split].add(f"{order}\t{tally.n}\t{label}.0\t{rel}\t{fp}\n")
            if by_size is not None:
                by_size.add(size_line(split, order, tally.n, tally.n, f"{label}.0", rel, fp))
            tally.add(fp)
        written = [
            (url := join_url(staging, f"{split}-{part.number:05d}.tsv"),)
            + write_sorted_piece(url, sorter.sorted_lines(), staging_options)
            for split, sorter in zip(names, sorters, strict=True)
        ]
        size_piece = write_size_piece(staging, part.number, by_size, staging_options)
    finally:
        for sorter in [*sorters, *([by_size] if by_size else [])]:
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
        size_piece=size_piece[0],
        size_offsets=size_piece[1],
    )


UNKNOWN_SIZE = "0" * 16  # the size key of a file of unknown size: bucket 0


def size_key(fingerprint: str) -> str:
    """The 16-hex key of a file's size (from its fingerprint), never in bucket 0; that is
    `UNKNOWN_SIZE`'s, a file whose size is unknown."""
    size = fingerprint_size(fingerprint) if fingerprint else None
    if size is None:
        return UNKNOWN_SIZE
    key = hashlib.blake2b(str(size).encode(), digest_size=8, person=b"recflow-size").hexdigest()
    return key if int(key[:3], 16) else "001" + key[3:]


def size_line(
    split: int, order: str, position: int, index: int, labels: str, path: str, fp: str
) -> str:
    """A size piece's line (`stream_dedupe`): the image keyed by its size."""
    return f"{size_key(fp)}\t{split}\t{order}\t{position}\t{index}\t{labels}\t{path}\t{fp}\n"


def write_size_piece(
    staging: str, number: int, sorter: LineSorter | None, staging_options: StorageOptions
) -> tuple[str, np.ndarray | None]:
    """Part `number`'s size piece (its URL and bucket offsets), or nothing without one."""
    if sorter is None:
        return "", None
    url = join_url(staging, f"sizes-{number:05d}.tsv")
    return url, write_sorted_piece(url, sorter.sorted_lines(), staging_options)[1]


class Tally:
    """A part's counts (a folder's or a `.lst`'s) as it is listed: images, known sizes,
    missing fingerprints."""

    def __init__(self) -> None:
        self.n = self.known_bytes = self.known_count = self.missing = 0

    def add(self, fingerprint: str) -> None:
        self.n += 1
        size = fingerprint_size(fingerprint) if fingerprint else None
        if size is not None:
            self.known_bytes += size
            self.known_count += 1
        self.missing += not fingerprint


def filesystem_classes(*urls: str) -> dict[str, str]:
    """`{protocol: "module.Class"}` of the fsspec filesystems of `urls`, for
    `with_filesystems` in another process (which then knows one registered at run time,
    a user's own filesystem, too)."""
    out = {}
    for url in urls:
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        cls = fsspec.get_filesystem_class(protocol)
        out[protocol] = f"{cls.__module__}.{cls.__qualname__}"
    return out


def with_filesystems(classes: dict[str, str], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` (a listing, in a child process), the parent's filesystems
    (`filesystem_classes`) registered first where this process lacks them."""
    for protocol, impl in classes.items():
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError):
            fsspec.register_implementation(protocol, impl, clobber=True)
    return fn(*args, **kwargs)
