"""Splitting a list of entries into train/val/test lists.

Two modes:

- `im2rec_split`: exactly im2rec.py's `make_list` — seeded shuffle (`random.seed(100)` then
  `random.shuffle`), cut into `chunks` pieces of `ceil(N / chunks)` entries, each piece cut into
  test / train / val by `int(chunk_size * ratio)` (note: the *nominal* chunk size, also for a
  shorter last chunk), and im2rec's file names (`prefix[_k][_train|_val|_test].lst`; with
  `train_ratio == 1.0` one list `prefix[_k].lst` and `test_ratio` ignored). Lists are returned
  in the order im2rec.py writes them (test, val, train), empty ones included, because im2rec.py
  writes empty files too.
- `stable_split`: each entry's split is decided by a hash of its relative path (and a salt), so
  adding images never moves existing ones between splits. Same list names as im2rec.py with
  one chunk. Inside each split the entries are in `hash_order` (`order="hash"`, the default)
  or keep their input order (`order="listing"`).

`hash_order` sorts entries by a seeded hash of their path: a class-folder listing comes out
as a near-uniform mix of classes in any run of consecutive entries, and adding an entry puts
it somewhere without changing the relative order of the others. The hash (blake2b, personal
`recflow-order`, keyed by the seed) is unrelated to the split's (sha256 of salt and path), so
the order inside a split says nothing about which entries went to the other splits.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from recordio_core.format.errors import check_int
from recordio_core.format.lst import LstEntry

SPLITS = ("all", "train", "val", "test")
ORDERS = ("hash", "listing")
Order = Literal["hash", "listing"]
_ORDER_PERSON = b"recflow-order"  # blake2b's personalisation: this hash is for the order only
_SUFFIX = {"all": "", "train": "_train", "val": "_val", "test": "_test"}


@dataclass(frozen=True)
class SplitList:
    """One output list: `name` is the im2rec file-name suffix ("", "_train", "_0_val", ...)."""

    name: str
    split: str
    chunk: int | None
    entries: tuple[LstEntry, ...]

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.chunk is not None and self.chunk < 0:
            raise ValueError(f"chunk must be None or >= 0, got {self.chunk!r}")

    def __len__(self) -> int:
        return len(self.entries)


def _check_ratio(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def im2rec_split(
    entries: Sequence[LstEntry],
    *,
    chunks: int = 1,
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    shuffle: bool = True,
    seed: int = 100,
) -> list[SplitList]:
    """im2rec.py's `make_list`: the same lists, in the same order, with the same file names.

    Ratios must be in [0, 1]. As in im2rec.py, when `train_ratio + test_ratio > 1` the train list
    gets what is left after the test list (no val list), and rounding down can leave a few
    entries in no list when the ratios add up to 1.
    """
    check_int("chunks", chunks, 1)
    train_ratio = _check_ratio("train_ratio", train_ratio)
    test_ratio = _check_ratio("test_ratio", test_ratio)
    items = list(entries)
    if shuffle:
        random.Random(seed).shuffle(items)
    n = len(items)
    chunk_size = (n + chunks - 1) // chunks
    out: list[SplitList] = []
    for i in range(chunks):
        chunk = items[i * chunk_size : (i + 1) * chunk_size]
        str_chunk = f"_{i}" if chunks > 1 else ""
        cid = i if chunks > 1 else None
        sep = int(chunk_size * train_ratio)
        sep_test = int(chunk_size * test_ratio)
        if train_ratio == 1.0:
            out.append(SplitList(str_chunk, "all", cid, tuple(chunk)))
            continue
        if test_ratio:
            out.append(SplitList(str_chunk + "_test", "test", cid, tuple(chunk[:sep_test])))
        if train_ratio + test_ratio < 1.0:
            out.append(SplitList(str_chunk + "_val", "val", cid, tuple(chunk[sep_test + sep :])))
        out.append(
            SplitList(str_chunk + "_train", "train", cid, tuple(chunk[sep_test : sep_test + sep]))
        )
    return out


def hash_fraction_of(salt: str = "") -> Callable[[str], float]:
    """`hash_fraction` with `salt` fixed, its prefix hashed once (for many paths)."""
    copy = hashlib.sha256(f"{salt}\0".encode()).copy
    scale = float(1 << 64)

    def fraction(path: str) -> float:
        hasher = copy()
        hasher.update(path.encode())
        return int.from_bytes(hasher.digest()[:8], "big") / scale

    return fraction


def hash_fraction(path: str, salt: str = "") -> float:
    """A number in [0, 1) fixed by `salt` and `path` (sha256 of `salt`, NUL, `path`; the same
    on every machine)."""
    return hash_fraction_of(salt)(path)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return seed


def _check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    return order


def order_digest_of(seed: int = 100) -> Callable[[str], bytes]:
    """A function of a path giving its 8-byte order digest (`order_digests` of one path)."""
    _check_seed(seed)
    copy = hashlib.blake2b(f"{seed}\0".encode(), digest_size=8, person=_ORDER_PERSON).copy

    def digest(path: str) -> bytes:
        h = copy()
        h.update(path.encode())
        return h.digest()

    return digest


def order_digests(paths: Sequence[str], seed: int = 100) -> bytes:
    """8 bytes per path, concatenated: blake2b of the path, keyed by `seed` (its decimal text)
    and personalised `recflow-order`. The same on every machine and in every process (no
    Python `hash()`), and unrelated to `hash_fraction`'s sha256."""
    digest = order_digest_of(seed)
    return b"".join(map(digest, paths))


def hash_order(entries: Sequence[LstEntry], seed: int = 100) -> list[LstEntry]:
    """`entries` sorted by `order_digests` of their paths (big-endian, as unsigned 64-bit).

    A function of each entry's path and `seed` only, so adding or removing entries never
    changes the relative order of the others; entries with the same path (a `.lst` may
    repeat one) keep their input order, as would two paths with the same 64-bit digest (odds
    about 3e-8 among a million paths). Indexes and labels are untouched. About 0.06 s of CPU
    per 100,000 entries (0.75 s per million), with 8 bytes of key each.
    """
    items = list(entries)
    keys = np.frombuffer(order_digests([e.path for e in items], seed), dtype=">u8")
    return [items[i] for i in np.argsort(keys, kind="stable").tolist()]


def stable_split_names(train_ratio: float = 1.0, test_ratio: float = 0.0) -> list[tuple[str, str]]:
    """`(list name, split)` of a stable split's lists, in `stable_split`'s order: `("", "all")`
    alone when `train_ratio == 1.0`, else `("_test", "test")` when `test_ratio > 0`,
    `("_val", "val")` when the ratios add up to less than 1 beyond float rounding, and
    `("_train", "train")` always. Checks the ratios (`ValueError`)."""
    train_ratio = _check_ratio("train_ratio", train_ratio)
    test_ratio = _check_ratio("test_ratio", test_ratio)
    if train_ratio + test_ratio > 1.0 + 1e-12 and train_ratio != 1.0:
        raise ValueError(
            f"train_ratio + test_ratio must be <= 1 for a stable split, got "
            f"{train_ratio} + {test_ratio}"
        )
    if train_ratio == 1.0:
        return [("", "all")]
    names = [("_test", "test")] if test_ratio else []
    if train_ratio + test_ratio < 1.0 - 1e-12:
        names.append(("_val", "val"))
    return [*names, ("_train", "train")]


def stable_split_of(
    train_ratio: float = 1.0, test_ratio: float = 0.0, salt: str = ""
) -> Callable[[str], int]:
    """A function of a path giving its list's position in `stable_split_names(train_ratio,
    test_ratio)`: `hash_fraction(path, salt) < test_ratio` -> test, then train, then val. One
    entry at a time, so a listing streamed in partitions splits exactly as `stable_split`."""
    names = [split for _, split in stable_split_names(train_ratio, test_ratio)]
    if not isinstance(salt, str):
        raise ValueError(f"salt must be a string, got {salt!r}")
    if names == ["all"]:
        return lambda path: 0
    test = names.index("test") if "test" in names else -1
    train = names.index("train")
    val = names.index("val") if "val" in names else train
    cut = test_ratio + train_ratio
    fraction = hash_fraction_of(salt)

    def which(path: str) -> int:
        h = fraction(path)
        if h < test_ratio:
            return test
        return train if h < cut else val

    return which


def stable_split(
    entries: Sequence[LstEntry],
    *,
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    salt: str = "",
    order: Order = "hash",
    seed: int = 100,
) -> list[SplitList]:
    """Split by a hash of each entry's path: `h < test_ratio` -> test, then train, then val
    (`stable_split_of`).

    Adding or removing other images never moves an entry to another split. With
    `train_ratio == 1.0` everything is one list named "" (split "all"). Otherwise the lists are
    named like im2rec.py's ("_test" when `test_ratio > 0`, "_val" when the ratios add up to less
    than 1 beyond float rounding, "_train" always), returned in that order, possibly empty
    (`stable_split_names`). Requires `train_ratio + test_ratio <= 1`.

    Inside each list: `order="hash"` puts the entries in `hash_order(entries, seed)` (classes
    mixed; adding images never reorders the others); `order="listing"` keeps their input order.
    """
    names = stable_split_names(train_ratio, test_ratio)
    which = stable_split_of(train_ratio, test_ratio, salt)
    _check_order(order)
    _check_seed(seed)
    parts: list[list[LstEntry]] = [[] for _ in names]
    for entry in entries:
        parts[which(entry.path)].append(entry)
    # each part sorted on its own: the loop above then walks the entries in input order (in
    # memory order), not scattered; the relative order is the same as sorting them all first
    return [
        SplitList(name, split, None, _ordered(part, order, seed))
        for (name, split), part in zip(names, parts, strict=True)
    ]


def _ordered(entries: Sequence[LstEntry], order: str, seed: int) -> tuple[LstEntry, ...]:
    return tuple(hash_order(entries, seed) if order == "hash" else entries)
