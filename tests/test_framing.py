"""RecordIO framing: byte-exact writer (against a transcription of dmlc-core's writer), round
trips with hypothesis, resynchronisation, and clear errors on bad input."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordio_core.format.errors import RecordIOError
from recordio_core.format.framing import (
    MAGIC,
    MAGIC_BYTES,
    MAX_PART_LENGTH,
    FileSource,
    MmapSource,
    RecordWriter,
    aligned_magic_offsets,
    decode_lrec,
    encode_lrec,
    find_record_start,
    frame_record,
    is_record_start,
    iter_records,
    read_record_at,
    split_payload,
)


def dmlc_write_record(buf: bytes) -> bytes:
    """A line-by-line transcription of dmlc-core's `RecordIOWriter::WriteRecord`."""
    out = bytearray()
    length = len(buf)
    lower_align = (length >> 2) << 2
    upper_align = ((length + 3) >> 2) << 2
    dptr = 0
    for i in range(0, lower_align, 4):
        if buf[i : i + 4] == MAGIC_BYTES:
            lrec = ((1 if dptr == 0 else 2) << 29) | (i - dptr)
            out += struct.pack("<II", MAGIC, lrec)
            out += buf[dptr:i]
            dptr = i + 4
    lrec = ((3 if dptr != 0 else 0) << 29) | (length - dptr)
    out += struct.pack("<II", MAGIC, lrec)
    out += buf[dptr:]
    out += b"\0" * (upper_align - length)
    return bytes(out)


def dmlc_read_records(data: bytes) -> list[bytes]:
    """A transcription of dmlc-core's `RecordIOReader::NextRecord`, over a whole file."""
    records, pos = [], 0
    while pos < len(data):
        rec = bytearray()
        while True:
            magic, lrec = struct.unpack_from("<II", data, pos)
            assert magic == MAGIC
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            pos += 8
            rec += data[pos : pos + length]
            pos += (length + 3) & ~3
            if cflag in (0, 3):
                break
            rec += MAGIC_BYTES
        records.append(bytes(rec))
    return records


# Payloads built from random bytes and magic words, so the magic lands at every alignment,
# repeated, and at the start and end.
segments = st.one_of(st.binary(max_size=9), st.just(MAGIC_BYTES), st.just(MAGIC_BYTES * 2))
payloads = st.lists(segments, max_size=10).map(b"".join)


def sources(tmp_path: Path, data: bytes, name: str = "t.rec"):
    path = tmp_path / name
    path.write_bytes(data)
    return [
        MmapSource(str(path)),
        FileSource(io.BytesIO(data), str(path)),
        # tiny windows: every record crosses several window boundaries
        FileSource(io.BytesIO(data), str(path), min_readahead=4, max_readahead=24),
    ]


def magic_cases() -> list[bytes]:
    cases = [b"", MAGIC_BYTES, MAGIC_BYTES * 3, MAGIC_BYTES + b"x", b"abcd" + MAGIC_BYTES]
    for prefix in range(9):
        for suffix in (0, 1, 3, 4):
            cases.append(b"p" * prefix + MAGIC_BYTES + b"s" * suffix)
    cases.append(MAGIC_BYTES[:3])  # a partial magic word is just data
    cases.append(b"\0" * 3 + MAGIC_BYTES[:2])
    return cases


class TestWriter:
    def test_empty_payload_is_one_bare_header(self):
        assert frame_record(b"") == struct.pack("<II", MAGIC, 0)

    def test_padding_to_four_bytes(self):
        assert frame_record(b"abc") == struct.pack("<II", MAGIC, 3) + b"abc\0"
        assert frame_record(b"abcd") == struct.pack("<II", MAGIC, 4) + b"abcd"

    def test_magic_alone_is_an_empty_first_and_last_part(self):
        assert frame_record(MAGIC_BYTES) == struct.pack("<IIII", MAGIC, 1 << 29, MAGIC, 3 << 29)

    def test_unaligned_magic_is_not_cut(self):
        payload = b"x" + MAGIC_BYTES + b"yyy"
        assert split_payload(payload) == [payload]
        assert frame_record(payload)[4:8] == struct.pack("<I", len(payload))

    @pytest.mark.parametrize("payload", magic_cases(), ids=lambda p: p.hex() or "empty")
    def test_matches_dmlc_writer_on_magic_cases(self, payload):
        assert frame_record(payload) == dmlc_write_record(payload)

    @given(payloads)
    @settings(max_examples=300)
    def test_matches_dmlc_writer(self, payload):
        framed = frame_record(payload)
        assert framed == dmlc_write_record(payload)
        assert len(framed) % 4 == 0

    @given(payloads)
    def test_no_aligned_magic_inside_part_data(self, payload):
        framed = frame_record(payload)
        starts, pos = set(), 0
        while pos < len(framed):  # walk the part headers
            starts.add(pos)
            _, lrec = struct.unpack_from("<II", framed, pos)
            pos += 8 + ((lrec & MAX_PART_LENGTH) + 3 & ~3)
        assert set(aligned_magic_offsets(framed)) == starts

    @given(
        st.integers(8192, 40_000),
        st.lists(st.integers(0, 40_000), max_size=8),
        st.integers(0, 2**32),
    )
    @settings(max_examples=60)
    def test_large_payloads_match_dmlc_writer(self, size, positions, seed):
        """Large payloads take the vectorised magic-word scan; it must agree with dmlc."""
        payload = bytearray(random.Random(seed).randbytes(size))
        for pos in positions:
            pos %= size
            payload[pos : pos + 4] = MAGIC_BYTES
        payload = bytes(payload)
        assert frame_record(payload) == dmlc_write_record(payload)
        buf = io.BytesIO()
        RecordWriter(buf).write(payload)
        assert buf.getvalue() == dmlc_write_record(payload)

    def test_lrec_encoding(self):
        assert encode_lrec(3, 5) == (3 << 29) | 5
        assert decode_lrec((2 << 29) | 77) == (2, 77)
        with pytest.raises(ValueError, match="cflag"):
            encode_lrec(4, 0)
        with pytest.raises(ValueError, match="2\\*\\*29"):
            encode_lrec(0, 1 << 29)

    def test_record_writer_returns_offsets(self):
        buf = io.BytesIO()
        w = RecordWriter(buf)
        assert [w.write(p) for p in (b"a", b"", MAGIC_BYTES, b"12345")] == [0, 12, 20, 36]
        assert w.tell() == len(buf.getvalue()) == 52


class TestRoundTrip:
    @given(st.lists(payloads, max_size=6))
    @settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_records_round_trip(self, tmp_path, records):
        data = b"".join(frame_record(p) for p in records)
        assert dmlc_read_records(data) == records
        for src in sources(tmp_path, data):
            try:
                got = list(iter_records(src))
                assert [p for _, p in got] == records
                offsets = [off for off, _ in got]
                for off, payload in got:
                    assert read_record_at(src, off)[0] == payload
                    assert is_record_start(src, off)
                # from any aligned byte, resync finds the next record start
                for pos in range(0, len(data) + 1, 4):
                    expected = min([o for o in offsets if o >= pos], default=len(data))
                    assert find_record_start(src, pos) == expected
            finally:
                src.close()

    @pytest.mark.parametrize("payload", magic_cases(), ids=lambda p: p.hex() or "empty")
    def test_magic_cases_round_trip(self, tmp_path, payload):
        data = frame_record(payload) + frame_record(b"next")
        for src in sources(tmp_path, data):
            first, nxt = read_record_at(src, 0)
            assert first == payload
            assert read_record_at(src, nxt) == (b"next", len(data))
            src.close()

    def test_large_payload_with_many_magic_words(self, tmp_path):
        payload = (b"abcd" * 1000 + MAGIC_BYTES) * 50 + b"tail!"
        data = frame_record(payload)
        assert data == dmlc_write_record(payload)
        for src in sources(tmp_path, data):
            assert read_record_at(src, 0) == (payload, len(data))
            src.close()

    def test_iter_records_range(self, tmp_path):
        data = b"".join(frame_record(bytes([i]) * i) for i in range(10))
        src = MmapSource(_write(tmp_path, data))
        offsets = [off for off, _ in iter_records(src)]
        part = list(iter_records(src, offsets[3], offsets[6]))
        assert [p for _, p in part] == [bytes([i]) * i for i in (3, 4, 5)]
        src.close()

    def test_empty_file(self, tmp_path):
        src = MmapSource(_write(tmp_path, b""))
        assert list(iter_records(src)) == []
        assert find_record_start(src, 0) == 0
        with pytest.raises(RecordIOError, match="offset 0"):
            read_record_at(src, 0)
        src.close()


def _write(tmp_path: Path, data: bytes, name: str = "bad.rec") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def head(cflag: int, length: int, magic: int = MAGIC) -> bytes:
    return struct.pack("<II", magic, (cflag << 29) | length)


BAD_FILES = {
    "truncated-header": (frame_record(b"good") + head(0, 4)[:6], 12, "truncated"),
    "truncated-data": (frame_record(b"good") + head(0, 100) + b"x" * 10, 12, "declares 100"),
    "wrong-magic": (struct.pack("<II", 0xDEADBEEF, 4) + b"abcd", 0, "no RecordIO magic"),
    "huge-length": (head(0, MAX_PART_LENGTH) + b"tiny", 0, "declares 536870911"),
    "continuation-first": (head(2, 4) + b"abcd", 0, "continuation part"),
    "last-first": (head(3, 0), 0, "continuation part"),
    "first-then-whole": (head(1, 4) + b"abcd" + head(0, 0), 0, "cut short"),
    "first-then-eof": (head(1, 4) + b"abcd", 0, "truncated"),
    "first-then-garbage": (head(1, 4) + b"abcd" + b"\0" * 8, 0, "no RecordIO magic"),
    "middle-huge": (head(1, 0) + head(2, MAX_PART_LENGTH), 0, "declares 536870911"),
}


class TestBadInput:
    @pytest.mark.parametrize("case", sorted(BAD_FILES))
    def test_error_names_file_and_offset(self, tmp_path, case):
        data, offset, message = BAD_FILES[case]
        path = _write(tmp_path, data, f"{case}.rec")
        for src in (MmapSource(path), FileSource(io.BytesIO(data), path)):
            with pytest.raises(RecordIOError, match=message) as err:
                read_record_at(src, offset)
            assert path in str(err.value)
            assert f"offset {offset}" in str(err.value)
            src.close()

    @pytest.mark.parametrize("offset", [-4, 2, 5, 1000])
    def test_offset_outside_or_unaligned(self, tmp_path, offset):
        path = _write(tmp_path, frame_record(b"abcdefgh") * 2)
        src = MmapSource(path)
        with pytest.raises(RecordIOError, match=f"{path}: offset {offset} is not a record start"):
            read_record_at(src, offset)
        src.close()

    def test_offset_inside_a_record(self, tmp_path):
        path = _write(tmp_path, frame_record(b"abcdefgh" * 4) * 2)
        src = MmapSource(path)
        with pytest.raises(RecordIOError, match="no RecordIO magic word at offset 12"):
            read_record_at(src, 12)
        src.close()

    def test_huge_length_field_never_allocates(self, tmp_path):
        data = frame_record(b"ok") + head(0, MAX_PART_LENGTH) + b"x" * 64
        path = _write(tmp_path, data)
        for src in (MmapSource(path), FileSource(io.BytesIO(data), path)):
            tracemalloc.start()
            try:
                with pytest.raises(RecordIOError, match="but only 64 remain"):
                    list(iter_records(src))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 1 << 20
            src.close()

    def test_file_source_never_reads_past_the_end(self):
        class CountingIO(io.BytesIO):
            requested = 0

            def read(self, n=-1):
                CountingIO.requested = max(CountingIO.requested, n)
                return super().read(n)

        data = head(1, 4) + b"abcd" + head(2, MAX_PART_LENGTH)
        src = FileSource(CountingIO(data), "mem.rec")
        with pytest.raises(RecordIOError, match="mem.rec: record at offset 0"):
            read_record_at(src, 0)
        assert 0 < CountingIO.requested <= len(data)

    def test_file_changed_under_the_reader(self):
        data = frame_record(b"x" * 100)
        src = FileSource(io.BytesIO(data[:50]), "shrunk.rec", size=len(data))
        with pytest.raises(RecordIOError, match="shrunk.rec: short read at offset 0"):
            read_record_at(src, 0)


class TestFileSourceWindow:
    def records(self, n: int, size: int) -> tuple[bytes, list[int]]:
        rng = random.Random(n)
        out, offsets, pos = [], [], 0
        for _ in range(n):
            framed = frame_record(rng.randbytes(rng.randint(size // 2, size)))
            offsets.append(pos)
            out.append(framed)
            pos += len(framed)
        return b"".join(out), offsets

    def test_random_reads_fetch_about_one_record(self):
        data, offsets = self.records(40, 20_000)
        src = FileSource(io.BytesIO(data), "r.rec")
        order = offsets[::-1][::3] + offsets[1::3]
        for off in order:
            read_record_at(src, off)
        assert src.requests <= len(order)

    def test_large_records_take_two_requests(self):
        data, offsets = self.records(6, 300_000)
        src = FileSource(io.BytesIO(data), "big.rec")
        for off in offsets[::-2]:
            read_record_at(src, off)
        assert src.requests <= 2 * len(offsets[::-2])

    def test_sequential_scan_grows_the_window(self):
        data, offsets = self.records(300, 30_000)  # ~7 MB
        src = FileSource(io.BytesIO(data), "s.rec")
        assert [off for off, _ in iter_records(src)] == offsets
        assert src.requests <= 12

    def test_bad_readahead(self):
        with pytest.raises(ValueError, match="min_readahead"):
            FileSource(io.BytesIO(b""), "x", min_readahead=0)
