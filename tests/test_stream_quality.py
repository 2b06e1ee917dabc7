"""The streaming quality report's reduction (`recordio_core.building.stream_quality`): the
groups' quality pieces reduced bucket range by bucket range, a bounded chunk of buckets at a
time, find exactly the duplicate and near-duplicate groups of all images at once."""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from recordio_core.building.quality import (
    NO_DHASH,
    NO_DIGEST,
    Seen,
    duplicate_groups,
    near_duplicate_groups,
)
from recordio_core.building.stream_quality import (
    QUALITY_BUCKETS,
    BucketSpan,
    bucket_chunks,
    bucket_ranges,
    near_groups_from_pairs,
    reduce_quality,
    write_quality_pieces,
)

DISTANCE = 4


def _images(n: int, seed: int = 7) -> list[Seen]:
    """`n` images: some byte-identical copies, some near copies (a few bits flipped), a few
    without a digest or a hash, the rest unrelated."""
    rng = random.Random(seed)
    out: list[Seen] = []
    for i in range(n):
        split = rng.choice(("train", "val"))
        labels = (float(rng.randrange(5)),)
        if out and i % 17 == 0:  # a byte-identical copy of an earlier image
            src = rng.choice(out)
            out.append(Seen(f"c/{i:06d}.jpg", labels, split, src.sha256, src.dhash))
            continue
        dhash = rng.getrandbits(64)
        if out and i % 11 == 0:  # a near copy: within DISTANCE bits of an earlier hash
            base = rng.choice(out).dhash
            if base != NO_DHASH:
                dhash = base
                for bit in rng.sample(range(64), rng.randrange(1, DISTANCE + 1)):
                    dhash ^= 1 << bit
        digest = hashlib.sha256(f"{i}".encode()).digest()
        if i % 97 == 0:
            digest, dhash = NO_DIGEST, NO_DHASH  # not read: no hashes
        out.append(Seen(f"{rng.choice('abcde')}/{i:06d}.jpg", labels, split, digest, dhash))
    return out


def _pieces(tmp_path: Path, seen: list[Seen], groups: int, distance: int | None):
    cuts = sorted(random.Random(3).sample(range(1, len(seen)), groups - 1))
    parts = [seen[a:b] for a, b in zip([0, *cuts], [*cuts, len(seen)], strict=True)]
    return [
        write_quality_pieces(str(tmp_path / "staging"), k, part, distance)
        for k, part in enumerate(parts)
    ]


@pytest.mark.parametrize(
    ("tasks", "chunk_bytes"),
    [
        (1, 1 << 30),  # one task, one chunk: every image at once
        (1, 1),  # one task, a chunk per bucket
        (3, 4096),
        (64, 1),
        (64, 20_000),
    ],
)
def test_chunked_reduction_finds_the_groups_of_all_images_at_once(
    tmp_path: Path, tasks: int, chunk_bytes: int
) -> None:
    seen = _images(3000)
    pieces = _pieces(tmp_path, seen, groups=7, distance=DISTANCE)
    duplicates, pairs = [], []
    for exact, near in bucket_ranges(pieces, tasks):
        found, close = reduce_quality(exact, near, DISTANCE, chunk_bytes=chunk_bytes)
        assert len({(a.path, b.path) for a, b in close}) == len(close)  # each pair once
        duplicates += found
        pairs += close
    want_exact = duplicate_groups(seen)
    assert len(want_exact) > 50  # the case holds what it means to test
    assert sorted(duplicates, key=lambda g: g.paths) == want_exact
    want_near = near_duplicate_groups(seen, DISTANCE)
    assert len(want_near) > 50
    assert near_groups_from_pairs(pairs) == want_near


def test_without_a_distance_no_near_pieces_and_no_pairs(tmp_path: Path) -> None:
    seen = _images(500)
    pieces = _pieces(tmp_path, seen, groups=3, distance=None)
    ranges = bucket_ranges(pieces, 4)
    assert all(not near for _, near in ranges)
    found = [g for exact, near in ranges for g in reduce_quality(exact, near, None)[0]]
    assert sorted(found, key=lambda g: g.paths) == duplicate_groups(seen)


def _span(url: str, sizes: list[int]) -> BucketSpan:
    return BucketSpan(url, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))


# per piece, the bytes of each bucket; chunk_bytes; the chunks' (url, start, stop) ranges
CHUNKS = {
    "all in one": ([[10, 20, 30]], 100, [[("p0", 0, 60)]]),
    "one bucket each": ([[10, 20, 30]], 10, [[("p0", 0, 10)], [("p0", 10, 30)], [("p0", 30, 60)]]),
    "a bucket bigger than a chunk is whole": (
        [[5, 50, 5]],
        20,
        [[("p0", 0, 5)], [("p0", 5, 55)], [("p0", 55, 60)]],
    ),
    "summed over pieces": (
        [[10, 10], [10, 10]],
        25,
        [[("p0", 0, 10), ("p1", 0, 10)], [("p0", 10, 20), ("p1", 10, 20)]],
    ),
    "empty pieces are not read": ([[0, 10], [10, 0]], 100, [[("p0", 0, 10), ("p1", 0, 10)]]),
    "empty buckets make no chunk": ([[0, 0, 0]], 1, []),
}


@pytest.mark.parametrize("case", sorted(CHUNKS))
def test_bucket_chunks(case: str) -> None:
    sizes, chunk_bytes, want = CHUNKS[case]
    spans = [_span(f"p{k}", s) for k, s in enumerate(sizes)]
    got = [[(r.url, r.start, r.stop) for r in chunk] for chunk in bucket_chunks(spans, chunk_bytes)]
    assert got == want


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_bucket_chunks_refuses_a_bad_chunk_size(bad: object) -> None:
    with pytest.raises(ValueError, match="chunk_bytes must be an integer >= 1"):
        bucket_chunks([_span("p0", [1])], bad)  # type: ignore[arg-type]


def test_a_reduce_task_holds_a_chunk_not_its_range(tmp_path: Path) -> None:
    """The memory of one reduce task grows with its chunk, not with its images: 40k images
    in chunks of 64 KiB take a fraction of what they take in one chunk."""
    seen = _images(40_000, seed=11)
    pieces = _pieces(tmp_path, seen, groups=4, distance=DISTANCE)
    ((exact, near),) = bucket_ranges(pieces, 1)
    assert len(exact[0].offsets) == QUALITY_BUCKETS + 1

    def peak(chunk_bytes: int) -> int:
        tracemalloc.start()
        try:
            reduce_quality(exact, near, DISTANCE, chunk_bytes=chunk_bytes)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole, chunked = peak(1 << 30), peak(64 << 10)
    assert chunked * 5 < whole, (chunked, whole)
