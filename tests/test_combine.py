"""Combined `.idx` for DALI and merging shards, locally, against MXNet, and on S3 (moto)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from oracle import run_mxnet_json
from reader_data import make_dataset, make_raw_records

from recordio_core.building.combine import combined_index, merge_shards, write_combined_index
from recordio_core.format.errors import RecordIOError
from recordio_core.format.framing import open_source, read_record_at
from recordio_core.format.idx import read_idx
from recordio_core.format.recordio import IRHeader, MXIndexedRecordIO, MXRecordIO, pack
from recordio_core.reading.reader import ImageRecordReader


@pytest.fixture
def three(tmp_path):
    a = make_dataset(str(tmp_path), "a", n=5, start_id=0, seed=1)
    b = make_dataset(str(tmp_path), "b", n=4, start_id=100, seed=2)
    c = make_dataset(str(tmp_path), "c", n=3, start_id=200, seed=3)
    os.remove(c.idx)  # one shard without an index: scanned
    return tmp_path, a, b, c


def _by_shard(d) -> dict[int, bytes]:
    r = MXRecordIO(d.rec, "r")
    out = {}
    while (payload := r.read()) is not None:
        out[int.from_bytes(payload[8:16], "little")] = payload
    r.close()
    return out


def test_combined_index_equals_reading_shards_one_by_one(three):
    tmp, a, b, c = three
    out = str(tmp / "all.idx")
    combined = write_combined_index([a.rec, b.rec, c.rec], out)
    assert combined.recs == (a.rec, b.rec, c.rec)
    assert read_idx(out) == list(combined.pairs)
    expected = {**_by_shard(a), **_by_shard(b), **_by_shard(c)}
    # what DALI does: offsets into the concatenation of the files, in the order given
    concat = tmp / "concat.bin"
    concat.write_bytes(b"".join(Path(p).read_bytes() for p in combined.recs))
    src = open_source(str(concat))
    try:
        for key, offset in combined.pairs:
            payload, _ = read_record_at(src, offset)
            assert payload == expected[key]
            shard, local = combined.locate(offset)
            assert [a, b, c][shard].rec == combined.recs[shard]
            assert local >= 0
    finally:
        src.close()
    assert [k for k, _ in combined.pairs] == a.ids + b.ids + c.ids
    offsets = [off for _, off in combined.pairs]
    assert offsets == sorted(offsets) and offsets[-1] < combined.total_bytes


def test_duplicate_keys_need_renumbering(tmp_path):
    a = make_dataset(str(tmp_path), "a", n=3)
    b = make_dataset(str(tmp_path), "b", n=3)
    with pytest.raises(ValueError, match="key 0 is in both .*a.rec and .*b.rec.*renumber"):
        combined_index([a.rec, b.rec])
    combined = combined_index([a.rec, b.rec], keys="renumber")
    assert [k for k, _ in combined.pairs] == list(range(6))
    with pytest.raises(ValueError, match="keys must be"):
        combined_index([a.rec], keys="drop")  # type: ignore[arg-type]


def test_truncated_shard_is_refused(tmp_path):
    a = make_dataset(str(tmp_path), "a", n=2)
    with open(a.rec, "ab") as f:
        f.write(b"xy")
    with pytest.raises(RecordIOError, match="not a multiple of 4"):
        combined_index([a.rec])


def test_merge_local_reads_like_the_shards(three):
    tmp, a, b, c = three
    result = merge_shards([a.rec, b.rec, c.rec], str(tmp / "merged"))
    assert result.records == 12 and result.copied_server_side == 0
    with open(result.rec, "rb") as f:
        merged = f.read()
    assert merged == b"".join(Path(p).read_bytes() for p in (a.rec, b.rec, c.rec))
    expected = {**_by_shard(a), **_by_shard(b), **_by_shard(c)}
    r = MXIndexedRecordIO(result.idx, result.rec, "r")
    for key in a.ids + b.ids + c.ids:
        assert r.read_idx(key) == expected[key]
    r.close()
    assert result.lst and Path(result.lst).read_text().count("\n") == 12
    with ImageRecordReader(
        tmp / "merged.rec",
        data_shape=(3, 8, 8),
        batch_size=12,
        path_imglist=result.lst,
        label_width=4,
    ) as reader:
        (batch,) = list(reader)
    np.testing.assert_array_equal(batch.label, np.asarray(a.labels4 + b.labels4 + c.labels4))
    with pytest.raises(ValueError, match="is one of the inputs"):
        merge_shards([a.rec, result.rec], str(tmp / "merged"))


MX_SCRIPT = r"""
import hashlib, json, sys
from mxnet import recordio
r = recordio.MXIndexedRecordIO(sys.argv[1], sys.argv[2], "r")
print(json.dumps({str(k): hashlib.sha256(r.read_idx(k)).hexdigest() for k in r.keys}))
"""


@pytest.mark.mxnet
def test_merged_rec_reads_in_mxnet(three, mxnet_python):
    tmp, a, b, c = three
    result = merge_shards([a.rec, b.rec, c.rec], str(tmp / "m"))
    got = run_mxnet_json(MX_SCRIPT, result.idx, result.rec)
    expected = {**_by_shard(a), **_by_shard(b), **_by_shard(c)}
    assert got == {str(k): hashlib.sha256(v).hexdigest() for k, v in expected.items()}


def _raw_shard(path: str, first_id: int, n: int, size: int) -> dict[int, bytes]:
    payloads = {
        first_id + i: pack(IRHeader(0, 0.0, first_id + i, 0), os.urandom(size)) for i in range(n)
    }
    w = MXIndexedRecordIO(path[:-4] + ".idx", path, "w")
    for k, p in payloads.items():
        w.write_idx(k, p)
    w.close()
    return payloads


@pytest.mark.slow
def test_merge_on_s3_copies_big_shards_server_side(tmp_path, s3_server, s3_bucket):
    """5 MiB, 200 kB, 10 MiB and a small last shard: S3 copies the big ones (and the last)
    itself; only the small shard and the head of the next one (one 5 MiB part) are moved."""
    so = s3_server.storage_options
    fs = s3_server.fs()
    layout = [
        ("s0", 0, 5, 1 << 20),
        ("s1", 100, 1, 200_000),
        ("s2", 200, 10, 1 << 20),
        ("s3", 300, 3, 1000),
    ]
    expected: dict[int, bytes] = {}
    urls = []
    for name, first, n, size in layout:
        local = str(tmp_path / f"{name}.rec")
        expected.update(_raw_shard(local, first, n, size))
        url = s3_server.url(s3_bucket, "shards", f"{name}.rec")
        fs.put(local, url)
        fs.put(local[:-4] + ".idx", url[:-4] + ".idx")
        urls.append(url)
    result = merge_shards(urls, s3_server.url(s3_bucket, "merged", "all"), storage_options=so)
    sizes = [os.path.getsize(tmp_path / f"{name}.rec") for name, *_ in layout]
    assert result.bytes == sum(sizes)
    assert result.copied_through == 5 << 20
    assert result.copied_server_side == sum(sizes) - result.copied_through
    local_all = b"".join((tmp_path / f"{name}.rec").read_bytes() for name, *_ in layout)
    assert fs.cat_file(result.rec) == local_all
    r = MXIndexedRecordIO(result.idx, result.rec, "r", storage_options=so)
    for key, payload in expected.items():
        assert r.read_idx(key) == payload
    r.close()
    combined = combined_index(urls, storage_options=so)
    assert [o for _, o in combined.pairs] == [o for _, o in read_idx(result.idx, so)]


@pytest.mark.slow
def test_merge_small_shards_on_s3(s3_server, s3_bucket, tmp_path):
    so = s3_server.storage_options
    fs = s3_server.fs()
    urls = []
    for i in range(3):
        local = str(tmp_path / f"t{i}.rec")
        make_raw_records(
            local, [pack(IRHeader(0, 0.0, 10 * i + j, 0), b"x" * 50) for j in range(4)]
        )
        url = s3_server.url(s3_bucket, f"t{i}.rec")
        fs.put(local, url)
        urls.append(url)
    result = merge_shards(urls, s3_server.url(s3_bucket, "out"), storage_options=so)
    assert result.records == 12 and result.copied_server_side == 0
    assert fs.cat_file(result.rec) == b"".join(
        (tmp_path / f"t{i}.rec").read_bytes() for i in range(3)
    )


def test_cli_index_and_merge(three, capsys):
    from recordio_flow.flows.cli import main

    tmp, a, b, c = three
    # without -o: write the missing index (c has none) by scanning
    assert main(["index", a.rec, c.rec]) == 0
    out = capsys.readouterr().out
    assert "exists" in out and f"{c.idx}: 3 records" in out
    assert [k for k, _ in read_idx(c.idx)] == c.ids
    # combined index for DALI, with the .rec order written out
    order = tmp / "order.txt"
    combined = tmp / "all.idx"
    assert main(["index", a.rec, b.rec, c.rec, "-o", str(combined), "--list-out", str(order)]) == 0
    out = capsys.readouterr().out
    assert "12 records in 3 shards" in out and "fn.readers.mxnet(path=" in out
    assert order.read_text().split() == [a.rec, b.rec, c.rec]
    assert read_idx(str(combined)) == list(combined_index([a.rec, b.rec, c.rec]).pairs)
    # merge
    assert main(["merge", str(tmp / "*.rec"), "-o", str(tmp / "out" / "all.rec")]) == 0
    out = capsys.readouterr().out
    assert "12 records" in out
    assert (tmp / "out" / "all.idx").exists() and (tmp / "out" / "all.lst").exists()
    assert main(["index", a.rec, "--keys", "renumber"]) == 2
    assert "add -o IDX" in capsys.readouterr().err
