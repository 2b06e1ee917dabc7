"""The `mxnet.recordio` API: IRHeader/pack/unpack, pack_img/unpack_img, MXRecordIO and
MXIndexedRecordIO (context manager, reset, tell, keys, key_type, pickling, fork rules)."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordio_core.format import recordio
from recordio_core.format.errors import IndexFileError, RecordIOError
from recordio_core.format.framing import MAGIC_BYTES, frame_record
from recordio_core.format.recordio import (
    IRHeader,
    MXIndexedRecordIO,
    MXRecordIO,
    pack,
    pack_img,
    unpack,
    unpack_img,
)

U64 = st.integers(0, 2**64 - 1)
F32 = st.floats(width=32, allow_nan=False)


def write_records(idx: str, rec: str, records: dict, **kw) -> None:
    with MXIndexedRecordIO(idx, rec, "w", **kw) as w:
        for key, payload in records.items():
            w.write_idx(key, payload)


class TestPack:
    @given(F32, U64, U64, st.binary(max_size=64))
    def test_single_label_round_trip(self, label, id_, id2, data):
        s = pack(IRHeader(9, label, id_, id2), data)
        assert s[:24] == struct.pack("<IfQQ", 0, label, id_, id2)
        header, rest = unpack(s)
        assert header == IRHeader(0, np.float32(label), id_, id2)
        assert rest == data

    @given(st.lists(F32, min_size=1, max_size=12), U64, U64, st.binary(max_size=64))
    def test_multi_label_round_trip(self, labels, id_, id2, data):
        s = pack(IRHeader(0, labels, id_, id2), data)
        header, rest = unpack(s)
        assert header.flag == len(labels)
        assert header.label.dtype == np.float32
        np.testing.assert_array_equal(header.label, np.asarray(labels, np.float32))
        assert (header.id, header.id2) == (id_, id2)
        assert rest == data
        assert struct.unpack_from("<f", s, 4)[0] == 0.0  # the header's label field is 0

    def test_mxnet_rules(self):
        # a number label forces flag 0 whatever was given; an array sets flag to its size
        assert unpack(pack(IRHeader(5, 2.0, 1, 0), b""))[0].flag == 0
        assert unpack(pack(IRHeader(0, [7.0], 1, 0), b"x"))[0].flag == 1
        assert unpack(pack(IRHeader(0, np.arange(3), 1, 0), b"x"))[0].flag == 3
        assert unpack(pack((0, np.float32(1.5), 2, 3), b"x"))[0] == IRHeader(0, 1.5, 2, 3)
        assert isinstance(IRHeader(0, 0, 0, 0), tuple)
        assert IRHeader._fields == ("flag", "label", "id", "id2")

    def test_ids_outside_u64_are_rejected(self):
        with pytest.raises(struct.error):
            pack(IRHeader(0, 0.0, 2**64, 0), b"")
        with pytest.raises(struct.error):
            pack(IRHeader(0, 0.0, -1, 0), b"")

    def test_magic_word_in_a_packed_payload(self, tmp_path):
        data = MAGIC_BYTES * 3 + b"img" + MAGIC_BYTES
        s = pack(IRHeader(0, [1.0, 2.0], 2**64 - 1, 0), data)
        with MXRecordIO(str(tmp_path / "m.rec"), "w") as w:
            w.write(s)
        with MXRecordIO(str(tmp_path / "m.rec"), "r") as r:
            header, rest = unpack(r.read())
        assert rest == data and header.id == 2**64 - 1

    def test_unpack_short_records(self):
        with pytest.raises(RecordIOError, match="too short for a 24-byte image header"):
            unpack(b"\0" * 23)
        with pytest.raises(RecordIOError, match="declares 3 labels but only 4 bytes"):
            unpack(struct.pack("<IfQQ", 3, 0, 0, 0) + b"abcd")


class TestImages:
    def rgb(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)

    def test_png_round_trip_rgb_and_bgr(self):
        img = self.rgb()
        s = pack_img(IRHeader(0, 3.0, 4, 0), img, quality=3, img_fmt=".png")
        header, out = unpack_img(s)
        assert header == IRHeader(0, 3.0, 4, 0)
        np.testing.assert_array_equal(out, img)
        _, bgr = unpack_img(s, channel_order="bgr")
        np.testing.assert_array_equal(bgr, img[:, :, ::-1])
        s2 = pack_img(IRHeader(0, 3.0, 4, 0), img[:, :, ::-1], img_fmt=".png", channel_order="bgr")
        np.testing.assert_array_equal(unpack_img(s2)[1], img)

    def test_gray_and_jpeg(self):
        img = self.rgb()
        _, gray = unpack_img(pack_img(IRHeader(0, 0, 0, 0), img, img_fmt=".png"), iscolor=0)
        assert gray.shape == (12, 10)
        yy, xx = np.mgrid[0:16, 0:24]
        smooth = np.stack([yy * 8, xx * 8, (yy + xx) * 4], axis=2).astype(np.uint8)
        _, jpg = unpack_img(pack_img(IRHeader(0, 0, 0, 0), smooth, quality=100), iscolor=1)
        assert jpg.shape == (16, 24, 3)
        assert np.abs(jpg.astype(int) - smooth).max() <= 8

    def test_bad_format(self):
        with pytest.raises(ValueError, match="img_fmt"):
            pack_img(IRHeader(0, 0, 0, 0), self.rgb(), img_fmt=".gif")


class TestMXRecordIO:
    def test_write_read_sequential(self, tmp_path):
        path = str(tmp_path / "seq.rec")
        records = [b"record_%d" % i for i in range(5)] + [b"", MAGIC_BYTES]
        w = MXRecordIO(path, "w")
        for r in records:
            w.write(r)
        w.close()
        r = MXRecordIO(path, "r")
        assert [r.read() for _ in records] == records
        assert r.read() is None
        assert r.read() is None
        r.close()

    def test_tell_matches_mxnet_docs(self, tmp_path):
        w = MXIndexedRecordIO(str(tmp_path / "t.idx"), str(tmp_path / "t.rec"), "w")
        assert w.tell() == 0
        tells = []
        for i in range(5):
            w.write_idx(i, b"record_%d" % i)
            tells.append(w.tell())
        w.close()
        assert tells == [16, 32, 48, 64, 80]
        r = MXRecordIO(str(tmp_path / "t.rec"), "r")
        r.read()
        assert r.tell() == 16
        r.close()

    def test_context_manager_and_close(self, tmp_path):
        path = str(tmp_path / "cm.rec")
        with MXRecordIO(path, "w") as w:
            w.write(b"abc")
            assert w.is_open and w.writable
        assert not w.is_open
        w.close()  # closing twice is fine
        with MXRecordIO(path, "r") as r:
            assert r.read() == b"abc"
        with pytest.raises(RuntimeError, match="closed; cannot read"):
            r.read()

    def test_reset(self, tmp_path):
        path = str(tmp_path / "reset.rec")
        with MXRecordIO(path, "w") as w:
            for i in range(3):
                w.write(b"%d" % i)
        r = MXRecordIO(path, "r")
        assert [r.read(), r.read()] == [b"0", b"1"]
        r.reset()
        assert r.read() == b"0"
        r.close()
        w = MXRecordIO(path, "w")
        w.write(b"new")
        w.reset()  # like MXNet: reopening a writer truncates the file
        w.write(b"only")
        w.close()
        with MXRecordIO(path, "r") as r:
            assert (r.read(), r.read()) == (b"only", None)

    def test_wrong_mode_operations(self, tmp_path):
        path = str(tmp_path / "m.rec")
        with MXRecordIO(path, "w") as w:
            with pytest.raises(RuntimeError, match="opened for writing; cannot read"):
                w.read()
            w.write(b"x")
        with (
            MXRecordIO(path, "r") as r,
            pytest.raises(RuntimeError, match="opened for reading; cannot write"),
        ):
            r.write(b"x")
        with pytest.raises(ValueError, match="Invalid flag 'a'"):
            MXRecordIO(path, "a")

    def test_corrupt_file_names_uri_and_offset(self, tmp_path):
        path = tmp_path / "bad.rec"
        path.write_bytes(frame_record(b"good") + b"\x01\x02\x03\x04" + b"\0" * 8)
        with MXRecordIO(str(path), "r") as r:
            assert r.read() == b"good"
            with pytest.raises(RecordIOError, match=f"{path}: no RecordIO magic word at offset 12"):
                r.read()

    def test_seek_to_record_start(self, tmp_path):
        path = str(tmp_path / "s.rec")
        with MXRecordIO(path, "w") as w:
            for i in range(4):
                w.write(bytes([i]) * 10 + MAGIC_BYTES + b"z")
        with MXRecordIO(path, "r") as r:
            r.read()
            second = r.tell()
            assert r.seek_to_record_start(1) == second
            assert r.read() == bytes([1]) * 10 + MAGIC_BYTES + b"z"

    def test_pickle_reader_reopens_from_start(self, tmp_path):
        path = str(tmp_path / "p.rec")
        with MXRecordIO(path, "w") as w:
            for i in range(3):
                w.write(b"%d" % i)
        r = MXRecordIO(path, "r")
        assert r.read() == b"0"
        copy = pickle.loads(pickle.dumps(r))
        assert copy.is_open and copy.read() == b"0"
        assert r.read() == b"1"  # the original keeps its file and position
        r.close()
        copy.close()
        closed = pickle.loads(pickle.dumps(copy))
        assert not closed.is_open

    def test_open_writer_cannot_be_pickled(self, tmp_path):
        w = MXRecordIO(str(tmp_path / "w.rec"), "w")
        w.write(b"kept")
        with pytest.raises(TypeError, match="close it first"):
            pickle.dumps(w)
        w.close()
        assert pickle.loads(pickle.dumps(w)).is_open is False
        with MXRecordIO(str(tmp_path / "w.rec"), "r") as r:
            assert r.read() == b"kept"


class TestMXIndexedRecordIO:
    def test_keys_idx_and_random_access(self, tmp_path):
        idx, rec = str(tmp_path / "a.idx"), str(tmp_path / "a.rec")
        records = {5: b"five", 2: b"two" * 100, 9: MAGIC_BYTES, 0: b""}
        write_records(idx, rec, records)
        assert (tmp_path / "a.idx").read_text() == "5\t0\n2\t12\n9\t320\n0\t336\n"
        with MXIndexedRecordIO(idx, rec, "r") as r:
            assert r.keys == [5, 2, 9, 0]
            assert r.idx == {5: 0, 2: 12, 9: 320, 0: 336}
            for key in (9, 0, 5, 2, 9):
                assert r.read_idx(key) == records[key]
            r.seek(2)
            assert r.read() == records[2]
            assert r.read() == records[9]  # sequential reading continues after a seek
            with pytest.raises(KeyError, match="no record with key 7"):
                r.read_idx(7)

    def test_str_keys(self, tmp_path):
        idx, rec = str(tmp_path / "s.idx"), str(tmp_path / "s.rec")
        write_records(idx, rec, {"cat/a.jpg": b"A", "dog b.jpg": b"B"}, key_type=str)
        assert (tmp_path / "s.idx").read_text() == "cat/a.jpg\t0\ndog b.jpg\t12\n"
        with MXIndexedRecordIO(idx, rec, "r", key_type=str) as r:
            assert r.keys == ["cat/a.jpg", "dog b.jpg"]
            assert r.read_idx("dog b.jpg") == b"B"
        with pytest.raises(IndexFileError, match="s.idx:1: key 'cat/a.jpg' is not a valid int"):
            MXIndexedRecordIO(idx, rec, "r")

    def test_key_type_converts_on_write(self, tmp_path):
        idx, rec = str(tmp_path / "c.idx"), str(tmp_path / "c.rec")
        write_records(idx, rec, {"3": b"x"})
        with MXIndexedRecordIO(idx, rec, "r") as r:
            assert r.keys == [3]

    def test_idx_offset_past_end(self, tmp_path):
        idx, rec = tmp_path / "e.idx", tmp_path / "e.rec"
        write_records(str(idx), str(rec), {0: b"a", 1: b"b"})
        idx.write_text("0\t0\n1\t12\n2\t4096\n")
        with pytest.raises(RecordIOError, match=r"e.idx: offset 4096 for key 2 is past the end"):
            MXIndexedRecordIO(str(idx), str(rec), "r")

    def test_idx_offset_not_at_record_start(self, tmp_path):
        idx, rec = tmp_path / "n.idx", tmp_path / "n.rec"
        write_records(str(idx), str(rec), {0: b"abcdefgh" * 4, 1: b"b"})
        idx.write_text("0\t0\n1\t8\n")
        with MXIndexedRecordIO(str(idx), str(rec), "r") as r:
            assert r.read_idx(0) == b"abcdefgh" * 4
            with pytest.raises(RecordIOError, match=f"{rec}: no RecordIO magic word at offset 8"):
                r.read_idx(1)

    def test_pickle_indexed_reader(self, tmp_path):
        idx, rec = str(tmp_path / "p.idx"), str(tmp_path / "p.rec")
        write_records(idx, rec, {i: b"%d" % i for i in range(20)})
        r = MXIndexedRecordIO(idx, rec, "r")
        blob = pickle.dumps(r)
        assert b"%d" % 19 not in blob or len(blob) < 2000  # the index is re-read, not pickled
        copy = pickle.loads(blob)
        assert copy.read_idx(13) == b"13" and copy.keys == list(range(20))
        assert r.read_idx(4) == b"4"
        r.close()
        copy.close()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_fork_rules_match_mxnet(self, tmp_path):
        idx, rec = str(tmp_path / "f.idx"), str(tmp_path / "f.rec")
        write_records(idx, rec, {i: b"%d" % i for i in range(3)})
        r = MXIndexedRecordIO(idx, rec, "r")
        pid = os.fork()
        if pid == 0:  # child: sequential read refused, keyed read reopens (as MXNet)
            code = 0
            try:
                try:
                    r.read()
                    code = 1
                except RuntimeError as exc:
                    code = 0 if "multiple processes" in str(exc) else 2
                if code == 0 and r.read_idx(2) != b"2":
                    code = 3
                if code == 0 and r.read() is not None:
                    code = 4
            except BaseException:
                code = 5
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert r.read() == b"0"  # the parent is unaffected
        r.close()

    def test_writer_makes_folders_and_reader_needs_files(self, tmp_path):
        idx, rec = str(tmp_path / "i" / "x.idx"), str(tmp_path / "r" / "x.rec")
        write_records(idx, rec, {1: b"a"})
        with MXIndexedRecordIO(idx, rec, "r") as r:
            assert r.read_idx(1) == b"a"
        with pytest.raises(FileNotFoundError):
            MXIndexedRecordIO(str(tmp_path / "missing.idx"), rec, "r")
        with pytest.raises(FileNotFoundError):
            MXRecordIO(str(tmp_path / "missing.rec"), "r")

    def test_writer_cannot_seek(self, tmp_path):
        w = MXIndexedRecordIO(str(tmp_path / "w.idx"), str(tmp_path / "w.rec"), "w")
        with pytest.raises(RuntimeError, match="opened for writing; cannot seek"):
            w.seek(0)
        w.close()


class TestMemoryFilesystem:
    def test_memory_urls(self):
        idx, rec = "memory://api/x.idx", "memory://api/x.rec"
        write_records(idx, rec, {1: b"one", 2: MAGIC_BYTES * 2})
        with MXIndexedRecordIO(idx, rec, "r") as r:
            assert r.read_idx(2) == MAGIC_BYTES * 2
            assert r.read_idx(1) == b"one"
        with MXRecordIO(rec, "r") as r:
            assert [r.read(), r.read(), r.read()] == [b"one", MAGIC_BYTES * 2, None]


def test_public_names_match_mxnet():
    for name in ("IRHeader", "pack", "unpack", "pack_img", "unpack_img"):
        assert callable(getattr(recordio, name))
    for cls, methods in (
        (MXRecordIO, ("open", "close", "reset", "read", "write")),
        (MXIndexedRecordIO, ("seek", "tell", "read_idx", "write_idx")),
    ):
        for m in methods:
            assert callable(getattr(cls, m))
