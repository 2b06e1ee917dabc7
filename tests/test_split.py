"""recordio_core.building.split: im2rec.py's make_list lists and names, and the stable hash
split."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordio_core.building.plan import num_shards_for, plan_split
from recordio_core.building.split import (
    SplitList,
    hash_fraction,
    hash_order,
    im2rec_split,
    order_digests,
    stable_split,
)
from recordio_core.format.lst import LstEntry


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
    listed = stable_split(src, train_ratio=0.7, test_ratio=0.1, order="listing")
    for s in listed:  # order="listing": input order kept inside each split
        assert [e.index for e in s.entries] == sorted(e.index for e in s.entries)
        hashed = lists[s.split]  # the default: the same entries, in hash order
        assert list(hashed.entries) == hash_order(s.entries)
        assert hashed.name == s.name and list(hashed.entries) != list(s.entries)


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
        ({"order": "random"}, r"order must be one of \('hash', 'listing'\), got 'random'"),
        ({"order": None}, "order must be one of"),
        ({"seed": "100"}, "seed must be an integer, got '100'"),
        ({"seed": True}, "seed must be an integer"),
        ({"seed": 1.0, "order": "listing"}, "seed must be an integer"),
    ],
)
def test_stable_split_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stable_split(entries(3), **kwargs)


# --------------------------------------------------------------------------- hash order
@pytest.mark.parametrize(
    ("path", "seed", "digest"),
    [
        # pinned: the order of records in every shard (and so its name) must never change
        # between versions, machines or processes
        ("cats/c1.jpg", 100, "abc61eae995933ef"),
        ("cats/c1.jpg", 0, "75af7cd3c23084ea"),
        ("a/b.jpg", 100, "107fa593329a08ce"),
        ("é/ü 1.jpg", -3, "611a61b1b9555633"),
    ],
)
def test_order_digests_pinned_values(path, seed, digest):
    assert order_digests([path], seed).hex() == digest
    assert order_digests([path, path], seed).hex() == digest * 2


def _six():
    return [LstEntry(i, (float(i // 3),), f"c{i // 3}/{i % 3}.jpg") for i in range(6)]


@pytest.mark.parametrize(
    ("src", "seed", "expected"),
    [
        ([], 100, []),
        (_six()[:1], 100, [0]),
        (_six(), 100, [0, 5, 3, 2, 4, 1]),
        (_six()[::-1], 100, [0, 5, 3, 2, 4, 1]),  # a function of the paths, not their order
        (_six(), 1, [5, 4, 3, 2, 0, 1]),  # another seed, another order
        # the same path twice (a .lst may): both kept, in input order, ids untouched
        (_six()[:2] + [LstEntry(9, (7.0,), "c0/0.jpg")], 100, [0, 9, 1]),
        ([LstEntry(9, (7.0,), "c0/0.jpg")] + _six()[:2], 100, [9, 0, 1]),
    ],
)
def test_hash_order(src, seed, expected):
    got = hash_order(src, seed)
    assert [e.index for e in got] == expected
    assert sorted(got, key=id) == sorted(src, key=id)  # the same objects, none changed


@given(
    st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=40),
    st.lists(st.text(min_size=1, max_size=8), max_size=20),
    st.randoms(use_true_random=False),
    st.integers(-(2**70), 2**70),
)
def test_hash_order_is_stable_under_additions(old, added, rnd, seed):
    """Adding entries anywhere in the listing never changes the relative order of the
    others: each lands somewhere in between."""
    kept = set(old)
    added = [p for p in added if p not in kept]  # new paths (repeated ones too)
    before = [e.path for e in hash_order([LstEntry(i, (0.0,), p) for i, p in enumerate(old)], seed)]
    grown = [LstEntry(i, (0.0,), p) for i, p in enumerate(old + added)]
    rnd.shuffle(grown)
    after = [e.path for e in hash_order(grown, seed)]
    assert [p for p in after if p in kept] == before
    assert len(after) == len(grown)


def test_hash_order_is_the_same_in_another_process():
    """No Python `hash()`: another process, with another string-hash seed, agrees."""
    code = (
        "from recordio_core.building.split import order_digests;"
        "print(order_digests([f'c{i}/{i}.jpg' for i in range(50)], 42).hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == order_digests([f"c{i}/{i}.jpg" for i in range(50)], 42).hex()


def test_hash_order_is_unrelated_to_the_split_hash():
    """The order inside a split says nothing about the split hash (a separate hash): no trend
    of `hash_fraction` along the train list, which the split hash itself would make."""
    (_, _, train) = stable_split(entries(4000), train_ratio=0.7, test_ratio=0.1)
    fractions = [hash_fraction(e.path) for e in train.entries]
    n = len(fractions)
    ranks = {v: r for r, v in enumerate(sorted(fractions))}
    mean = (n - 1) / 2
    cov = sum((i - mean) * (ranks[v] - mean) for i, v in enumerate(fractions))
    rho = cov / sum((i - mean) ** 2 for i in range(n))  # Spearman's rank correlation
    assert abs(rho) < 0.05  # measured 0.008 (2,812 entries); unrelated ranks: sd 0.019


# 10 class folders of 300 images, listed as the folder listing lists them: class after class
CLASSES = [
    LstEntry(c * 300 + i, (float(c),), f"class{c}/img{i:04d}.jpg")
    for c in range(10)
    for i in range(300)
]


def first_shard_labels(order: str, **kwargs) -> list[int]:
    """The labels of the first 1,000 records of the split's first shard (1,000 per shard)."""
    *_, split = stable_split(CLASSES, order=order, **kwargs)
    n = len(split.entries)
    first = plan_split(split.split, n, num_shards_for(n, records_per_shard=1000))[0]
    return [int(e.labels[0]) for e in split.entries[first.start : first.stop]][:1000]


def window_shares(labels: list[int], width: int = 100) -> tuple[float, int]:
    """Over every window of `width` consecutive records: the largest share of one class, and
    the fewest records any of the 10 classes has."""
    windows = [Counter(labels[i : i + width]) for i in range(len(labels) - width + 1)]
    return (
        max(max(w.values()) for w in windows) / width,
        min(min(w.get(c, 0) for c in range(10)) for w in windows),
    )


@pytest.mark.parametrize(
    ("kwargs", "records", "max_share", "fewest"),
    [
        # measured: 1,000 records, every window of 100 holds 2 to 21 of each class
        ({}, 1000, 0.21, 2),
        ({"seed": 7}, 1000, 0.22, 2),
        # train of 0.8/0.1 (2,416 records, 3 shards of 806): 3 to 20 of each class
        ({"train_ratio": 0.8, "test_ratio": 0.1}, 806, 0.20, 3),
    ],
)
def test_hash_order_mixes_classes_in_the_first_records(kwargs, records, max_share, fewest):
    """Any run of records is a near-uniform class mix: what a sequential reader gets. A
    uniformly random order gives about 0.2 as the largest share of 900 windows of 100 (a
    binomial(100, 0.1) count, maximised over classes and windows); the order is a fixed
    function of the paths and seed, so the bounds are the measured values, with a margin."""
    labels = first_shard_labels("hash", **kwargs)
    assert len(labels) == records
    counts = Counter(labels)
    assert sorted(counts) == list(range(10))
    assert max(counts.values()) < 1.25 * records / 10 and min(counts.values()) > 0.75 * records / 10
    share, least = window_shares(labels)
    assert share <= max_share < 0.25 and least >= fewest >= 1


def test_listing_order_packs_class_after_class():
    """The old order, still there with order="listing": the first 1,000 records hold 4 of the 10
    classes, each window of 100 holds at most two of them and mostly one only."""
    labels = first_shard_labels("listing")
    assert sorted(Counter(labels)) == [0, 1, 2, 3]
    share, least = window_shares(labels)
    assert share == 1.0 and least == 0
