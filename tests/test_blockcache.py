"""The local block cache: keys, versions, atomic entries, LRU eviction past the limit."""

from __future__ import annotations

import os
import time

import pytest

from recordio_core.storage.blockcache import BlockCache, cache_key, object_version


@pytest.mark.parametrize(
    "info, sha, expected",
    [
        ({"size": 10, "ETag": '"abc"'}, None, '10:"abc"'),
        ({"size": 10, "ETag": '"abc"'}, "f" * 64, '10:"abc"'),  # the store's stamp wins
        ({"size": 10, "mtime": 1.5}, None, "10:1.5"),
        ({"size": 10}, "f" * 64, "10:sha256=" + "f" * 64),
        ({"size": 10}, None, "10:sha256="),
    ],
)
def test_object_version(info, sha, expected):
    assert object_version(info, sha) == expected


def test_keys_differ_by_url_version_and_range():
    base = cache_key("s3://b/x.rec", "1:a", 0, 10)
    assert base == cache_key("s3://b/x.rec", "1:a", 0, 10)
    others = {
        cache_key("s3://b/y.rec", "1:a", 0, 10),
        cache_key("s3://b/x.rec", "1:b", 0, 10),
        cache_key("s3://b/x.rec", "1:a", 0, 11),
        cache_key("s3://b/x.rec", "1:a", 1, 10),
    }
    assert base not in others and len(others) == 4


def test_get_put_and_wrong_sized_entries(tmp_path):
    cache = BlockCache(tmp_path / "c")
    assert cache.get("k1") is None and cache.misses == 1
    cache.put("k1", b"hello")
    assert cache.get("k1") == b"hello" and cache.get("k1", 5) == b"hello"
    assert cache.get("k1", 6) is None  # a damaged entry is dropped
    assert not (tmp_path / "c" / "k1.blk").exists()
    assert [p.name for p in (tmp_path / "c").iterdir()] == []


def test_least_recently_used_entries_go_first(tmp_path):
    cache = BlockCache(tmp_path, limit_bytes=30)
    for i, key in enumerate(("a", "b", "c")):
        cache.put(key, bytes(10))
        os.utime(tmp_path / f"{key}.blk", (100 + i, 100 + i))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", bytes(10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.blk", "c.blk", "d.blk"]
    assert cache.evictions == 1 and cache.total_bytes == 30
    cache.put("big", bytes(31))  # larger than the whole cache: not kept
    assert not (tmp_path / "big.blk").exists()


def test_a_second_cache_on_the_folder_counts_what_is_there(tmp_path):
    BlockCache(tmp_path).put("x", bytes(7))
    time.sleep(0.01)
    other = BlockCache(tmp_path, limit_bytes=10)
    assert other.total_bytes == 7
    other.put("y", bytes(7))  # over the limit: the older entry goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.blk"]


def test_limit_is_checked():
    with pytest.raises(ValueError, match="limit_bytes must be a positive integer"):
        BlockCache("/tmp", limit_bytes=0)
