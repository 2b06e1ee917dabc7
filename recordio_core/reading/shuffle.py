"""Shard-aware shuffling arithmetic: record blocks, their per-epoch order, a shuffle buffer.

Pure functions, no I/O. Reading a remote dataset one ranged GET per record (a global
permutation) pays the store's latency once per record; the streaming-dataset libraries
(WebDataset, MosaicML Streaming, LitData, DALI) instead read large contiguous pieces in a
shuffled order and mix records in a bounded buffer. Here:

- `record_extents` gives each indexed record its byte range `[offset, end)`: up to the next
  larger offset in its shard, or the shard's end.
- `plan_blocks` cuts a part's records (in shard, offset order) into **blocks**: runs of
  consecutive records of one shard, at most `block_bytes` bytes (a single larger record makes
  a block of its own) and at most `max_records` records. A block is fetched with one ranged
  request.
- `block_order` is the epoch's permutation of blocks, seeded by `(seed, epoch)`.
- `buffer_shuffle` streams items through a buffer of `size` slots, emitting a uniformly
  random one each time the buffer is full (DALI's `initial_fill`, WebDataset's `shuffle`).
  Every item comes out exactly once; at most `size` items are held at any time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Extent:
    """One record: its shard number and byte range `[offset, end)` in that shard."""

    shard: int
    offset: int
    end: int


@dataclass(frozen=True, slots=True)
class Block:
    """A contiguous byte range `[start, end)` of one shard holding records `lo..hi-1` of the
    planned sequence (their offsets are the extents' offsets)."""

    shard: int
    start: int
    end: int
    lo: int
    hi: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def records(self) -> int:
        return self.hi - self.lo


def record_extents(shard: int, offsets: Sequence[int], size: int) -> list[Extent]:
    """Extents of a shard's records from their sorted `offsets` and the shard's `size`.

    A record ends where the next larger offset begins (or at `size`), so the range always
    covers the record and its padding; an offset listed twice gets the same range twice.
    Raises `ValueError` when the offsets are not sorted or lie outside `[0, size)`.
    """
    out: list[Extent] = []
    next_larger = size
    for i in range(len(offsets) - 1, -1, -1):
        off = offsets[i]
        if off < 0 or off >= size:
            raise ValueError(f"offset {off} is outside the shard ({size} bytes)")
        if i + 1 < len(offsets):
            nxt = offsets[i + 1]
            if nxt < off:
                raise ValueError(f"offsets must be sorted, got {off} before {nxt}")
            if nxt > off:
                next_larger = nxt
        out.append(Extent(shard, off, next_larger))
    out.reverse()
    return out


def plan_blocks(extents: Sequence[Extent], block_bytes: int, max_records: int) -> list[Block]:
    """Cut `extents` (in order) into blocks of consecutive records of one shard, each at most
    `block_bytes` bytes (unless one record alone is larger) and `max_records` records.

    Records whose ranges are not contiguous (a gap, a repeated offset) start a new block, so a
    block's range is exactly its records' ranges end to end.
    """
    if block_bytes < 1 or max_records < 1:
        raise ValueError(
            f"block_bytes and max_records must be >= 1, got {block_bytes}, {max_records}"
        )
    blocks: list[Block] = []
    lo = 0
    for i in range(1, len(extents) + 1):
        if i < len(extents):
            first, prev, cur = extents[lo], extents[i - 1], extents[i]
            fits = (
                cur.shard == first.shard
                and cur.offset == prev.end
                and cur.end - first.offset <= block_bytes
                and i - lo < max_records
            )
            if fits:
                continue
        blocks.append(Block(extents[lo].shard, extents[lo].offset, extents[i - 1].end, lo, i))
        lo = i
    return blocks


def block_order(n_blocks: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's permutation of `n_blocks` blocks (a function of `(seed, epoch)` only)."""
    return np.random.default_rng([seed, epoch, 1]).permutation(n_blocks)


def buffer_shuffle(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Yield `items` in a shuffled order using a buffer of at most `size` items.

    The first `size` items fill the buffer; then each new item takes the place of a uniformly
    chosen one, which is yielded; at the end the rest come out in a random order. With
    `size >= len(items)` this is a uniform permutation; with `size == 1` it is the input order.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    buf: list[T] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(size))
        out, buf[j] = buf[j], item
        yield out
    for j in rng.permutation(len(buf)):
        yield buf[j]
