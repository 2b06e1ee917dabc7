"""A `.lst` source listed in line ranges (issue 19, `recordio_core.building.stream_lst`):
the parts' pieces give, shard by shard, the entries and fingerprints of the in-memory build
of the same `.lst` (`read_lst` -> `stable_split` -> `plan_split`), however the file is cut;
a bad line is the error `parse_lst` raises, numbered in the whole file; a repeated index is
found across parts; a part's listing state stays under 60 bytes per line."""

from __future__ import annotations

import random
import tracemalloc
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest

from recordio_core.building.plan import num_shards_for, plan_split
from recordio_core.building.shardkey import source_fingerprints
from recordio_core.building.split import stable_split, stable_split_names
from recordio_core.building.stream_list import PartListing
from recordio_core.building.stream_lst import MAX_LST_PARTS, LstPart, list_lst_part, plan_lst_parts
from recordio_core.building.stream_lst_checks import (
    INDEX_CHECK_TASKS,
    find_duplicate_index,
    first_error,
    first_problem,
    index_buckets,
    index_check_tasks_for,
    index_ranges,
)
from recordio_core.building.stream_plan import merge_parts, plan_groups
from recordio_core.building.stream_read import read_group
from recordio_core.format.errors import ListFileError
from recordio_core.format.lst import LstEntry, format_lst, parse_lst, read_lst

SALT, SEED = "s", 7


def make_source(root: Path, n: int = 120, width: int = 2, seed: int = 3) -> list[LstEntry]:
    """Files under `root` and the entries of a `.lst` naming them: shuffled indexes, labels
    that `%f` would change, a path listed twice, one that does not exist, names with
    spaces and non-ASCII letters."""
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        rel = f"c{i % 7}/sub dir/ïm {i}.jpg" if i % 5 == 0 else f"c{i % 7}/im{i}.jpg"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i + 1))
        labels = tuple(float(i % 7) + (0.1234567 if i % 11 == 0 else 0.0) for _ in range(width))
        entries.append(LstEntry(0, labels, rel))
    entries.append(LstEntry(0, (9.0,) * width, entries[3].path))  # the same image again
    entries.append(LstEntry(0, (1.0,) * width, "c1/gone.jpg"))  # missing: a reject later
    keys = list(range(len(entries)))
    rng.shuffle(keys)  # im2rec.py shuffles a list after numbering it
    return [LstEntry(k, e.labels, e.path) for k, e in zip(keys, entries, strict=True)]


def in_memory(text: str, root: str, width: int, tr: float, te: float, rps: int) -> tuple:
    entries = parse_lst(text, label_width=width)
    shards = {}
    for s in stable_split(entries, train_ratio=tr, test_ratio=te, salt=SALT, seed=SEED):
        n = len(s.entries)
        for p in plan_split(s.split, n, num_shards_for(n, records_per_shard=rps)):
            shards[f"{s.split}/{p.name}"] = s.entries[p.start : p.stop]
    return shards, source_fingerprints(root, {e.path for e in entries})


def list_parts(
    lst: str, root: str, stage: str, *, width: int, tr: float, te: float, **plan: int
) -> list[PartListing]:
    parts = plan_lst_parts(lst, **plan)
    return [
        list_lst_part(
            lst,
            root,
            part,
            stage,
            label_width=width,
            train_ratio=tr,
            test_ratio=te,
            salt=SALT,
            seed=SEED,
            spill_bytes=400,
        )
        for part in parts
    ]


def streamed(listings: list[PartListing], tr: float, te: float, rps: int) -> tuple:
    names = [split for _, split in stable_split_names(tr, te)]
    merged = merge_parts(listings[::-1], names)
    shards, fingerprints = {}, {}
    for g in plan_groups(merged, rps, 4):
        for planned in read_group(g):
            shards[f"{g.split}/{planned.plan.name}"] = planned.entries
            fingerprints.update(planned.fingerprints)
    return shards, fingerprints, merged


@pytest.mark.parametrize("ends", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("part_bytes", [7, 300, 1 << 20], ids=["mid-line", "some", "one"])
@pytest.mark.parametrize(("tr", "te"), [(1.0, 0.0), (0.8, 0.1)], ids=["all", "80-10"])
@pytest.mark.parametrize("width", [1, 3])
def test_streamed_lst_shards_equal_the_in_memory_build(
    tmp_path: Path, ends: str, part_bytes: int, tr: float, te: float, width: int
) -> None:
    root = tmp_path / "src"
    entries = make_source(root, width=width)
    text = "\ufeff" + format_lst(entries).replace("\n", ends) + ends  # a BOM, a blank line
    lst = tmp_path / "user.lst"
    lst.write_bytes(text.encode())
    want, want_fps = in_memory(text.removeprefix("\ufeff"), str(root), width, tr, te, rps=9)
    listings = list_parts(
        str(lst),
        str(root),
        str(tmp_path / "stage"),
        width=width,
        tr=tr,
        te=te,
        part_bytes=part_bytes,
        min_part_bytes=1,
        max_parts=1000,
    )
    size = len(text.encode())
    assert len(listings) == min(1000, max(-(-size // part_bytes), 8))  # MIN_LIST_PARTS
    assert first_problem(str(lst), listings) is None
    got, got_fps, merged = streamed(listings, tr, te, rps=9)
    assert list(got) == list(want) and got == want
    assert got_fps == want_fps and want_fps["c1/gone.jpg"] == "missing"
    assert merged.entries == len(entries) and merged.class_map == {}
    # every line was counted by exactly one part (a CR file is one '\n'-line: one part)
    assert sum(p.lines for p in listings) == len(text.replace("\r\n", "\n").split("\n")) - 1 or (
        ends == "\r"
    )
    tasks = index_check_tasks_for(merged.entries)
    assert [find_duplicate_index(r) for r in index_ranges(listings, tasks)] == [None] * tasks


def test_a_memory_lst_streams_too(tmp_path: Path) -> None:
    base = f"memory://lst-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    entries = [LstEntry(i, (float(i % 3),), f"c{i % 3}/{i}.png") for i in range(50)]
    for e in entries:
        fs.pipe(f"{base}/src/{e.path}".removeprefix("memory://"), b"png" * e.index)
    text = format_lst(entries)
    fs.pipe(f"{base}/a.lst".removeprefix("memory://"), text.encode())
    try:
        want, want_fps = in_memory(text, f"{base}/src", 1, 1.0, 0.0, rps=8)
        listings = list_parts(
            f"{base}/a.lst", f"{base}/src", f"{base}/stage", width=1, tr=1.0, te=0.0,
            part_bytes=100, min_part_bytes=1,
        )  # fmt: skip
        got, got_fps, _ = streamed(listings, 1.0, 0.0, rps=8)
        assert got == want and got_fps == want_fps and len(listings) > 3
    finally:
        fs.rm(base.removeprefix("memory://"), recursive=True)


BAD_LINES = [
    ("0\t1.0\ta.jpg\n1\tx\tb.jpg\n", "label in column 2 ('x') is not a number"),
    ("0\t1.0\ta.jpg\n\n\n1\t1.0\n", "expected 'index<TAB>label"),
    ("0\t1.0\ta.jpg\n-3\t1.0\tb.jpg\n", "index -3 is outside"),
    ("0\t1.0\ta.jpg\r\n1\t1.0\t\t\r\n", "the path (last column) is empty"),
    ("0\t1.0\ta.jpg\n1\t1.0\t2.0\tb.jpg\n", "label_width=1 but the line has 2"),
    ("0\t1.0\ta.jpg\n1\t1.0\t../b.jpg\n", "climbs out of the image root"),
    ("0\t1.0\ta.jpg\n1\tnan\tb.jpg\n", "is not finite"),
]


@pytest.mark.parametrize(("body", "says"), BAD_LINES)
@pytest.mark.parametrize("lines_before", [0, 250])
@pytest.mark.parametrize("part_bytes", [5, 1 << 20])
def test_a_bad_line_is_parse_lsts_error_numbered_in_the_whole_file(
    tmp_path: Path, body: str, says: str, lines_before: int, part_bytes: int
) -> None:
    good = "".join(f"{1000 + i}\t0.000000\tok/{i}.jpg\n" for i in range(lines_before))
    text = good + body + "5000\t1.0\tafter.jpg\n"
    lst = tmp_path / "bad.lst"
    lst.write_text(text, newline="")
    with pytest.raises(ListFileError) as want:
        parse_lst(text, source=str(lst), label_width=1, allow_outside_root=False)
    assert says in str(want.value)
    listings = list_parts(
        str(lst), str(tmp_path), str(tmp_path / "stage"), width=1, tr=1.0, te=0.0,
        part_bytes=part_bytes, min_part_bytes=1, max_parts=1000,
    )  # fmt: skip
    got = first_error(str(lst), listings, [])
    assert got is not None and str(got) == str(want.value)
    assert sum(p.lines for p in listings) == text.count("\n")  # counted to the end


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    lst = tmp_path / "latin1.lst"
    lst.write_bytes(b"0\t1.0\ta.jpg\n1\t1.0\tb\xe9.jpg\n")
    listings = list_parts(str(lst), str(tmp_path), str(tmp_path / "s"), width=1, tr=1.0, te=0.0)
    got = first_problem(str(lst), listings)
    assert got is not None and got.lineno == 2 and "not UTF-8 text" in str(got)


@pytest.mark.parametrize("part_bytes", [9, 1 << 20])
def test_a_repeated_index_is_found_across_parts_with_both_lines(
    tmp_path: Path, part_bytes: int
) -> None:
    rng = random.Random(5)
    keys = list(range(400))
    rng.shuffle(keys)
    lines = [f"{k}\t1.0\tim{i}.jpg\n" for i, k in enumerate(keys)]
    first_at = lines.index(f"{keys[37]}\t1.0\tim37.jpg\n") + 1  # 38
    lines.insert(300, f"{keys[37]}\t2.0\tagain.jpg\n")  # line 301 repeats line 38's index
    lines.insert(350, f"{keys[37]}\t2.0\tthird.jpg\n")
    lines.insert(320, f"{keys[200]}\t2.0\tother.jpg\n")  # a later second line, another index
    text = "".join(lines)
    lst = tmp_path / "dup.lst"
    lst.write_text(text)
    with pytest.raises(ListFileError) as want:
        parse_lst(text, source=str(lst))
    listings = list_parts(
        str(lst), str(tmp_path), str(tmp_path / "stage"), width=1, tr=1.0, te=0.0,
        part_bytes=part_bytes, min_part_bytes=1, max_parts=1000,
    )  # fmt: skip
    assert first_problem(str(lst), listings) is None  # each part alone is fine
    found = [f for r in index_ranges(listings, 5) if (f := find_duplicate_index(r))]
    line, index, first = min(found)
    assert (line, index, first) == (301, keys[37], first_at)
    said = f"duplicate index {index} (first seen on line {first})"
    assert str(ListFileError(str(lst), line, said)) == str(want.value)


# lines (index, path): a repeated index and a bad line, in either order in the file
MIXED = {
    "repeat before an outside path": (
        [(1, "a.jpg"), (2, "b.jpg"), (1, "again.jpg"), (3, "c.jpg"), (4, "../up.jpg")],
        "duplicate index 1",
    ),
    "outside path before a repeat": (
        [(1, "a.jpg"), (2, "../up.jpg"), (3, "c.jpg"), (1, "again.jpg")],
        "climbs out of the image root",
    ),
    "bad label before a repeat": (
        [(1, "a.jpg"), (2, "x"), (1, "again.jpg")],
        "is not a number",
    ),
    "repeat before a bad label: the bad label": (
        [(1, "a.jpg"), (1, "again.jpg"), (2, "x"), (3, "c.jpg")],
        "is not a number",
    ),
    "only a repeat": ([(1, "a.jpg"), (2, "b.jpg"), (2, "c.jpg")], "duplicate index 2"),
    "outside path before a bad label: the bad label": (
        [(1, "a.jpg"), (2, "../up.jpg"), (3, "c.jpg"), (4, "x")],
        "is not a number",
    ),
    "two outside paths: the first": (
        [(1, "a.jpg"), (2, "/abs.jpg"), (3, "../up.jpg")],
        "'/abs.jpg'",
    ),
}


@pytest.mark.parametrize("case", sorted(MIXED))
@pytest.mark.parametrize("padding", [0, 120])
@pytest.mark.parametrize("part_bytes", [9, 1 << 20])
def test_a_repeat_and_a_bad_line_fail_as_reading_the_whole_file_does(
    tmp_path: Path, case: str, padding: int, part_bytes: int
) -> None:
    """The error is the one `parse_lst` of the whole file raises: a line that does not parse
    (anywhere), else whichever of a repeated index and a path outside the root comes first."""
    rows, says = MIXED[case]
    pad = [f"{1000 + i}\t0.0\tpad/{i}.jpg\n" for i in range(padding)]
    body = [f"{i}\tx\tb.jpg\n" if path == "x" else f"{i}\t1.0\t{path}\n" for i, path in rows]
    text = "".join(pad[: padding // 2] + body[:2] + pad[padding // 2 :] + body[2:])
    lst = tmp_path / "mixed.lst"
    lst.write_text(text)
    with pytest.raises(ListFileError) as want:
        parse_lst(text, source=str(lst), allow_outside_root=False)
    assert says in str(want.value)
    listings = list_parts(
        str(lst), str(tmp_path), str(tmp_path / "stage"), width=1, tr=1.0, te=0.0,
        part_bytes=part_bytes, min_part_bytes=1, max_parts=1000,
    )  # fmt: skip
    found = [f for r in index_ranges(listings, 3) if (f := find_duplicate_index(r))]
    got = first_error(str(lst), listings, found)
    assert got is not None and str(got) == str(want.value)


def test_no_error_in_a_good_file(tmp_path: Path) -> None:
    lst = tmp_path / "good.lst"
    lst.write_text("".join(f"{i}\t1.0\t{i}.jpg\n" for i in range(50)))
    listings = list_parts(str(lst), str(tmp_path), str(tmp_path / "s"), width=1, tr=1.0, te=0.0)
    found = [f for r in index_ranges(listings, 2) if (f := find_duplicate_index(r))]
    assert found == [] and first_error(str(lst), listings, found) is None


@pytest.mark.parametrize(
    ("size", "kw", "want"),
    [
        (0, {}, [(0, 0)]),
        (10, {}, [(0, 10)]),  # under min_part_bytes: one part
        (3 << 20, {}, [(0, 1 << 20), (1 << 20, 2 << 20), (2 << 20, 3 << 20)]),
        (100, {"part_bytes": 30, "min_part_bytes": 1000}, [(0, 25), (25, 50), (50, 75), (75, 100)]),
        (100, {"part_bytes": 1, "max_parts": 3}, [(0, 33), (33, 66), (66, 100)]),
        (
            100,
            {"part_bytes": 1000, "min_part_bytes": 10, "min_parts": 4},
            [(0, 25), (25, 50), (50, 75), (75, 100)],
        ),  # fmt: skip
    ],
)
def test_plan_lst_parts(tmp_path: Path, size: int, kw: dict, want: list) -> None:
    lst = tmp_path / "x.lst"
    lst.write_bytes(b"x" * size)
    parts = plan_lst_parts(str(lst), **kw)
    assert [(p.start, p.stop) for p in parts] == want
    assert [p.number for p in parts] == list(range(len(want)))


def test_plan_lst_parts_refuses_bad_sizes_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.lst"):
        plan_lst_parts(str(tmp_path / "nope.lst"))
    (tmp_path / "a.lst").write_text("")
    for name in ("max_parts", "min_parts", "part_bytes", "min_part_bytes"):
        with pytest.raises(ValueError, match=name):
            plan_lst_parts(str(tmp_path / "a.lst"), **{name: 0})


def test_index_check_tasks_and_the_run_budget() -> None:
    assert [index_check_tasks_for(n) for n in (0, 1, 4_000_000, 4_000_001, 10**9)] == [
        1, 1, 1, 2, INDEX_CHECK_TASKS,
    ]  # fmt: skip
    assert MAX_LST_PARTS + INDEX_CHECK_TASKS == 128  # a .lst's listing costs a folder's runs
    buckets = index_buckets(np.arange(200_000, dtype=np.uint64))
    per_task = np.bincount(buckets, minlength=4096).reshape(INDEX_CHECK_TASKS, -1).sum(axis=1)
    assert per_task.min() > 0.95 * per_task.mean() and per_task.max() < 1.05 * per_task.mean()


def test_a_part_holds_under_60_bytes_per_line(tmp_path: Path) -> None:
    """One part of 200k lines (missing files: no stat cost to speak of)."""
    n = 200_000
    lst = tmp_path / "big.lst"
    with open(lst, "w") as f:
        f.writelines(
            f"{(i * 7919) % n}\t{i % 1000}.000000\tc{i % 1000}/{i}.jpg\n" for i in range(n)
        )
    part = LstPart(0, 0, lst.stat().st_size)
    tracemalloc.start()
    try:
        listing = list_lst_part(
            str(lst), str(tmp_path / "none"), part, str(tmp_path / "stage"), spill_bytes=1 << 20
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert listing.entries == n and listing.lines == n
    assert peak / n < 60, f"{peak / n:.1f} bytes per line"
    assert read_lst(str(lst), label_width=1)[:1] == [LstEntry(0, (0.0,), "c0/0.jpg")]
