"""The block shuffle and the block cache of the reader, locally and on S3 behind a latency proxy.

Requests are counted at the proxy (never timed): an epoch in block mode costs one ranged GET
per block, several in flight; with a cache a second epoch costs none.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import numpy as np
import pytest
from latency_proxy import LatencyProxy
from reader_data import make_dataset, write_manifest

from recordio_core.reading.reader import ImageRecordIter, ImageRecordReader

SHAPE = (3, 8, 8)


def ids(reader, epoch=None):
    return [int(i) for b in reader.epoch(epoch) for i in b.index[: len(b.index) - b.pad]]


def reader(source, **kw):
    kw.setdefault("data_shape", SHAPE)
    kw.setdefault("batch_size", 5)
    kw.setdefault("round_batch", False)
    kw.setdefault("preprocess_threads", 2)
    return ImageRecordReader(source, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blocks")
    a = make_dataset(str(folder), "train-00000-of-00002", n=40, start_id=0, id_step=1, seed=1)
    b = make_dataset(str(folder), "train-00001-of-00002", n=30, start_id=1000, id_step=1, seed=2)
    manifest = write_manifest(str(folder), {"train": [a, b]})
    return folder, a, b, manifest


# -------------------------------------------------------------------- local files, block mode
BLOCK = dict(shuffle=True, shuffle_mode="block", block_bytes=3000, shuffle_buffer=16, seed=4)


def test_block_epochs_cover_everything_once_and_are_seeded(data):
    _, a, b, _ = data
    everything = sorted(a.ids + b.ids)
    with reader([a.rec, b.rec], **BLOCK) as r:
        assert r.shuffle_mode == "block" and r.blocks is not None and len(r.blocks) >= 8
        assert max(blk.records for blk in r.blocks) <= 16 // 4  # the buffer spans >= 4 blocks
        e0, e1 = ids(r), ids(r)
    with reader([a.rec, b.rec], batch_size=7, preprocess_threads=1, **BLOCK) as r:
        again, e1_again = ids(r, 0), ids(r, 1)
    assert sorted(e0) == sorted(e1) == everything
    assert e0 != everything and e0 != e1
    assert again == e0 and e1_again == e1  # a function of (seed, epoch) only
    with reader([a.rec, b.rec], **dict(BLOCK, seed=5)) as r:
        assert ids(r, 0) != e0


def test_block_mode_reads_blocks_in_the_epochs_order_through_a_bounded_buffer(data):
    from recordio_core.reading.shuffle import block_order

    _, a, b, _ = data
    everything = a.ids + b.ids  # index order
    with reader([a.rec, b.rec], **BLOCK) as r:
        for epoch in (0, 1):
            got = ids(r, epoch)
            order = block_order(len(r.blocks), BLOCK["seed"], epoch)
            stream = [everything[i] for k in order for i in range(r.blocks[k].lo, r.blocks[k].hi)]
            where = {rid: n for n, rid in enumerate(stream)}
            # nothing comes out before it was read, or more than a buffer ahead of its turn
            assert all(n >= where[rid] - BLOCK["shuffle_buffer"] for n, rid in enumerate(got))
            assert got != stream


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_block_parts_are_disjoint_and_complete(data, parts):
    _, a, b, _ = data
    seen: list[int] = []
    for k in range(parts):
        with reader([a.rec, b.rec], num_parts=parts, part_index=k, **BLOCK) as r:
            got = ids(r)
            assert len(got) == r.num_records
            seen += got
    assert sorted(seen) == sorted(a.ids + b.ids)


def test_global_mode_is_unchanged_for_local_files(data):
    _, a, b, _ = data
    order = np.random.default_rng([9, 0]).permutation(len(a.ids) + len(b.ids))
    expected = [(a.ids + b.ids)[i] for i in order]
    with reader([a.rec, b.rec], shuffle=True, seed=9) as r:  # auto: local -> global
        assert r.shuffle_mode == "global" and r.blocks is None
        assert ids(r) == expected
    with reader([a.rec, b.rec], shuffle=True, seed=9, shuffle_mode="global") as r:
        assert ids(r) == expected


def test_block_records_and_labels_match_global(data):
    _, a, b, manifest = data
    kw = dict(split="train", dtype="uint8", seed=2)
    with reader(manifest, shuffle=True, shuffle_mode="global", **kw) as r:
        by_id = {
            int(i): (d, lab)
            for bt in r
            for i, d, lab in zip(bt.index, bt.data, bt.label, strict=True)
        }
    with reader(manifest, **dict(BLOCK, **kw)) as r:
        for bt in r:
            for i, d, lab in zip(bt.index, bt.data, bt.label, strict=True):
                np.testing.assert_array_equal(d, by_id[int(i)][0])
                assert lab == by_id[int(i)][1]


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(shuffle_mode="random"), "shuffle_mode must be 'auto'"),
        (dict(shuffle_buffer=0), "shuffle_buffer must be an integer >= 1"),
        (dict(block_bytes=0), "block_bytes must be an integer >= 1"),
        (dict(prefetch_blocks=0), "prefetch_blocks must be an integer >= 1"),
        (dict(prefetch_blocks=65), "prefetch_blocks must be at most 64"),
        (dict(cache_limit_bytes=10), "cache_limit_bytes needs cache_dir"),
        (dict(cache_dir="/tmp/x", cache_limit_bytes=10), "must be at least block_bytes"),
        (dict(cache_dir="s3://b/cache"), "cache_dir must be a local folder"),
        (dict(cache_dir=""), "cache_dir must be a local folder"),
    ],
)
def test_block_options_are_checked_up_front(data, kw, match):
    _, a, _, _ = data
    with pytest.raises(ValueError, match=match):
        reader(a.rec, **kw)


def test_explicit_modes_need_an_index(data):
    _, a, _, _ = data
    with pytest.raises(ValueError, match="shuffle_mode='block' needs an .idx"):
        reader(a.rec, shuffle=True, shuffle_mode="block", use_index=False)
    with reader(a.rec, shuffle=True, use_index=False) as r:  # auto: MXNet's chunk shuffle
        assert r.shuffle_mode == "chunk" and sorted(ids(r)) == a.ids


def test_memory_filesystem_counts_as_remote(data):
    import fsspec

    _, a, _, _ = data
    fs = fsspec.filesystem("memory")
    for path in (a.rec, a.idx):
        with open(path, "rb") as f:
            fs.pipe(f"/blocks/{os.path.basename(path)}", f.read())
    url = "memory://blocks/" + os.path.basename(a.rec)
    with reader(url, shuffle=True, block_bytes=3000, shuffle_buffer=16, seed=4) as r:
        assert r.shuffle_mode == "block"
        assert sorted(ids(r)) == a.ids
    with reader(url) as r:  # sequential, in blocks
        assert r.blocks is not None and ids(r) == a.ids


# ------------------------------------------------------------------------ S3 behind the proxy
@pytest.fixture
def remote(s3_server, s3_bucket, data):
    """The two shards and their manifest on S3; storage options through a 30 ms proxy."""
    folder, a, b, manifest = data
    fs = s3_server.fs()
    for d in (a, b):
        for path in (d.rec, d.idx, d.lst):
            fs.put(path, s3_server.url(s3_bucket, "ds", os.path.basename(path)))
    fs.put(manifest, s3_server.url(s3_bucket, "ds", "manifest.json"))
    up = urlsplit(s3_server.endpoint_url)
    with LatencyProxy(up.hostname, up.port, latency=0.03) as proxy:
        so = dict(s3_server.storage_options, endpoint_url=proxy.url)
        yield proxy, so, s3_server.url(s3_bucket, "ds", "manifest.json")


@pytest.mark.slow
def test_remote_shuffle_is_a_few_concurrent_block_reads(remote, data):
    proxy, so, manifest = remote
    _, a, b, _ = data
    kw = dict(shuffle=True, block_bytes=3000, shuffle_buffer=16, seed=4, prefetch_blocks=4)
    with ImageRecordIter(
        path_imgrec=manifest, split="train", storage_options=so, data_shape=SHAPE,
        batch_size=5, round_batch=False, **kw,
    ) as r:  # fmt: skip
        assert r.shuffle_mode == "block"  # auto, remote
        proxy.reset_stats()
        got = ids(r)
        stats = proxy.stats()
        assert len(r.blocks) >= 8
        assert stats["requests"] == len(r.blocks)  # one ranged GET per block, not per record
        assert 2 <= stats["max_in_flight"] <= 4  # fetched ahead, concurrently, bounded
    assert sorted(got) == sorted(a.ids + b.ids)
    with reader([a.rec, b.rec], shuffle_mode="block", **kw) as r:
        assert ids(r) == got  # the same order as the same blocks read locally


@pytest.mark.slow
def test_remote_sequential_read_is_in_blocks(remote, data):
    proxy, so, manifest = remote
    _, a, b, _ = data
    with reader(manifest, split="train", storage_options=so, block_bytes=20000) as r:
        proxy.reset_stats()
        assert ids(r) == a.ids + b.ids
        assert proxy.stats()["requests"] == len(r.blocks) <= 6


@pytest.mark.slow
def test_cache_makes_later_epochs_request_free(remote, data, tmp_path, s3_server):
    proxy, so, manifest = remote
    _, a, b, _ = data
    kw = dict(split="train", storage_options=so, shuffle=True, block_bytes=3000, seed=1)
    kw.update(shuffle_buffer=16, cache_dir=str(tmp_path / "cache"))
    with reader(manifest, **kw) as r:
        proxy.reset_stats()
        e0 = ids(r)
        assert proxy.stats()["requests"] == len(r.blocks)
        proxy.reset_stats()
        e1 = ids(r)
        assert proxy.stats()["requests"] == 0  # everything from the cache
        assert r.cache is not None and r.cache.hits == len(r.blocks)
    assert sorted(e0) == sorted(e1) == sorted(a.ids + b.ids) and e0 != e1
    with reader(manifest, **kw) as r:  # a new reader: metadata only, no block reads
        proxy.reset_stats()
        assert ids(r, 0) == e0
        assert proxy.stats()["requests"] == 0

    # A shard replaced in place (same name, other records): its cached blocks are not used.
    other = make_dataset(str(tmp_path / "new"), "x", n=12, start_id=5000, id_step=1, seed=7)
    base = manifest.rpartition("/")[0]
    fs = s3_server.fs()
    fs.put(other.rec, f"{base}/{os.path.basename(b.rec)}")
    fs.put(other.idx, f"{base}/{os.path.basename(b.idx)}")
    with reader([f"{base}/{os.path.basename(d.rec)}" for d in (a, b)], **dict(kw, split=None)) as r:
        proxy.reset_stats()
        got = ids(r)
        fresh = sum(1 for blk in r.blocks if blk.shard == 1)
        assert proxy.stats()["requests"] == fresh  # shard 0 from the cache, shard 1 fetched
    assert sorted(got) == sorted(a.ids + other.ids)


@pytest.mark.slow
def test_cache_stays_within_its_limit(remote, data, tmp_path):
    proxy, so, manifest = remote
    kw = dict(split="train", storage_options=so, shuffle=True, block_bytes=3000, seed=1)
    folder = tmp_path / "cache"
    with reader(
        manifest, shuffle_buffer=16, cache_dir=str(folder), cache_limit_bytes=9000, **kw
    ) as r:
        ids(r)
        ids(r)
        on_disk = sum(p.stat().st_size for p in folder.iterdir())
        assert 0 < on_disk <= 9000
        assert r.cache is not None and r.cache.evictions > 0
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files


@pytest.mark.slow
def test_opening_a_remote_reader_reads_the_indexes_concurrently(remote, data):
    proxy, so, manifest = remote
    proxy.reset_stats()
    with reader(manifest, split="train", storage_options=so, shuffle=True) as r:
        assert len(r.shards) == 2 and r.num_records == 70
        assert proxy.stats()["max_in_flight"] >= 2  # one index per thread, not one after another
