"""recordio_core.building.pack: headers exactly as im2rec writes them, rejects, atomic commits,
determinism whatever the worker count, bounded memory, S3 output."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path

import pytest
from imagecases import BAD, GOOD, rgb_jpeg
from PIL import Image

import recordio_core.building.pack as packmod
import recordio_core.building.pack_pipeline as pipeline
from recordio_core.building.pack import (
    PackOptions,
    Reject,
    ShardResult,
    chunk_size,
    pack_shard,
    record_payload,
)
from recordio_core.building.validate import validate_shard
from recordio_core.format.framing import iter_records, open_source
from recordio_core.format.lst import LstEntry, format_lst
from recordio_core.format.recordio import unpack
from recordio_core.images.image import ImageOptions

RESIZE = PackOptions(ImageOptions(resize=24))


def make_tree(root: Path, n: int = 8, extra: dict[str, bytes] | None = None) -> list[LstEntry]:
    """`n` small photos in two folders (+ `extra` files), and entries for all of them."""
    files = {f"{'ab'[i % 2]}/img {i:02d}.jpg": rgb_jpeg(40 + i, 30 + i, seed=i) for i in range(n)}
    files.update(extra or {})
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return [LstEntry(100 + i, (float(i % 3),), rel) for i, rel in enumerate(files)]


def shard_files(prefix: Path) -> dict[str, bytes]:
    return {
        ext: (prefix.parent / (prefix.name + ext)).read_bytes()
        for ext in (".rec", ".idx", ".lst")
        if (prefix.parent / (prefix.name + ext)).exists()
    }


# --------------------------------------------------------------------------- options, payloads


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"label_width": 0}, "label_width must be >= 1"),
        ({"label_width": True}, "label_width must be an int"),
        ({"num_workers": 0}, "num_workers must be between 1 and 256"),
        ({"pack_label": 1}, "pack_label must be True or False"),
        ({"image": {"resize": 3}}, "image must be an ImageOptions"),
    ],
)
def test_pack_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PackOptions(**kwargs)


def test_record_payload_headers_are_im2recs():
    img = b"\xff\xd8 image bytes"
    one = LstEntry(7, (3.0,), "a.jpg")
    many = LstEntry(2**40 + 5, (1.5, -2.0, 4.25), "b.jpg")
    # one label: IRHeader(0, float32 label, id, 0)
    assert record_payload(one, img, PackOptions()) == struct.pack("<IfQQ", 0, 3.0, 7, 0) + img
    # several labels without pack_label: only the first
    assert record_payload(many, img, PackOptions()) == (
        struct.pack("<IfQQ", 0, 1.5, 2**40 + 5, 0) + img
    )
    # pack_label: flag = count, label 0, then the float32 labels
    packed = record_payload(many, img, PackOptions(pack_label=True, label_width=3))
    assert packed == struct.pack("<IfQQ3f", 3, 0.0, 2**40 + 5, 0, 1.5, -2.0, 4.25) + img
    # pack_label with a single label stays a plain header (im2rec: len(item) > 3)
    assert record_payload(one, img, PackOptions(pack_label=True)) == record_payload(
        one, img, PackOptions()
    )
    header, data = unpack(packed)
    assert (header.flag, header.id, data) == (3, 2**40 + 5, img)
    assert header.label.tolist() == [1.5, -2.0, 4.25]


@pytest.mark.mxnet
@pytest.mark.parametrize(
    ("header_label", "label_field"),
    [("zero", 0.0), ("first", 3.0)],  # im2rec.py writes 0 there; im2rec.cc the first label
)
def test_pack_label_header_field(header_label, label_field):
    entry = LstEntry(index=9, labels=(3.0, 4.0, 5.0), path="a.jpg")
    opts = PackOptions(label_width=3, pack_label=True, header_label=header_label)
    payload = record_payload(entry, b"IMG", opts)
    flag, label, index, id2 = struct.unpack_from("<IfQQ", payload)
    assert (flag, label, index, id2) == (3, label_field, 9, 0)
    assert struct.unpack_from("<3f", payload, 24) == (3.0, 4.0, 5.0)
    assert payload.endswith(b"IMG")


def test_header_label_is_validated():
    with pytest.raises(ValueError, match="header_label must be 'zero'"):
        PackOptions(header_label="last")  # type: ignore[arg-type]


def test_record_payload_equals_mxnet_pack(mxnet_python):
    from oracle import run_mxnet_json

    entries = [
        LstEntry(0, (0.0,), "a"),
        LstEntry(12345678901, (2.5,), "b"),
        LstEntry(9, (1.0, 2.0, 3.5), "c"),
        LstEntry(10, (0.1, 1e-3), "d"),
    ]
    script = r"""
import json, sys
import mxnet as mx
out = []
for index, labels, pack_label in json.loads(sys.argv[1]):
    item = [index, "path"] + labels  # im2rec.py's item: [index, path, labels...]
    if len(item) > 3 and pack_label:
        header = mx.recordio.IRHeader(0, item[2:], item[0], 0)
    else:
        header = mx.recordio.IRHeader(0, item[2], item[0], 0)
    out.append(mx.recordio.pack(header, b"IMG").hex())
print(json.dumps(out))
"""
    cases = [(e.index, list(e.labels), p) for e in entries for p in (False, True)]
    theirs = run_mxnet_json(script, json.dumps(cases))
    ours = [
        record_payload(LstEntry(i, tuple(labels), "p"), b"IMG", PackOptions(pack_label=p)).hex()
        for i, labels, p in cases
    ]
    assert ours == theirs


# --------------------------------------------------------------------------- packing


def test_pack_shard_writes_rec_idx_lst_and_reports_them(tmp_path):
    root = tmp_path / "images"
    entries = make_tree(root)
    out = tmp_path / "out" / "train-00000-of-00001"
    ticks: list[int] = []
    result = pack_shard(entries, str(root), str(out), RESIZE, progress=ticks.append)
    files = shard_files(out)
    assert isinstance(result, ShardResult)
    assert (result.rec, result.idx, result.lst) == (f"{out}.rec", f"{out}.idx", f"{out}.lst")
    assert result.records == len(entries) and result.rejects == ()
    assert result.bytes == len(files[".rec"])
    assert result.sha256 == hashlib.sha256(files[".rec"]).hexdigest()
    assert result.idx_sha256 == hashlib.sha256(files[".idx"]).hexdigest()
    assert result.lst_sha256 == hashlib.sha256(files[".lst"]).hexdigest()
    assert files[".lst"].decode() == format_lst(entries)
    assert sum(ticks) == len(entries)
    src = open_source(result.rec)
    try:
        records = list(iter_records(src))
    finally:
        src.close()
    idx = [tuple(map(int, line.split("\t"))) for line in files[".idx"].decode().splitlines()]
    assert idx == [(e.index, off) for e, (off, _) in zip(entries, records, strict=True)]
    for entry, (_, payload) in zip(entries, records, strict=True):
        header, img = unpack(payload)
        assert (header.flag, header.label, header.id) == (0, entry.labels[0], entry.index)
        assert min(Image.open(io.BytesIO(img)).size) == 24
    assert validate_shard(result.rec, result.idx, result.lst, decode=True).ok
    json.dumps(result.to_dict())  # JSON-ready
    assert not [p for p in os.listdir(out.parent) if p.startswith(".")]  # no temp files left


def test_bad_images_are_rejects_never_gaps_or_crashes(tmp_path, monkeypatch):
    root = tmp_path / "images"
    bad = {f"bad/{name}.jpg": make() for name, (make, _) in BAD.items()}
    bad["bad/png named.jpg"] = GOOD["rgb_png"]()
    bad["bad/denied.jpg"] = rgb_jpeg()
    entries = make_tree(root, n=4, extra=bad)
    entries.append(LstEntry(999, (1.0,), "bad/vanished.jpg"))  # listed, never there
    entries.append(LstEntry(998, (1.0,), "bad"))  # a folder
    real_read = packmod._Reader.read

    def read(self, entry):  # root runs the tests: simulate an unreadable file
        if entry.path == "bad/denied.jpg":
            raise PermissionError(13, "Permission denied", entry.path)
        return real_read(self, entry)

    monkeypatch.setattr(packmod._Reader, "read", read)
    out = tmp_path / "shard"
    result = pack_shard(entries, str(root), str(out), RESIZE)
    reasons = {r.path: r.reason for r in result.rejects}
    for name, (_, word) in BAD.items():
        assert word.lower() in reasons[f"bad/{name}.jpg"].lower(), (name, reasons)
    assert "not found" in reasons["bad/vanished.jpg"]
    assert "permission denied" in reasons["bad/denied.jpg"]
    assert "directory" in reasons["bad"]
    assert "bad/png named.jpg" not in reasons  # a PNG named .jpg decodes: kept
    kept = [e for e in entries if e.path not in reasons]
    assert result.records == len(kept) == 5
    assert len(result.rejects) == len(entries) - len(kept)
    index_of = {e.path: e.index for e in entries}
    assert all(isinstance(r, Reject) and r.index == index_of[r.path] for r in result.rejects)
    assert (tmp_path / "shard.lst").read_text() == format_lst(kept)  # exactly the packed ones
    assert validate_shard(result.rec, result.idx, result.lst, decode=True).ok


@pytest.mark.parametrize(
    "exc",
    [ConnectionError("endpoint went away"), TimeoutError("read timed out"), OSError(5, "EIO")],
)
def test_a_transient_read_error_fails_the_shard_instead_of_rejecting(tmp_path, monkeypatch, exc):
    root = tmp_path / "images"
    entries = make_tree(root, n=6)
    real_read = packmod._Reader.read

    def read(self, entry):
        if entry.index == entries[3].index:
            raise exc
        return real_read(self, entry)

    monkeypatch.setattr(packmod._Reader, "read", read)
    (tmp_path / "out").mkdir()
    for workers in (1, 2):
        with pytest.raises(type(exc)):
            pack_shard(
                entries, str(root), str(tmp_path / "out" / "s"), PackOptions(num_workers=workers)
            )
        assert os.listdir(tmp_path / "out") == []


def test_pass_through_stores_the_file_bytes(tmp_path):
    root = tmp_path / "images"
    entries = make_tree(root, n=3, extra={"z/empty.jpg": b"", "z/text.jpg": b"plain text"})
    opts = PackOptions(ImageOptions(pass_through=True))
    result = pack_shard(entries, str(root), str(tmp_path / "pt"), opts)
    assert {r.path for r in result.rejects} == {"z/empty.jpg", "z/text.jpg"}
    src = open_source(result.rec)
    try:
        for (_, payload), entry in zip(iter_records(src), entries, strict=False):
            assert unpack(payload)[1] == (root / entry.path).read_bytes()
    finally:
        src.close()
    # verify="none" is im2rec.py's behaviour: anything is stored
    loose = PackOptions(ImageOptions(pass_through=True, verify="none"))
    assert pack_shard(entries, str(root), str(tmp_path / "pt2"), loose).records == 5


def test_pack_label_and_label_width(tmp_path):
    root = tmp_path / "images"
    entries = [LstEntry(e.index, (e.labels[0], 0.5, -1.0), e.path) for e in make_tree(root, n=3)]
    opts = PackOptions(ImageOptions(resize=16), label_width=3, pack_label=True)
    result = pack_shard(entries, str(root), str(tmp_path / "ml"), opts)
    src = open_source(result.rec)
    try:
        for (_, payload), entry in zip(iter_records(src), entries, strict=True):
            header, _ = unpack(payload)
            assert header.flag == 3 and header.label.tolist() == list(entry.labels)
    finally:
        src.close()
    assert validate_shard(result.rec, result.idx, result.lst, label_width=3, pack_label=True).ok


# --------------------------------------------------------------------------- atomicity


class Boom(Exception):
    pass


@pytest.mark.parametrize("workers", [1, 3])
def test_an_exception_mid_shard_leaves_no_files(tmp_path, workers):
    root = tmp_path / "images"
    entries = make_tree(root, n=10)
    out = tmp_path / "out" / "s"
    out.parent.mkdir()

    def progress(_n):  # records are written in batches: fail at the first one reported
        raise Boom("interrupted mid-shard")

    opts = PackOptions(ImageOptions(resize=16), num_workers=workers)
    with pytest.raises(Boom):
        pack_shard(entries, str(root), str(out), opts, progress=progress)
    assert os.listdir(out.parent) == []  # no .rec/.idx/.lst, no temporary files


def test_a_failed_repack_keeps_the_previous_complete_shard(tmp_path):
    root = tmp_path / "images"
    entries = make_tree(root, n=6)
    out = tmp_path / "s"
    pack_shard(entries, str(root), str(out), RESIZE)
    before = shard_files(out)

    def progress(_n):
        raise Boom("killed")

    with pytest.raises(Boom):
        pack_shard(
            entries[:3],
            str(root),
            str(out),
            PackOptions(ImageOptions(resize=20)),
            progress=progress,
        )
    assert shard_files(out) == before
    assert sorted(os.listdir(tmp_path)) == ["images", "s.idx", "s.lst", "s.rec"]


def test_write_lst_false_leaves_a_users_lst_alone(tmp_path):
    root = tmp_path / "images"
    entries = make_tree(root, n=3)
    user_lst = tmp_path / "data.lst"
    user_lst.write_text("my own list, not to be touched\n")
    result = pack_shard(entries, str(root), str(tmp_path / "data"), RESIZE, write_lst=False)
    assert user_lst.read_text() == "my own list, not to be touched\n"
    assert (result.lst, result.lst_sha256) == ("", "")
    assert validate_shard(result.rec, result.idx).ok


# --------------------------------------------------------------------------- determinism, streaming


def test_same_input_same_bytes_whatever_the_worker_count_threads_or_processes(tmp_path):
    root = tmp_path / "images"
    entries = make_tree(root, n=12, extra={"x/broken.jpg": b"\xff\xd8\xff garbage"})
    outputs = []
    runs = [(1, False), (1, False), (2, False), (4, False), (2, True), (3, True)]
    for i, (workers, processes) in enumerate(runs):
        opts = PackOptions(ImageOptions(resize=20), num_workers=workers)
        out = str(tmp_path / f"o{i}")
        result = pack_shard(entries, str(root), out, opts, processes=processes)
        outputs.append((shard_files(tmp_path / f"o{i}"), result.rejects, result.sha256))
    assert all(o == outputs[0] for o in outputs[1:])
    assert len(outputs[0][1]) == 1


def test_process_workers_raise_a_transient_read_error(tmp_path, monkeypatch):
    root = tmp_path / "images"
    entries = make_tree(root, n=20)

    def flaky(self, entry):
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(packmod._Reader, "read", flaky)  # inherited by the forked workers
    opts = PackOptions(ImageOptions(resize=16), num_workers=2)
    with pytest.raises(ConnectionResetError):
        pack_shard(entries, str(root), str(tmp_path / "s"), opts, processes=True)
    assert sorted(os.listdir(tmp_path)) == ["images"]


def test_images_in_flight_are_bounded(tmp_path, monkeypatch):
    root = tmp_path / "images"
    entries = make_tree(root, n=40)
    started = []
    real = pipeline._process

    def process(reader, entry, image):
        started.append(entry.index)
        return real(reader, entry, image)

    monkeypatch.setattr(pipeline, "_process", process)  # what the threads call
    done = [0]
    worst = [0]

    def progress(n):
        done[0] += n
        worst[0] = max(worst[0], len(started) - done[0])

    opts = PackOptions(ImageOptions(resize=16), num_workers=2)
    pack_shard(entries, str(root), str(tmp_path / "s"), opts, progress=progress)
    assert len(started) == 40
    from recordio_core.building.pack_pipeline import _WINDOW_PER_WORKER

    assert worst[0] <= _WINDOW_PER_WORKER * 2


# --------------------------------------------------------------------------- object storage


@pytest.mark.slow
def test_pack_to_s3_and_validate_there(tmp_path, s3_server, s3_bucket):
    root = tmp_path / "images"
    entries = make_tree(root, n=4, extra={"x/empty.jpg": b""})
    prefix = s3_server.url(s3_bucket, "ds", "train-00000-of-00001")
    so = s3_server.storage_options
    result = pack_shard(entries, str(root), prefix, RESIZE, storage_options=so)
    assert result.records == 4 and [r.path for r in result.rejects] == ["x/empty.jpg"]
    fs = s3_server.fs()
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{s3_bucket}/ds"))
    assert names == [f"train-00000-of-00001{ext}" for ext in (".idx", ".lst", ".rec")]
    assert fs.cat_file(f"{s3_bucket}/ds/train-00000-of-00001.rec") and result.bytes > 0
    report = validate_shard(
        result.rec, result.idx, result.lst, expected_sha256=result.sha256, storage_options=so
    )
    assert report.ok, report.problems
    # images can come from the bucket too
    for e in entries[:4]:
        fs.pipe_file(f"{s3_bucket}/src/{e.path}", (root / e.path).read_bytes())
    again = pack_shard(
        entries[:4],
        s3_server.url(s3_bucket, "src"),
        str(tmp_path / "local"),
        PackOptions(RESIZE.image, num_workers=3),  # s3fs from several threads
        source_options=so,
    )
    assert again.sha256 == result.sha256  # same images, same bytes, wherever they live


@pytest.mark.parametrize(
    ("done_bytes", "done_images", "expected"),
    [
        (0, 0, 8),  # nothing seen yet: start small
        (8 * 2_500, 8, 512),  # 2.5 KB files: as many as allowed
        (8 * 10_000, 8, 209),  # 10 KB: ~2 MiB per task
        (8 * 100_000, 8, 20),
        (8 * 2_000_000, 8, 8),  # large records: never below the start
        (0, 8, 512),  # all rejects so far (no bytes): the cap
    ],
)
def test_chunk_size(done_bytes, done_images, expected):
    assert chunk_size(done_bytes, done_images) == expected


def test_process_workers_with_growing_chunks_give_the_same_bytes(tmp_path):
    entries = make_tree(tmp_path / "src", n=40)
    opts = PackOptions(ImageOptions(pass_through=True), num_workers=2)
    one = pack_shard(entries, str(tmp_path / "src"), str(tmp_path / "a"), opts)
    two = pack_shard(entries, str(tmp_path / "src"), str(tmp_path / "b"), opts, processes=True)
    assert (one.sha256, one.idx_sha256, one.digests) == (two.sha256, two.idx_sha256, two.digests)
