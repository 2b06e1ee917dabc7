"""A streaming build's data quality report: duplicates and near-duplicates found bucket by
bucket on the workers, never with every image's hash in one place.

Each pack group writes, beside the listing's pieces, two **quality pieces** of its images
(`write_quality_pieces`), sorted by a key whose top `QUALITY_BITS` bits are the bucket:

- exact: keyed by the file's sha256, so byte-identical files share a bucket, and
  `quality.duplicate_groups` over one bucket range finds every group whole;
- near (only with a near-duplicate distance `d`): each image once per block of its 64-bit
  difference hash cut into `d + 1` blocks, keyed by (block number, block value). Two hashes
  within `d` bits agree on at least one whole block (pigeonhole), so every close pair meets in
  some bucket; `reduce_quality` returns the pairs it finds (paths), and the flow joins them
  into groups (`near_groups_from_pairs`): the same components as
  `quality.near_duplicate_groups` over every image at once.

A reduce task gets, per group's piece, where each of its buckets starts (`BucketSpan`), and
reads `CHUNK_BYTES` of whole buckets at a time (`bucket_chunks`): its memory is bounded by the
chunk, not by the images of its range (1.5 M of them per task at 100 M images).

A piece line: `<key, 16 hex>\\t<sha256 hex>\\t<dhash>\\t<split>\\t<labels>\\t<path>\\n`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from recordio_core.building.quality import (
    NO_DHASH,
    NO_DIGEST,
    DuplicateGroup,
    NearDuplicateGroup,
    Seen,
    duplicate_groups,
    near_duplicate_groups_of,
)
from recordio_core.building.stream_plan import PieceRange
from recordio_core.building.stream_read import read_ranges
from recordio_core.building.stream_sort import write_sorted_piece
from recordio_core.format.errors import check_int
from recordio_core.images.dhash import FLAT_BITS, components, near_pairs
from recordio_core.storage.fsio import StorageOptions, join_url

QUALITY_BITS = 10
QUALITY_BUCKETS = 1 << QUALITY_BITS
QUALITY_TASKS = 64  # reduce task runs per build, at most
IMAGES_PER_QUALITY_TASK = 500_000  # fewer runs for a smaller build: each has a fixed cost
CHUNK_BYTES = 16 << 20  # of quality lines a reduce task holds at once (~100 MB of memory)


@dataclass(frozen=True, eq=False)
class QualityPieces:
    """A group's two quality pieces and where each bucket starts in them."""

    exact: str
    exact_offsets: np.ndarray  # int64[QUALITY_BUCKETS + 1]
    near: str = ""
    near_offsets: np.ndarray | None = None


def _blocks(distance: int) -> list[tuple[int, int]]:
    """`(shift, width)` of the `distance + 1` blocks the 64 bits are cut into."""
    m = distance + 1
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    out, shift = [], 64
    for width in widths:
        shift -= width
        out.append((shift, width))
    return out


def _near_keys(dhash: int, distance: int) -> list[str]:
    keys = []
    for j, (shift, width) in enumerate(_blocks(distance)):
        value = (dhash >> shift) & ((1 << width) - 1)
        keys.append(hashlib.blake2b(f"{j}:{value}".encode(), digest_size=8).hexdigest())
    return keys


def quality_lines(seen: Iterable[Seen], distance: int | None) -> tuple[list[str], list[str]]:
    """The exact and near lines of `seen`, each list sorted by key."""
    exact, near = [], []
    for s in seen:
        tail = (
            f"{s.sha256.hex()}\t{s.dhash}\t{s.split}\t{','.join(map(repr, s.labels))}\t{s.path}\n"
        )
        if s.sha256 != NO_DIGEST:
            exact.append(f"{s.sha256.hex()[:16]}\t{tail}")
        if distance is not None and s.dhash != NO_DHASH and s.dhash.bit_count() > FLAT_BITS:
            near += [f"{key}\t{tail}" for key in _near_keys(s.dhash, distance)]
    exact.sort(key=lambda line: line[:16])
    near.sort(key=lambda line: line[:16])
    return exact, near


def write_quality_pieces(
    staging: str,
    number: int,
    seen: Sequence[Seen],
    distance: int | None,
    storage_options: StorageOptions = None,
) -> QualityPieces:
    """Write group `number`'s quality pieces under `staging`."""
    exact, near = quality_lines(seen, distance)
    exact_url = join_url(staging, "quality", f"exact-{number:05d}.tsv")
    _, exact_offsets = write_sorted_piece(exact_url, iter(exact), storage_options, QUALITY_BITS)
    if distance is None:
        return QualityPieces(exact_url, exact_offsets)
    near_url = join_url(staging, "quality", f"near-{number:05d}.tsv")
    _, near_offsets = write_sorted_piece(near_url, iter(near), storage_options, QUALITY_BITS)
    return QualityPieces(exact_url, exact_offsets, near_url, near_offsets)


def quality_tasks_for(images: int) -> int:
    """Reduce task runs for a build of `images`: one per `IMAGES_PER_QUALITY_TASK` images,
    at least 1 and at most `QUALITY_TASKS`."""
    return max(1, min(QUALITY_TASKS, -(-images // IMAGES_PER_QUALITY_TASK)))


@dataclass(frozen=True, eq=False)
class BucketSpan:
    """One group's quality piece over a reduce task's buckets `b0..b1`: where each of those
    buckets starts in the piece, and where the last ends (`offsets[b0 : b1 + 1]`)."""

    url: str
    offsets: np.ndarray  # int64[b1 - b0 + 1]


def bucket_ranges(
    pieces: Sequence[QualityPieces], tasks: int = QUALITY_TASKS
) -> list[tuple[tuple[BucketSpan, ...], tuple[BucketSpan, ...]]]:
    """Per reduce task, the (exact, near) spans of its buckets in every group's pieces
    (those that hold any of its lines)."""
    per = -(-QUALITY_BUCKETS // max(1, tasks))
    out = []
    for b0 in range(0, QUALITY_BUCKETS, per):
        b1 = min(QUALITY_BUCKETS, b0 + per)
        exact = tuple(
            BucketSpan(q.exact, q.exact_offsets[b0 : b1 + 1].copy())
            for q in pieces
            if q.exact_offsets[b1] > q.exact_offsets[b0]
        )
        near = tuple(
            BucketSpan(q.near, q.near_offsets[b0 : b1 + 1].copy())
            for q in pieces
            if q.near_offsets is not None and q.near_offsets[b1] > q.near_offsets[b0]
        )
        if exact or near:
            out.append((exact, near))
    return out


def bucket_chunks(
    spans: Sequence[BucketSpan], chunk_bytes: int = CHUNK_BYTES
) -> list[list[PieceRange]]:
    """The spans' buckets cut into runs of whole buckets of at most `chunk_bytes` (summed over
    every piece; a bigger bucket is a chunk of its own), each as the byte ranges to read."""
    check_int("chunk_bytes", chunk_bytes)
    if not spans:
        return []
    offsets = np.stack([s.offsets for s in spans])  # pieces x (buckets + 1)
    sizes = np.diff(offsets, axis=1).sum(axis=0)
    out, j0, held = [], 0, 0
    for j, size in enumerate(sizes.tolist()):
        if held and held + size > chunk_bytes:
            out.append(_ranges(spans, offsets, j0, j))
            j0, held = j, 0
        held += size
    if held:
        out.append(_ranges(spans, offsets, j0, len(sizes)))
    return out


def _ranges(spans: Sequence[BucketSpan], offsets: np.ndarray, j0: int, j1: int) -> list[PieceRange]:
    return [
        PieceRange(s.url, int(offsets[k, j0]), int(offsets[k, j1]))
        for k, s in enumerate(spans)
        if offsets[k, j1] > offsets[k, j0]
    ]


def _lines(ranges: Sequence[PieceRange], storage_options: StorageOptions) -> list[str]:
    out: list[str] = []
    for data in read_ranges(ranges, storage_options, "quality piece"):
        out += data.decode("utf-8").split("\n")
    return [line for line in out if line]


def _seen(line: str) -> Seen:
    _, digest, dhash, split, labels, path = line.split("\t")
    labels_t = tuple(float(x) for x in labels.split(","))
    return Seen(path, labels_t, split, bytes.fromhex(digest), int(dhash))


def _duplicates(lines: list[str]) -> list[DuplicateGroup]:
    """The groups among `lines` (exact lines); only lines whose key (the digest's first 8
    bytes) another shares are parsed, the candidates `duplicate_groups` sorts out."""
    keys = Counter(line[:16] for line in lines)
    return duplicate_groups([_seen(line) for line in lines if keys[line[:16]] > 1])


def _near_pairs(lines: list[str], distance: int) -> Iterator[tuple[Seen, Seen]]:
    """The pairs within `distance` bits among `lines` (near lines, an image once per block
    of its hash: taken once), each (by path) once; only paired lines are parsed."""
    unique = list({line.rpartition("\t")[2]: line for line in lines}.values())
    hashes = np.array([int(line.split("\t", 3)[2]) for line in unique], dtype=np.uint64)
    parsed: dict[int, Seen] = {}

    def seen(i: int) -> Seen:
        if i not in parsed:
            parsed[i] = _seen(unique[i])
        return parsed[i]

    for i, j in near_pairs(hashes, distance).tolist():
        a, b = seen(i), seen(j)
        yield (a, b) if a.path <= b.path else (b, a)


def reduce_quality(
    exact: Sequence[BucketSpan],
    near: Sequence[BucketSpan],
    distance: int | None,
    storage_options: StorageOptions = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> tuple[list[DuplicateGroup], list[tuple[Seen, Seen]]]:
    """The duplicate groups of the exact spans' buckets, and the near pairs (within
    `distance` bits) among the near spans' images, each pair once. Read `chunk_bytes` of
    whole buckets at a time (`bucket_chunks`), so the memory it takes is bounded by that,
    not by the images of the range: a group's copies share a bucket, and so does every close
    pair (it is found with a block both hashes share), so chunks lose none."""
    groups: list[DuplicateGroup] = []
    for ranges in bucket_chunks(exact, chunk_bytes):
        groups += _duplicates(_lines(ranges, storage_options))
    pairs: dict[tuple[str, str], tuple[Seen, Seen]] = {}
    if distance is not None:
        for ranges in bucket_chunks(near, chunk_bytes):
            for a, b in _near_pairs(_lines(ranges, storage_options), distance):
                pairs.setdefault((a.path, b.path), (a, b))
    return groups, list(pairs.values())


def near_groups_from_pairs(pairs: Iterable[tuple[Seen, Seen]]) -> list[NearDuplicateGroup]:
    """`quality.near_duplicate_groups`'s groups from the close pairs found bucket by bucket."""
    index: dict[str, int] = {}
    seen: list[Seen] = []
    edges = []
    for a, b in pairs:
        for s in (a, b):
            if s.path not in index:
                index[s.path] = len(seen)
                seen.append(s)
        edges.append(sorted((index[a.path], index[b.path])))
    pairs_array = np.array(edges, dtype=np.int64).reshape(-1, 2)
    return near_duplicate_groups_of(seen, components(len(seen), pairs_array))
