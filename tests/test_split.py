"""recordio_core.split: im2rec.py's make_list lists and names, and the stable hash split."""

from __future__ import annotations

import random

import pytest

from recordio_core.lst import LstEntry
from recordio_core.split import SplitList, hash_fraction, im2rec_split, stable_split


def entries(n: int) -> list[LstEntry]:
    return [LstEntry(i, (float(i % 3),), f"dir/img{i:04d}.jpg") for i in range(n)]


def summary(lists: list[SplitList]) -> list[tuple[str, str, int | None, list[int]]]:
    return [(s.name, s.split, s.chunk, [e.index for e in s.entries]) for s in lists]


R = range


@pytest.mark.parametrize(
    ("n", "kwargs", "expected"),
    [
        (10, {}, [("", "all", None, [*R(10)])]),
        (0, {}, [("", "all", None, [])]),
        (
            10,
            {"train_ratio": 0.8, "test_ratio": 0.1},
            [
                ("_test", "test", None, [0]),
                ("_val", "val", None, [9]),
                ("_train", "train", None, [*R(1, 9)]),
            ],
        ),
        # 0.7 + 0.3 == 1.0: no val list; int(10 * 0.3) == 3
        (
            10,
            {"train_ratio": 0.7, "test_ratio": 0.3},
            [("_test", "test", None, [0, 1, 2]), ("_train", "train", None, [*R(3, 10)])],
        ),
        # 0.6 + 0.3 < 1.0 in floats: a val list appears although the ratios "add up to 1"
        (
            10,
            {"train_ratio": 0.6, "test_ratio": 0.3},
            [
                ("_test", "test", None, [0, 1, 2]),
                ("_val", "val", None, [9]),
                ("_train", "train", None, [*R(3, 9)]),
            ],
        ),
        # no test list when test_ratio is 0
        (
            10,
            {"train_ratio": 0.75},
            [("_val", "val", None, [7, 8, 9]), ("_train", "train", None, [*R(7)])],
        ),
        (5, {"train_ratio": 0.0}, [("_val", "val", None, [*R(5)]), ("_train", "train", None, [])]),
        # train_ratio 1.0 ignores test_ratio
        (4, {"test_ratio": 0.5}, [("", "all", None, [0, 1, 2, 3])]),
        # ratios adding up to more than 1: train gets what the test list leaves
        (
            10,
            {"train_ratio": 0.9, "test_ratio": 0.5},
            [("_test", "test", None, [*R(5)]), ("_train", "train", None, [*R(5, 10)])],
        ),
        (
            10,
            {"chunks": 3},
            [
                ("_0", "all", 0, [0, 1, 2, 3]),
                ("_1", "all", 1, [4, 5, 6, 7]),
                ("_2", "all", 2, [8, 9]),
            ],
        ),
        (
            10,
            {"chunks": 4},
            [
                ("_0", "all", 0, [0, 1, 2]),
                ("_1", "all", 1, [3, 4, 5]),
                ("_2", "all", 2, [6, 7, 8]),
                ("_3", "all", 3, [9]),
            ],
        ),
        # ceil(10 / 6) == 2: the sixth chunk is empty, and still written
        (
            10,
            {"chunks": 6},
            [(f"_{i}", "all", i, [2 * i, 2 * i + 1]) for i in R(5)] + [("_5", "all", 5, [])],
        ),
        (
            3,
            {"chunks": 5},
            [
                ("_0", "all", 0, [0]),
                ("_1", "all", 1, [1]),
                ("_2", "all", 2, [2]),
                ("_3", "all", 3, []),
                ("_4", "all", 4, []),
            ],
        ),
        # the nominal chunk size (4) decides the cut, also in the short last chunk
        (
            10,
            {"chunks": 3, "train_ratio": 0.5},
            [
                ("_0_val", "val", 0, [2, 3]),
                ("_0_train", "train", 0, [0, 1]),
                ("_1_val", "val", 1, [6, 7]),
                ("_1_train", "train", 1, [4, 5]),
                ("_2_val", "val", 2, []),
                ("_2_train", "train", 2, [8, 9]),
            ],
        ),
        (
            9,
            {"chunks": 2, "train_ratio": 0.6, "test_ratio": 0.2},
            [
                ("_0_test", "test", 0, [0]),
                ("_0_val", "val", 0, [4]),
                ("_0_train", "train", 0, [1, 2, 3]),
                ("_1_test", "test", 1, [5]),
                ("_1_val", "val", 1, []),
                ("_1_train", "train", 1, [6, 7, 8]),
            ],
        ),
    ],
)
def test_im2rec_split_without_shuffle(n, kwargs, expected):
    assert summary(im2rec_split(entries(n), shuffle=False, **kwargs)) == expected


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1001])
def test_im2rec_shuffle_is_pythons_seeded_shuffle(n):
    reference = list(range(n))
    random.seed(100)
    random.shuffle(reference)
    (only,) = im2rec_split(entries(n))
    assert [e.index for e in only.entries] == reference
    (other_seed,) = im2rec_split(entries(n), seed=7)
    random.seed(7)
    reference = list(range(n))
    random.shuffle(reference)
    assert [e.index for e in other_seed.entries] == reference


def test_im2rec_shuffle_then_split_keeps_entries_whole():
    src = entries(50)
    lists = im2rec_split(src, chunks=2, train_ratio=0.6, test_ratio=0.2)
    names = [s.name for s in lists]
    assert names == ["_0_test", "_0_val", "_0_train", "_1_test", "_1_val", "_1_train"]
    got = [e for s in lists for e in s.entries]
    assert sorted(got, key=lambda e: e.index) == src  # entries unchanged, none duplicated
    assert [len(s) for s in lists] == [5, 5, 15, 5, 5, 15]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunks": 0}, "chunks must be an integer >= 1"),
        ({"chunks": 1.5}, "chunks must be an integer"),
        ({"chunks": True}, "chunks must be an integer"),
        ({"train_ratio": -0.1}, r"train_ratio must be in \[0, 1\]"),
        ({"train_ratio": 1.5}, r"train_ratio must be in \[0, 1\]"),
        ({"test_ratio": 2}, r"test_ratio must be in \[0, 1\]"),
        ({"test_ratio": "0.1"}, "test_ratio must be a number"),
    ],
)
def test_im2rec_split_validates_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        im2rec_split(entries(3), **kwargs)


def test_split_list_validates():
    with pytest.raises(ValueError, match="split must be one of"):
        SplitList("", "training", None, ())
    with pytest.raises(ValueError, match="chunk"):
        SplitList("", "all", -1, ())


def test_hash_fraction_is_fixed_and_in_unit_interval():
    assert hash_fraction("a/b.jpg") == hash_fraction("a/b.jpg")
    assert hash_fraction("a/b.jpg") != hash_fraction("a/b.jpg", salt="x")
    values = [hash_fraction(f"img{i}.jpg") for i in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55


def test_hash_fraction_pinned_values():
    # pinned: a file's split must never change between versions or machines
    assert hash_fraction("cats/c1.jpg") == 0.24344633352575346
    assert hash_fraction("a/b.jpg", salt="s") == 0.02242822599449898


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, [("", "all")]),
        ({"test_ratio": 0.3}, [("", "all")]),
        (
            {"train_ratio": 0.8, "test_ratio": 0.1},
            [("_test", "test"), ("_val", "val"), ("_train", "train")],
        ),
        ({"train_ratio": 0.8}, [("_val", "val"), ("_train", "train")]),
        ({"train_ratio": 0.7, "test_ratio": 0.3}, [("_test", "test"), ("_train", "train")]),
        ({"train_ratio": 0.6, "test_ratio": 0.4}, [("_test", "test"), ("_train", "train")]),
    ],
)
def test_stable_split_names(kwargs, names):
    lists = stable_split(entries(20), **kwargs)
    assert [(s.name, s.split) for s in lists] == names
    assert all(s.chunk is None for s in lists)
    assert sum(len(s) for s in lists) == 20


def test_stable_split_proportions_and_order():
    src = entries(4000)
    lists = {s.split: s for s in stable_split(src, train_ratio=0.7, test_ratio=0.1)}
    assert abs(len(lists["train"]) / 4000 - 0.7) < 0.03
    assert abs(len(lists["test"]) / 4000 - 0.1) < 0.02
    assert abs(len(lists["val"]) / 4000 - 0.2) < 0.03
    for s in lists.values():  # input order kept inside each split
        assert [e.index for e in s.entries] == sorted(e.index for e in s.entries)


def test_stable_split_never_moves_existing_entries():
    def where(lists):
        return {e.path: s.split for s in lists for e in s.entries}

    before = where(stable_split(entries(300), train_ratio=0.8, test_ratio=0.1))
    more = entries(300) + [LstEntry(1000 + i, (0.0,), f"new/{i}.jpg") for i in range(500)]
    after = where(stable_split(more[::-1], train_ratio=0.8, test_ratio=0.1))
    assert {p: after[p] for p in before} == before
    salted = where(stable_split(entries(300), train_ratio=0.8, test_ratio=0.1, salt="v2"))
    assert salted != before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_ratio": 0.8, "test_ratio": 0.3}, "must be <= 1"),
        ({"train_ratio": -1}, r"train_ratio must be in \[0, 1\]"),
        ({"test_ratio": 1.01}, r"test_ratio must be in \[0, 1\]"),
        ({"salt": 3}, "salt must be a string"),
    ],
)
def test_stable_split_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stable_split(entries(3), **kwargs)
