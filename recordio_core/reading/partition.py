"""Reader partitions (`num_parts` / `part_index`): pure arithmetic, no I/O.

Two ways to cut a dataset into `num_parts` disjoint parts that together hold every record once:

- **By byte range** (no index needed; MXNet's `ImageRecordIter` / dmlc-core `InputSplitBase`):
  the concatenation of the `.rec` files is cut into ranges of
  `step = ceil(total_size / num_parts)` rounded up to a multiple of 4 bytes; part `i` holds the
  records whose start offset `h` (counted through the concatenation) falls in
  `[i * step, (i + 1) * step)`. A reader resynchronises on the magic word at its range's start.
  Parts hold about equal *bytes*; some may be empty when records are large.
- **By record count** (with an index): `count_range` gives part `i` a contiguous slice of the
  records in index order. `style="balanced"` (the default) makes counts differ by at most one;
  `style="mxnet"` reproduces dmlc-core's `IndexedRecordIOSplitter` (`step = ceil(n / num_parts)`,
  so trailing parts can be short or empty).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Literal

from recordio_core.format.errors import check_int

ALIGN = 4  # RecordIO records start at multiples of 4 bytes
CountStyle = Literal["balanced", "mxnet"]


def check_part(num_parts: int, part_index: int) -> None:
    """Raise `ValueError` unless `num_parts >= 1` and `0 <= part_index < num_parts`."""
    check_int("num_parts", num_parts)
    if (
        isinstance(part_index, bool)
        or not isinstance(part_index, int)
        or not 0 <= part_index < num_parts
    ):
        raise ValueError(
            f"part_index must be an integer in [0, num_parts={num_parts}), got {part_index!r}"
        )


def byte_step(total_size: int, num_parts: int) -> int:
    """MXNet's part size: `ceil(total_size / num_parts)` rounded up to a multiple of 4."""
    check_int("total_size", total_size, 0)
    check_part(num_parts, 0)
    step = -(-total_size // num_parts)
    return -(-step // ALIGN) * ALIGN


def byte_range(total_size: int, num_parts: int, part_index: int) -> tuple[int, int]:
    """`(begin, end)` bytes of part `part_index`; records *starting* in it belong to the part."""
    check_part(num_parts, part_index)
    step = byte_step(total_size, num_parts)
    return min(step * part_index, total_size), min(step * (part_index + 1), total_size)


def byte_part_of(offset: int, total_size: int, num_parts: int) -> int:
    """The part that holds the record starting at `offset` (counted through the concatenation)."""
    check_int("offset", offset, 0)
    if offset >= total_size:
        raise ValueError(f"offset {offset} is outside the data ({total_size} bytes)")
    step = byte_step(total_size, num_parts)
    return offset // step


def count_range(
    n: int, num_parts: int, part_index: int, style: CountStyle = "balanced"
) -> tuple[int, int]:
    """`(start, stop)` record positions of part `part_index` out of `n` records in index order."""
    check_int("n", n, 0)
    check_part(num_parts, part_index)
    if style == "balanced":
        return n * part_index // num_parts, n * (part_index + 1) // num_parts
    if style == "mxnet":
        step = -(-n // num_parts)
        return min(step * part_index, n), min(step * (part_index + 1), n)
    raise ValueError(f"style must be 'balanced' or 'mxnet', got {style!r}")


def shard_bases(sizes: Sequence[int]) -> list[int]:
    """Start offset of each file in the concatenation of files of `sizes` bytes, plus the total.

    `shard_bases([10, 20]) == [0, 10, 30]`.
    """
    bases = [0]
    for i, size in enumerate(sizes):
        check_int(f"sizes[{i}]", size, 0)
        bases.append(bases[-1] + size)
    return bases


def locate(offset: int, bases: Sequence[int]) -> tuple[int, int]:
    """`(file number, offset inside that file)` for a global `offset`; `bases` from
    `shard_bases`. Empty files are skipped (an offset belongs to the file that holds it)."""
    if not bases or offset < 0 or offset >= bases[-1]:
        total = bases[-1] if bases else 0
        raise ValueError(f"offset {offset} is outside the data ({total} bytes)")
    i = bisect.bisect_right(bases, offset) - 1
    return i, offset - bases[i]


def local_byte_ranges(
    sizes: Sequence[int], num_parts: int, part_index: int
) -> list[tuple[int, int, int]]:
    """The byte range of one part cut into the files it covers: `(file, begin, end)` with
    `begin < end` in that file's own offsets; records starting in `[begin, end)` of each listed
    file make up the part (in this order)."""
    bases = shard_bases(sizes)
    begin, end = byte_range(bases[-1], num_parts, part_index)
    out: list[tuple[int, int, int]] = []
    for i, size in enumerate(sizes):
        lo = max(begin - bases[i], 0)
        hi = min(end - bases[i], size)
        if lo < hi:
            out.append((i, lo, hi))
    return out
