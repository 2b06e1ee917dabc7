"""RecordIO, .idx, .lst and atomic writes on S3 (a local moto server, never the internet)."""

from __future__ import annotations

import pytest

from recordio_core.format.errors import RecordIOError
from recordio_core.format.framing import (
    MAGIC_BYTES,
    FileSource,
    find_record_start,
    open_source,
    read_record_at,
)
from recordio_core.format.idx import read_idx, write_idx
from recordio_core.format.lst import LstEntry, read_lst, write_lst
from recordio_core.format.recordio import MXIndexedRecordIO, MXRecordIO, pack, unpack
from recordio_core.storage.fsio import atomic_write, exists, read_bytes

pytestmark = pytest.mark.slow


def records(n: int = 30) -> dict[int, bytes]:
    return {
        i: (b"%05d" % i) * (i * 37 % 200) + (MAGIC_BYTES if i % 3 == 0 else b"") for i in range(n)
    }


def test_indexed_write_and_read_on_s3(s3_server, s3_bucket, tmp_path):
    so = s3_server.storage_options
    idx, rec = s3_server.url(s3_bucket, "ds/a.idx"), s3_server.url(s3_bucket, "ds/a.rec")
    data = records()
    with MXIndexedRecordIO(idx, rec, "w", storage_options=so) as w:
        for key, payload in data.items():
            w.write_idx(key, payload)
    # same bytes as a local file
    local_idx, local_rec = str(tmp_path / "a.idx"), str(tmp_path / "a.rec")
    with MXIndexedRecordIO(local_idx, local_rec, "w") as w:
        for key, payload in data.items():
            w.write_idx(key, payload)
    assert read_bytes(rec, so) == (tmp_path / "a.rec").read_bytes()
    assert read_bytes(idx, so) == (tmp_path / "a.idx").read_bytes()

    with MXIndexedRecordIO(idx, rec, "r", storage_options=so) as r:
        assert r.keys == list(data)
        for key in (29, 0, 17, 3, 3, 28):
            assert r.read_idx(key) == data[key]
    with MXRecordIO(rec, "r", storage_options=so) as r:
        got = []
        while (payload := r.read()) is not None:
            got.append(payload)
    assert got == list(data.values())


def test_writer_streams_in_blocks(s3_server, s3_bucket):
    """The writer uploads parts as it goes (multipart); it never holds the whole file."""
    block = 5 << 20  # S3's minimum part size
    so = {**s3_server.storage_options, "default_block_size": block}
    url = s3_server.url(s3_bucket, "big.rec")
    payload = pack((0, 1.0, 7, 0), bytes(range(256)) * 1024)  # ~256 KB
    w = MXRecordIO(url, "w", storage_options=so)
    peak = 0
    n = 48  # ~12 MB
    for _ in range(n):
        w.write(payload)
        peak = max(peak, w._file.buffer.tell())
    assert w._file.offset is not None and w._file.offset >= block  # parts already uploaded
    w.close()
    assert peak < block + 2 * len(payload)
    with MXRecordIO(url, "r", storage_options=so) as r:
        count = 0
        while (got := r.read()) is not None:
            assert unpack(got)[0].id == 7
            count += 1
    assert count == n


def test_open_source_on_s3_and_resync(s3_server, s3_bucket):
    so = s3_server.storage_options
    url = s3_server.url(s3_bucket, "r.rec")
    with MXRecordIO(url, "w", storage_options=so) as w:
        for i in range(5):
            w.write(bytes([i]) * 10)
    src = open_source(url, so)
    try:
        assert isinstance(src, FileSource)
        assert src.size == 5 * 20
        assert find_record_start(src, 1) == 20
        with pytest.raises(RecordIOError, match=f"{url}: no RecordIO magic word at offset 8"):
            read_record_at(src, 8)
    finally:
        src.close()


def test_random_reads_on_s3_fetch_one_range_each(s3_server, s3_bucket):
    so = s3_server.storage_options
    idx, rec = s3_server.url(s3_bucket, "w.idx"), s3_server.url(s3_bucket, "w.rec")
    with MXIndexedRecordIO(idx, rec, "w", storage_options=so) as w:
        for i in range(40):
            w.write_idx(i, bytes([i]) * 50_000)
    src = open_source(rec, so)
    try:
        offsets = [off for _, off in read_idx(idx, so)]
        for i in (39, 3, 17, 0, 25):
            assert read_record_at(src, offsets[i])[0] == bytes([i]) * 50_000
        assert src.requests == 5
    finally:
        src.close()


def test_lst_and_idx_on_s3(s3_server, s3_bucket):
    so = s3_server.storage_options
    lst = s3_server.url(s3_bucket, "lists/train.lst")
    entries = [LstEntry(0, (1.0,), "a/x.jpg"), LstEntry(4, (0.0, 2.0), "b/y.jpg")]
    write_lst(lst, entries, so)
    assert read_lst(lst, so) == entries
    idx = s3_server.url(s3_bucket, "lists/train.idx")
    write_idx(idx, [(0, 0), (4, 1024)], so)
    assert read_idx(idx, so) == [(0, 0), (4, 1024)]


class Boom(Exception):
    pass


def test_atomic_write_on_s3(s3_server, s3_bucket):
    so = s3_server.storage_options
    url = s3_server.url(s3_bucket, "out/manifest.json")
    with atomic_write(url, so) as f:
        f.write(b"{}")
        assert not exists(url, so)  # invisible until the upload completes
    assert read_bytes(url, so) == b"{}"
    failed = s3_server.url(s3_bucket, "out/failed.json")
    with pytest.raises(Boom), atomic_write(failed, so) as f:
        f.write(b"partial")
        raise Boom
    assert not exists(failed, so)
    assert s3_server.fs().ls(f"{s3_bucket}/out", detail=False) == [f"{s3_bucket}/out/manifest.json"]


def test_fixture_unpacks_as_endpoint_and_options(s3_server):
    endpoint, so = s3_server
    assert endpoint.startswith("http://127.0.0.1:")
    assert so["endpoint_url"] == endpoint
    name = s3_server.make_bucket()
    assert s3_server.fs().exists(name)
