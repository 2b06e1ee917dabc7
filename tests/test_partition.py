"""Partition arithmetic and real byte-range parts over files of awkward records."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reader_data import make_raw_records

from recordio_core.format.framing import MAGIC_BYTES, open_source
from recordio_core.reading.partition import (
    byte_part_of,
    byte_range,
    byte_step,
    check_part,
    count_range,
    local_byte_ranges,
    locate,
    shard_bases,
)
from recordio_core.reading.reader import byte_part_records


@pytest.mark.parametrize(
    ("size", "parts", "step"),
    [(10, 3, 4), (13, 2, 8), (0, 3, 0), (4, 1, 4), (5, 1, 8), (100, 7, 16), (3, 5, 4)],
)
def test_byte_step_is_ceil_rounded_up_to_4(size, parts, step):
    assert byte_step(size, parts) == step


def test_byte_ranges_tile_the_data():
    for total in (0, 1, 37, 100, 4096):
        for parts in range(1, 9):
            ranges = [byte_range(total, parts, i) for i in range(parts)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            for (_, end), (begin, _) in zip(ranges, ranges[1:], strict=False):
                assert end == begin
            for offset in range(0, total, 4):
                k = byte_part_of(offset, total, parts)
                assert ranges[k][0] <= offset < ranges[k][1]


@pytest.mark.parametrize("style", ["balanced", "mxnet"])
def test_count_ranges_cover_exactly_once(style):
    for n in (0, 1, 5, 10, 23, 100):
        for parts in range(1, 12):
            ranges = [count_range(n, parts, i, style) for i in range(parts)]
            covered = [j for lo, hi in ranges for j in range(lo, hi)]
            assert covered == list(range(n))
            if style == "balanced":
                sizes = [hi - lo for lo, hi in ranges]
                assert max(sizes) - min(sizes) <= 1


def test_mxnet_count_style_is_dmlc_arithmetic():
    # IndexedRecordIOSplitter: step = ceil(n / parts); trailing parts short or empty
    assert [count_range(10, 4, i, "mxnet") for i in range(4)] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [count_range(10, 6, i, "mxnet") for i in range(6)][-1] == (10, 10)
    assert [count_range(10, 4, i) for i in range(4)] == [(0, 2), (2, 5), (5, 7), (7, 10)]


def test_bases_and_locate():
    bases = shard_bases([10, 0, 20])
    assert bases == [0, 10, 10, 30]
    assert locate(0, bases) == (0, 0)
    assert locate(9, bases) == (0, 9)
    assert locate(10, bases) == (2, 0)  # the empty file holds nothing
    assert locate(29, bases) == (2, 19)
    with pytest.raises(ValueError, match="outside"):
        locate(30, bases)


def test_local_byte_ranges_cross_files():
    # total 40 -> step 20: part 0 is [0, 20), part 1 is [20, 40)
    assert local_byte_ranges([12, 16, 12], 2, 0) == [(0, 0, 12), (1, 0, 8)]
    assert local_byte_ranges([12, 16, 12], 2, 1) == [(1, 8, 16), (2, 0, 12)]


@pytest.mark.parametrize(
    ("parts", "index", "match"),
    [(0, 0, "num_parts"), (2, 2, "part_index"), (2, -1, "part_index"), (True, 0, "num_parts")],
)
def test_invalid_parts_are_rejected(parts, index, match):
    with pytest.raises(ValueError, match=match):
        check_part(parts, index)


def test_invalid_style():
    with pytest.raises(ValueError, match="style"):
        count_range(3, 2, 0, "even")  # type: ignore[arg-type]


def _payloads(lengths: list[int], magic_every: int) -> list[bytes]:
    out = []
    for i, n in enumerate(lengths):
        body = bytearray(bytes([i % 251]) * n)
        if magic_every and i % magic_every == 0 and n >= 8:
            body[4:8] = MAGIC_BYTES  # forces a multi-part record
        out.append(bytes(body))
    return out


@settings(max_examples=40, deadline=None)
@given(
    files=st.lists(
        st.lists(st.integers(min_value=0, max_value=300), min_size=0, max_size=12),
        min_size=1,
        max_size=4,
    ),
    parts=st.integers(min_value=1, max_value=9),
    magic_every=st.sampled_from([0, 2, 3]),
)
def test_byte_parts_cover_every_record_once(files, parts, magic_every):
    with tempfile.TemporaryDirectory() as tmp:
        expected = []
        paths = []
        for f, lengths in enumerate(files):
            path = os.path.join(tmp, f"s{f}.rec")
            payloads = _payloads(lengths, magic_every)
            offsets = make_raw_records(path, payloads)
            expected += [(f, off, p) for off, p in zip(offsets, payloads, strict=True)]
            paths.append(path)
        sources = [open_source(p) for p in paths]
        try:
            got = [rec for k in range(parts) for rec in byte_part_records(sources, parts, k)]
            # each part holds exactly the records that start in its byte range
            sizes = [s.size for s in sources]
            bases = shard_bases(sizes)
            for k in range(parts):
                begin, end = byte_range(bases[-1], parts, k)
                for f, off, _ in byte_part_records(sources, parts, k):
                    assert begin <= bases[f] + off < end
        finally:
            for s in sources:
                s.close()
        assert got == expected
