"""Shuffle arithmetic (recordio_core.reading.shuffle): record extents, blocks, orders, the
buffer."""

from __future__ import annotations

import numpy as np
import pytest

from recordio_core.reading.shuffle import (
    Block,
    Extent,
    block_order,
    buffer_shuffle,
    plan_blocks,
    record_extents,
)


@pytest.mark.parametrize(
    "offsets, size, ends",
    [
        ([], 0, []),
        ([0], 12, [12]),
        ([0, 8, 20], 32, [8, 20, 32]),
        ([0, 8, 8, 20], 24, [8, 20, 20, 24]),  # an offset listed twice: same range twice
        ([4, 16], 40, [16, 40]),  # leading bytes no record starts at are not read
    ],
)
def test_record_extents(offsets, size, ends):
    got = record_extents(3, offsets, size)
    assert [(e.shard, e.offset, e.end) for e in got] == [
        (3, o, e) for o, e in zip(offsets, ends, strict=True)
    ]


@pytest.mark.parametrize(
    "offsets, size, match",
    [([0, 40], 40, "outside the shard"), ([8, 0], 40, "sorted"), ([-4], 40, "outside")],
)
def test_record_extents_refuses_bad_offsets(offsets, size, match):
    with pytest.raises(ValueError, match=match):
        record_extents(0, offsets, size)


def _ext(shard, *bounds):
    return [Extent(shard, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize(
    "extents, block_bytes, max_records, expected",
    [
        # (shard, start, end, lo, hi)
        ([], 10, 10, []),
        (_ext(0, 0, 10, 20, 30), 100, 100, [(0, 0, 30, 0, 3)]),
        (_ext(0, 0, 10, 20, 30), 20, 100, [(0, 0, 20, 0, 2), (0, 20, 30, 2, 3)]),
        (_ext(0, 0, 10, 20, 30), 100, 2, [(0, 0, 20, 0, 2), (0, 20, 30, 2, 3)]),
        (_ext(0, 0, 50, 60), 20, 10, [(0, 0, 50, 0, 1), (0, 50, 60, 1, 2)]),  # big record
        (_ext(0, 0, 10) + _ext(1, 0, 10), 100, 10, [(0, 0, 10, 0, 1), (1, 0, 10, 1, 2)]),
        ([Extent(0, 0, 8), Extent(0, 0, 8)], 100, 10, [(0, 0, 8, 0, 1), (0, 0, 8, 1, 2)]),
        ([Extent(0, 0, 8), Extent(0, 16, 24)], 100, 10, [(0, 0, 8, 0, 1), (0, 16, 24, 1, 2)]),
    ],
)
def test_plan_blocks(extents, block_bytes, max_records, expected):
    blocks = plan_blocks(extents, block_bytes, max_records)
    assert [(b.shard, b.start, b.end, b.lo, b.hi) for b in blocks] == expected
    # every record in exactly one block, in order, each block one contiguous range
    assert [i for b in blocks for i in range(b.lo, b.hi)] == list(range(len(extents)))
    for b in blocks:
        assert b.nbytes == sum(e.end - e.offset for e in extents[b.lo : b.hi])


def test_plan_blocks_refuses_zero_sizes():
    with pytest.raises(ValueError, match="block_bytes and max_records must be >= 1"):
        plan_blocks([], 0, 1)


def test_block_order_is_a_seeded_permutation_per_epoch():
    a = block_order(50, seed=1, epoch=0)
    assert sorted(a.tolist()) == list(range(50))
    assert block_order(50, seed=1, epoch=0).tolist() == a.tolist()
    assert block_order(50, seed=1, epoch=1).tolist() != a.tolist()
    assert block_order(50, seed=2, epoch=0).tolist() != a.tolist()
    assert block_order(0, seed=1, epoch=0).tolist() == []


@pytest.mark.parametrize("n, size", [(0, 4), (1, 1), (10, 1), (10, 3), (10, 10), (10, 50)])
def test_buffer_shuffle_yields_each_item_once(n, size):
    out = list(buffer_shuffle(range(n), size, np.random.default_rng(0)))
    assert sorted(out) == list(range(n))
    if size == 1:
        assert out == list(range(n))  # a buffer of one keeps the order


def test_buffer_shuffle_holds_at_most_size_items():
    taken = []

    def source():
        for i in range(1000):
            taken.append(i)
            yield i

    held = []
    emitted = 0
    for _ in buffer_shuffle(source(), 32, np.random.default_rng(1)):
        emitted += 1
        held.append(len(taken) - emitted)
    assert max(held) <= 32 and emitted == 1000


def test_buffer_shuffle_moves_items_at_most_a_buffer_early():
    # An item can come out late (it may stay in the buffer), never before it was read: the
    # output position of item i is >= i - size.
    size = 16
    out = list(buffer_shuffle(range(500), size, np.random.default_rng(2)))
    pos = {v: k for k, v in enumerate(out)}
    assert all(pos[i] >= i - size for i in range(500))
    assert out != list(range(500))


def test_buffer_shuffle_with_a_big_buffer_is_a_permutation_of_all():
    a = list(buffer_shuffle(range(100), 1000, np.random.default_rng(3)))
    b = list(buffer_shuffle(range(100), 1000, np.random.default_rng(3)))
    assert a == b and sorted(a) == list(range(100)) and a != list(range(100))


def test_block_is_frozen():
    b = Block(0, 0, 10, 0, 1)
    with pytest.raises(AttributeError):
        b.start = 4  # type: ignore[misc]
