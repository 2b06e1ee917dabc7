"""Duplicates, leakage and the dedupe plan (recordio_core.building.quality): table tests."""

from __future__ import annotations

import hashlib

import pytest

from recordio_core.building.quality import (
    NO_DHASH,
    NO_DIGEST,
    Seen,
    duplicate_groups,
    exact_groups,
    hash_sources,
    near_duplicate_groups,
    plan_dedupe,
    quality_report,
    same_size_paths,
    sizes_from_fingerprints,
)
from recordio_core.building.split import SplitList
from recordio_core.format.lst import LstEntry


def d(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@pytest.mark.parametrize(
    ("digests", "expected"),
    [
        ([], []),
        ([d("a")], []),
        ([d("a"), d("b")], []),
        ([d("a"), d("b"), d("a")], [[0, 2]]),
        ([d("b"), d("a"), d("b"), d("a"), d("b")], [[0, 2, 4], [1, 3]]),
        ([NO_DIGEST, NO_DIGEST, d("a")], []),  # unread files are not "identical"
        # same 8-byte prefix, different digests: not grouped
        ([b"\1" * 8 + b"\2" * 24, b"\1" * 8 + b"\3" * 24], []),
    ],
)
def test_exact_groups(digests, expected):
    assert exact_groups(digests) == expected


def test_duplicate_groups_say_leakage_and_label_conflicts():
    seen = [
        Seen("dogs/b.jpg", (1.0,), "val", d("x")),
        Seen("cats/a.jpg", (0.0,), "train", d("x")),
        Seen("cats/c.jpg", (0.0,), "train", d("y")),
        Seen("cats/c copy.JPEG", (0.0,), "train", d("y")),
        Seen("cats/z.jpg", (0.0,), "train", d("z")),
    ]
    groups = duplicate_groups(seen)
    assert [g.paths for g in groups] == [
        ("cats/a.jpg", "dogs/b.jpg"),
        ("cats/c copy.JPEG", "cats/c.jpg"),
    ]
    a, c = groups
    assert a.sha256 == d("x").hex() and a.labels == (0.0, 1.0) and a.splits == ("train", "val")
    assert a.cross_split and a.label_conflict
    assert not c.cross_split and not c.label_conflict
    summary = quality_report(seen, [], None).summary()
    assert summary["duplicate_groups"] == 2 and summary["duplicate_files"] == 4
    assert summary["duplicate_groups_cross_split"] == 1
    assert summary["duplicate_groups_label_conflict"] == 1
    assert a.to_dict() == {
        "sha256": d("x").hex(),
        "paths": ["cats/a.jpg", "dogs/b.jpg"],
        "labels": [0.0, 1.0],
        "splits": ["train", "val"],
    }


def test_multi_label_entries_report_all_labels():
    seen = [Seen("a.jpg", (1.0, 2.0), "all", d("x")), Seen("b.jpg", (1.0, 3.0), "all", d("x"))]
    (g,) = duplicate_groups(seen)
    assert g.labels == ([1.0, 2.0], [1.0, 3.0]) and g.label_conflict


def test_near_duplicate_groups_leave_out_pure_byte_copies():
    h = 0x0F0F_0F0F_0F0F_0F0F
    seen = [
        Seen("a.jpg", (0.0,), "train", d("a"), h),
        Seen("a-copy.jpg", (0.0,), "train", d("a"), h),  # byte copy: a duplicate, not "near"
        Seen("b.jpg", (0.0,), "train", d("b"), 0xFFFF_0000_FFFF_0000),
        Seen("b-small.jpg", (1.0,), "val", d("c"), 0xFFFF_0000_FFFF_0001),
        Seen("c.jpg", (0.0,), "train", d("e"), NO_DHASH),
    ]
    groups = near_duplicate_groups(seen, 2)
    assert [g.paths for g in groups] == [("b-small.jpg", "b.jpg")]
    assert groups[0].cross_split and groups[0].label_conflict
    assert groups[0].dhashes == ("ffff0000ffff0001", "ffff0000ffff0000")


@pytest.mark.parametrize(
    ("fingerprints", "expected"),
    [
        ({"a": "10:1.5", "b": "12:abc", "c": ":x", "d": "missing"}, {"a": 10, "b": 12}),
        ({}, {}),
    ],
)
def test_sizes_from_fingerprints(fingerprints, expected):
    assert sizes_from_fingerprints(fingerprints) == expected


@pytest.mark.parametrize(
    ("sizes", "paths", "expected"),
    [
        ({"a": 1, "b": 2, "c": 1}, ["a", "b", "c"], ["a", "c"]),
        ({"a": 1, "b": 2}, ["a", "b"], []),
        ({"a": 1}, ["a", "a"], ["a"]),  # listed twice: its own twin
        ({"a": 1}, ["a", "x"], ["x"]),  # size unknown: must be read
        ({}, [], []),
    ],
)
def test_same_size_paths(sizes, paths, expected):
    assert same_size_paths(sizes, paths) == expected


def test_hash_sources_reads_and_skips_vanished_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(b"AAA")
    (tmp_path / "b.png").write_bytes(b"AAA")
    got = hash_sources(str(tmp_path), ["sub/a.jpg", "b.png", "gone.jpg"])
    assert got == {"sub/a.jpg": hashlib.sha256(b"AAA").digest(), "b.png": got["sub/a.jpg"]}
    assert hash_sources(str(tmp_path), []) == {}


def entry(i: int, path: str, label: float = 0.0) -> LstEntry:
    return LstEntry(index=i, labels=(label,), path=path)


def test_plan_dedupe_keeps_the_sorted_first_path_and_moves_nothing_else():
    train = SplitList("_train", "train", None, (entry(0, "z/x.jpg"), entry(1, "a/y.jpg")))
    val = SplitList("_val", "val", None, (entry(2, "b/x copy.jpeg", 1.0), entry(3, "c/w.jpg")))
    digests = {"z/x.jpg": d("x"), "b/x copy.jpeg": d("x"), "a/y.jpg": d("y"), "c/w.jpg": d("w")}
    plan = plan_dedupe([train, val], digests)
    # b/x copy.jpeg sorts first: kept in val; z/x.jpg dropped from train
    assert [e.path for e in plan.splits[0].entries] == ["a/y.jpg"]
    assert [e.path for e in plan.splits[1].entries] == ["b/x copy.jpeg", "c/w.jpg"]
    assert [(e.path, kept) for e, kept in plan.dropped] == [("z/x.jpg", "b/x copy.jpeg")]
    (group,) = plan.groups
    assert group.paths == ("b/x copy.jpeg", "z/x.jpg") and group.splits == ("val", "train")
    assert group.labels == (1.0, 0.0) and group.label_conflict and group.cross_split


def test_plan_dedupe_without_duplicates_returns_the_splits_unchanged():
    train = SplitList("", "all", None, (entry(0, "a.jpg"), entry(1, "b.jpg")))
    plan = plan_dedupe([train], {"a.jpg": d("a")})
    assert plan.splits == (train,) and plan.dropped == () and plan.groups == ()


def test_plan_dedupe_same_path_listed_twice_keeps_the_first_index():
    lst = SplitList("", "all", None, (entry(5, "a.jpg", 1.0), entry(2, "a.jpg", 0.0)))
    plan = plan_dedupe([lst], {"a.jpg": d("a")})
    assert [e.index for e in plan.splits[0].entries] == [2]
    assert [(e.index, kept) for e, kept in plan.dropped] == [(5, "a.jpg")]
