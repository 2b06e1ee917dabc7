"""`dedupe="drop"` in a streaming build (issue 19, `recordio_core.building.stream_dedupe`):
the copies found bucket by bucket of size, and the shards planned and read back without
them, are those of the in-memory `plan_dedupe` (which copy is kept, the duplicate groups,
the rejects), for a folder source and for a `.lst` that lists a path twice."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from recordio_core.building.listing import list_images
from recordio_core.building.plan import auto_records_per_shard, num_shards_for, plan_split
from recordio_core.building.quality import (
    hash_sources,
    plan_dedupe,
    same_size_paths,
    sizes_from_fingerprints,
)
from recordio_core.building.shardkey import fingerprint_size, source_fingerprints
from recordio_core.building.split import stable_split, stable_split_names
from recordio_core.building.stream_dedupe import find_copies, size_ranges, with_drops
from recordio_core.building.stream_list import UNKNOWN_SIZE, list_part, plan_list_parts, size_key
from recordio_core.building.stream_lst import list_lst_part, plan_lst_parts
from recordio_core.building.stream_plan import merge_parts, plan_groups
from recordio_core.building.stream_read import read_group
from recordio_core.format.lst import LstEntry, format_lst, parse_lst

SALT, SEED = "s", 7


def make_tree(root: Path) -> None:
    """Class folders with copies: within a folder, across folders (so across splits), three
    of one file, and files of a shared size but different bytes."""
    rng = random.Random(2)
    blobs = [bytes(rng.randrange(256) for _ in range(40 + i)) for i in range(30)]
    for c in range(6):
        for i in range(12):
            blob = blobs[(c * 2 + i) % 10] if i % 3 == 0 else bytes([c, i]) * (20 + i)
            (root / f"c{c}").mkdir(parents=True, exist_ok=True)
            (root / f"c{c}" / f"im{i:02d}.jpg").write_bytes(blob)
    (root / "c0" / "same-size-a.jpg").write_bytes(b"a" * 77)
    (root / "c1" / "same-size-b.jpg").write_bytes(b"b" * 77)


def in_memory(entries: list[LstEntry], root: str, tr: float, te: float, rps: int | None) -> tuple:
    splits = stable_split(entries, train_ratio=tr, test_ratio=te, salt=SALT, seed=SEED)
    paths = [e.path for s in splits for e in s.entries]
    sizes = sizes_from_fingerprints(source_fingerprints(root, paths))
    plan = plan_dedupe(splits, hash_sources(root, same_size_paths(sizes, paths)))
    known = [sizes[e.path] for s in plan.splits for e in s.entries if e.path in sizes]
    rps = rps or auto_records_per_shard(sum(known), len(known), min_bytes=200_000)
    shards = {}
    for s in plan.splits:
        n = len(s.entries)
        for p in plan_split(s.split, n, num_shards_for(n, records_per_shard=rps)):
            shards[f"{s.split}/{p.name}"] = s.entries[p.start : p.stop]
    dropped = sorted((e.path, e.index, kept) for e, kept in plan.dropped)
    return shards, dropped, list(plan.groups), rps


def streamed(
    listings: list, root: str, stage: str, tr: float, te: float, rps: int | None, tasks: int
):
    names = [split for _, split in stable_split_names(tr, te)]
    merged = merge_parts(listings, names)
    copies = [
        find_copies(root, r, names, stage, i)
        for i, r in enumerate(size_ranges(listings, merged, tasks))
    ]
    net = with_drops(merged, copies)
    rps = rps or auto_records_per_shard(net.known_bytes, net.known_count, min_bytes=200_000)
    shards = {}
    for g in plan_groups(net, rps, 3):
        for planned in read_group(g):
            shards[f"{g.split}/{planned.plan.name}"] = planned.entries
    dropped = sorted(d for c in copies for d in c.dropped)
    groups = sorted((g for c in copies for g in c.groups), key=lambda g: g.paths)
    return shards, dropped, groups, rps


@pytest.mark.parametrize("tasks", [1, 4, 64])
@pytest.mark.parametrize(("tr", "te"), [(1.0, 0.0), (0.6, 0.2)], ids=["all", "60-20"])
@pytest.mark.parametrize("rps", [5, None], ids=["rps5", "auto"])
def test_a_folder_deduped_in_buckets_is_the_in_memory_dedupe(
    tmp_path: Path, tasks: int, tr: float, te: float, rps: int | None
) -> None:
    root = tmp_path / "src"
    make_tree(root)
    want = in_memory(list(list_images(str(root), recursive=True).entries), str(root), tr, te, rps)
    parts = plan_list_parts(str(root), min_parts=1, per_part=1, max_parts=4)
    listings = [
        list_part(str(root), part, str(tmp_path / "stage"), train_ratio=tr, test_ratio=te,
                  salt=SALT, seed=SEED, sizes=True)
        for part in parts
    ]  # fmt: skip
    got = streamed(listings, str(root), str(tmp_path / "stage"), tr, te, rps, tasks)
    assert len(want[1]) >= 6 and len(want[2]) >= 3  # copies were found
    assert got[3] == want[3]  # the shard size (auto: of the images kept)
    assert list(got[0]) == list(want[0]) and got[0] == want[0]
    assert got[1] == want[1]
    assert got[2] == want[2]


def test_a_lst_listing_a_path_twice_keeps_the_first_by_path_and_index(tmp_path: Path) -> None:
    root = tmp_path / "src"
    make_tree(root)
    base = list(list_images(str(root), recursive=True).entries)
    entries = base + [LstEntry(0, (5.0,), base[4].path), LstEntry(0, (6.0,), base[4].path)]
    keys = list(range(len(entries)))
    random.Random(8).shuffle(keys)
    entries = [LstEntry(k, e.labels, e.path) for k, e in zip(keys, entries, strict=True)]
    lst = tmp_path / "u.lst"
    lst.write_text(format_lst(entries))
    want = in_memory(parse_lst(lst.read_text()), str(root), 0.8, 0.1, 4)
    listings = [
        list_lst_part(str(lst), str(root), part, str(tmp_path / "stage"), train_ratio=0.8,
                      test_ratio=0.1, salt=SALT, seed=SEED, sizes=True)
        for part in plan_lst_parts(str(lst), part_bytes=300, min_part_bytes=1)
    ]  # fmt: skip
    got = streamed(listings, str(root), str(tmp_path / "stage"), 0.8, 0.1, 4, 3)
    assert got[0] == want[0] and got[1] == want[1] and got[2] == want[2]
    assert any(p == base[4].path for p, _, _ in got[1])


def test_size_keys_share_a_bucket_per_size_and_unknown_sizes_bucket_0() -> None:
    assert size_key("123:abc") == size_key("123:other") != size_key("124:abc")
    assert size_key("") == size_key("missing") == UNKNOWN_SIZE
    keys = {size_key(f"{n}:x") for n in range(20_000)}
    assert len(keys) == 20_000 and not any(int(k[:3], 16) == 0 for k in keys)
    assert fingerprint_size("77:x") == 77
