"""recordio_core.building.plan: shard arithmetic, target sizes, and im2rec.cc's nsplit/part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordio_core.building.plan import (
    ShardPlan,
    auto_records_per_shard,
    nsplit_line_range,
    nsplit_output_name,
    nsplit_range,
    num_shards_for,
    plan_split,
    shard_ranges,
)


@pytest.mark.parametrize(
    ("n", "k", "expected"),
    [
        (0, 1, [(0, 0)]),
        (1, 1, [(0, 1)]),
        (10, 1, [(0, 10)]),
        (10, 3, [(0, 4), (4, 7), (7, 10)]),
        (10, 4, [(0, 3), (3, 6), (6, 8), (8, 10)]),
        (9, 3, [(0, 3), (3, 6), (6, 9)]),
        (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),
        (0, 2, [(0, 0), (0, 0)]),
    ],
)
def test_shard_ranges(n, k, expected):
    assert shard_ranges(n, k) == expected


@given(st.integers(0, 5000), st.integers(1, 300))
def test_shard_ranges_cover_contiguously_with_counts_within_one(n, k):
    ranges = shard_ranges(n, k)
    assert len(ranges) == k
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    counts = [stop - start for start, stop in ranges]
    assert max(counts) - min(counts) <= 1
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 2), "n must be an integer >= 0"),
        ((3, 0), "num_shards must be an integer >= 1"),
        ((3.0, 1), "n must be an integer"),
        ((3, True), "num_shards must be an integer"),
    ],
)
def test_shard_ranges_validates(args, message):
    with pytest.raises(ValueError, match=message):
        shard_ranges(*args)


@pytest.mark.parametrize(
    ("n", "kwargs", "expected"),
    [
        (100, {}, 1),
        (0, {}, 1),
        (100, {"chunks": 7}, 7),
        (3, {"chunks": 7}, 7),  # im2rec --chunks: exactly what was asked
        (100, {"records_per_shard": 10}, 10),
        (101, {"records_per_shard": 10}, 11),
        (5, {"records_per_shard": 10}, 1),
        (0, {"records_per_shard": 10}, 1),
        (1000, {"bytes_per_shard": 64 << 20, "total_bytes": 100 << 20}, 2),
        (1000, {"bytes_per_shard": 64 << 20, "total_bytes": 64 << 20}, 1),
        (1000, {"bytes_per_shard": 64 << 20, "total_bytes": (64 << 20) + 1}, 2),
        (3, {"bytes_per_shard": 10, "total_bytes": 1000}, 3),  # never more shards than records
        (0, {"bytes_per_shard": 10, "total_bytes": 0}, 1),
    ],
)
def test_num_shards_for(n, kwargs, expected):
    assert num_shards_for(n, **kwargs) == expected


@pytest.mark.parametrize(
    ("n", "kwargs", "message"),
    [
        (10, {"chunks": 2, "records_per_shard": 3}, "at most one"),
        (10, {"bytes_per_shard": 2, "records_per_shard": 3}, "at most one"),
        (10, {"bytes_per_shard": 100}, "needs total_bytes"),
        (10, {"total_bytes": 100}, "only used with bytes_per_shard"),
        (10, {"chunks": 0}, "chunks must be an integer >= 1"),
        (10, {"records_per_shard": 0}, "records_per_shard must be an integer >= 1"),
        (10, {"bytes_per_shard": -5, "total_bytes": 1}, "bytes_per_shard must be"),
        (10, {"bytes_per_shard": 5, "total_bytes": -1}, "total_bytes must be"),
        (-1, {}, "n must be"),
    ],
)
def test_num_shards_for_validates(n, kwargs, message):
    with pytest.raises(ValueError, match=message):
        num_shards_for(n, **kwargs)


def test_plan_split_names_and_counts():
    plans = plan_split("train", 10, 3)
    assert [p.name for p in plans] == [
        "train-00000-of-00003",
        "train-00001-of-00003",
        "train-00002-of-00003",
    ]
    assert [(p.start, p.stop, p.count) for p in plans] == [(0, 4, 4), (4, 7, 3), (7, 10, 3)]
    assert all(p.split == "train" and p.num_shards == 3 for p in plans)
    assert plan_split("val", 0, 1) == [ShardPlan("val", 0, 1, 0, 0)]
    assert ShardPlan("all", 12, 100000, 5, 5).name == "all-00012-of-100000"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": ""}, "split must be a non-empty name"),
        ({"split": "a/b"}, "without '/'"),
        ({"shard": 3}, "shard must be < num_shards=3"),
        ({"shard": -1}, "shard must be an integer >= 0"),
        ({"num_shards": 0}, "num_shards must be an integer >= 1"),
        ({"start": 5, "stop": 4}, "stop must be an integer >= 5"),
        ({"start": -1}, "start must be an integer >= 0"),
    ],
)
def test_shard_plan_validates(kwargs, message):
    fields = {"split": "train", "shard": 0, "num_shards": 3, "start": 0, "stop": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        ShardPlan(**fields)


@pytest.mark.parametrize(
    ("n", "nsplit", "part", "expected"),
    [
        (18, 1, 0, (0, 18)),
        (18, 2, 0, (0, 9)),
        (18, 2, 1, (9, 18)),
        (18, 3, 2, (12, 18)),
        (10, 4, 3, (9, 10)),  # step = ceil(10 / 4) = 3
        (10, 6, 5, (10, 10)),  # step 2: the last part is empty
        (0, 3, 1, (0, 0)),
    ],
)
def test_nsplit_range(n, nsplit, part, expected):
    assert nsplit_range(n, nsplit, part) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 0, 0), "nsplit must be an integer >= 1"),
        ((10, 2, 2), r"part must be in \[0, nsplit=2\)"),
        ((10, 2, -1), "part must be an integer >= 0"),
    ],
)
def test_nsplit_range_validates(args, message):
    with pytest.raises(ValueError, match=message):
        nsplit_range(*args)


LINES3 = b"0 0 a\n1 0 b\n2 0 c\n"  # three 6-byte lines


@pytest.mark.parametrize(
    ("data", "nsplit", "expected"),
    [
        (LINES3, 1, [b"0 0 a\n1 0 b\n2 0 c\n"]),
        (LINES3, 2, [b"0 0 a\n1 0 b\n", b"2 0 c\n"]),
        # step 6: the line starting exactly on a boundary belongs to the part before it
        (LINES3, 3, [b"0 0 a\n1 0 b\n", b"2 0 c\n", b""]),
        (LINES3, 4, [b"0 0 a\n", b"1 0 b\n", b"2 0 c\n", b""]),  # step 5
        # step 1: the line starting at byte s goes to part s - 1
        (LINES3, 18, [b"0 0 a\n", *[b""] * 4, b"1 0 b\n", *[b""] * 5, b"2 0 c\n", *[b""] * 6]),
        (b"0 0 a\r\n1 0 b\r\n\r\n2 0 c", 2, [b"0 0 a\r\n1 0 b\r\n\r\n", b"2 0 c"]),
        (b"0 0 a", 3, [b"0 0 a", b"", b""]),
        (b"", 2, [b"", b""]),
    ],
)
def test_nsplit_line_range_table(data, nsplit, expected):
    parts = [nsplit_line_range(data, nsplit, p) for p in range(nsplit)]
    assert [data[a:b] for a, b in parts] == expected


_line = st.text(alphabet="ab 0123\t", min_size=0, max_size=12)
_eol = st.sampled_from(["\n", "\r\n", "\n\n", "\r"])


@given(st.lists(st.tuples(_line, _eol), max_size=30), st.integers(1, 12), st.booleans())
def test_nsplit_parts_partition_lines_like_dmlc(lines, nsplit, final_eol):
    data = "".join(t + e for t, e in lines).encode()
    if not final_eol and data:
        data = data.rstrip(b"\r\n")
    ranges = [nsplit_line_range(data, nsplit, p) for p in range(nsplit)]
    # contiguous, in order, covering the whole file (ignoring a leading run of blank lines)
    nonempty = [(a, b) for a, b in ranges if a < b]
    assert all(x[1] == y[0] for x, y in zip(nonempty, nonempty[1:], strict=False))
    if nonempty:
        assert nonempty[0][0] == 0 and nonempty[-1][1] == len(data)
    # every non-blank line starting at byte s > 0 lies in part (s - 1) // step
    step = -(-len(data) // nsplit) if data else 1
    for s in range(1, len(data)):
        if data[s - 1] in b"\r\n" and data[s] not in b"\r\n":
            part = next(p for p, (a, b) in enumerate(ranges) if a <= s < b)
            assert part == (s - 1) // step


@pytest.mark.parametrize(
    ("output", "nsplit", "part", "expected"),
    [
        ("out.rec", 1, 0, "out.rec"),
        ("out.rec", 4, 2, "out.rec.part002"),
        ("s3://b/x.bin", 1000, 999, "s3://b/x.bin.part999"),
    ],
)
def test_nsplit_output_name(output, nsplit, part, expected):
    assert nsplit_output_name(output, nsplit, part) == expected


@pytest.mark.parametrize(
    ("known_bytes", "known_count", "kwargs", "expected"),
    [
        (0, 0, {}, 2000),  # no size known: the plain default
        (100 << 30, 1_000_000, {}, 2000),  # ~107 KB photos (ImageNet): unchanged
        (2000 * 33_555, 2000, {}, 2000),  # 33.5 KB: 2,000 of them already make 64 MiB
        (2000 * 33_554, 2000, {}, 2001),  # a byte less each: one image more
        (2_500 * 100_000, 100_000, {}, 26_844),  # 2.5 KB files: ceil(64 MiB / 2,500 B)
        (10, 10, {}, 64 << 20),  # 1-byte files: as many as make 64 MiB
        (100, 10, {"records": 5, "min_bytes": 100}, 10),
        (1000, 10, {"records": 5, "min_bytes": 100}, 5),
        (5, 0, {}, 2000),  # sizes of nothing: the default
    ],
)
def test_auto_records_per_shard(known_bytes, known_count, kwargs, expected):
    assert auto_records_per_shard(known_bytes, known_count, **kwargs) == expected


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-1, 1), {}, "known_bytes must be an integer >= 0"),
        ((1, -1), {}, "known_count must be an integer >= 0"),
        ((1, 1), {"records": 0}, "records must be an integer >= 1"),
        ((1, 1), {"min_bytes": 0}, "min_bytes must be an integer >= 1"),
    ],
)
def test_auto_records_per_shard_validates(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        auto_records_per_shard(*args, **kwargs)
