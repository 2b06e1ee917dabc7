"""RecordIO framing (dmlc-core): parts of `magic | lrec | data | padding`.

Pure functions over bytes plus small streaming classes. See `docs`: `lrec = cflag << 29 |
length`; cflag 0 whole, 1 first, 2 middle, 3 last part. The writer cuts a payload at every
4-aligned occurrence of the magic word and drops that word; the reader puts it back.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from typing import IO, Protocol

import numpy as np

from recordio_core.format.errors import RecordIOError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
MAX_PART_LENGTH = (1 << LENGTH_BITS) - 1  # 512 MiB - 1: a part's data must fit in 29 bits
_HEAD = struct.Struct("<II")
_unpack_head = _HEAD.unpack_from
HEAD_SIZE = _HEAD.size
CFLAG_WHOLE, CFLAG_FIRST, CFLAG_MIDDLE, CFLAG_LAST = 0, 1, 2, 3


def encode_lrec(cflag: int, length: int) -> int:
    if not 0 <= cflag <= 3:
        raise ValueError(f"cflag must be 0..3, got {cflag}")
    if not 0 <= length <= MAX_PART_LENGTH:
        raise ValueError(f"part length must be in [0, 2**29), got {length}")
    return (cflag << LENGTH_BITS) | length


def decode_lrec(lrec: int) -> tuple[int, int]:
    """Return `(cflag, length)`."""
    return lrec >> LENGTH_BITS, lrec & MAX_PART_LENGTH


def padding(length: int) -> int:
    """Zero bytes that follow `length` data bytes to reach a multiple of 4."""
    return (-length) & 3


# Above this size the magic word is found by comparing 32-bit words with numpy: the payload's
# bytes often contain the word's first byte (0x0A), which makes `bytes.find` crawl.
_NUMPY_SCAN_MIN = 8192


def aligned_magic_offsets(payload: bytes | bytearray | memoryview) -> list[int]:
    """Offsets of the magic word at 4-aligned positions (only whole words) in `payload`."""
    n = len(payload)
    if n >= _NUMPY_SCAN_MIN:
        words = np.frombuffer(payload, dtype="<u4", count=n >> 2)
        return (np.flatnonzero(words == MAGIC) << 2).tolist()
    data = bytes(payload) if isinstance(payload, memoryview) else payload
    hits: list[int] = []
    end = n - 3
    pos = data.find(MAGIC_BYTES)
    while pos != -1 and pos < end:
        if pos & 3 == 0:
            hits.append(pos)
            pos = data.find(MAGIC_BYTES, pos + 4)
        else:
            pos = data.find(MAGIC_BYTES, pos + 1)
    return hits


def _check_length(payload: bytes) -> None:
    if len(payload) > MAX_PART_LENGTH:
        raise ValueError(
            f"a record payload must be shorter than 2**29 bytes, got {len(payload)} bytes"
        )


def _split_at(payload: bytes, hits: list[int]) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    for hit in hits:
        chunks.append(payload[start:hit])
        start = hit + 4
    chunks.append(payload[start:])
    return chunks


def split_payload(payload: bytes) -> list[bytes]:
    """Cut a payload into part data at each aligned magic word (the word itself is dropped)."""
    hits = aligned_magic_offsets(payload)
    return _split_at(payload, hits) if hits else [payload]


def _frame_parts(chunks: list[bytes]) -> bytes:
    out = bytearray()
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        cflag = CFLAG_FIRST if i == 0 else (CFLAG_LAST if i == last else CFLAG_MIDDLE)
        out += _HEAD.pack(MAGIC, (cflag << LENGTH_BITS) | len(chunk))
        out += chunk
    out += b"\0" * padding(len(chunks[-1]))
    return bytes(out)


def frame_record(payload: bytes) -> bytes:
    """The exact bytes dmlc-core's writer emits for one record."""
    _check_length(payload)
    hits = aligned_magic_offsets(payload)
    if not hits:
        n = len(payload)
        return _HEAD.pack(MAGIC, n) + payload + b"\0" * padding(n)
    return _frame_parts(_split_at(payload, hits))


class ByteSource(Protocol):
    """Random access to the bytes of a `.rec`: its size and positional reads."""

    name: str
    size: int

    def pread(self, offset: int, n: int) -> bytes: ...

    def close(self) -> None: ...


class MmapSource:
    """A local file mapped into memory: the fastest way to read records."""

    def __init__(self, path: str) -> None:
        self.name = path
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        # `mm` is the mapping (None for an empty file); `read_record_at` slices it directly.
        self.mm: mmap.mmap | None = (
            mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) if self.size else None
        )

    def pread(self, offset: int, n: int) -> bytes:
        if self.mm is None:
            return b""
        return self.mm[offset : offset + n]

    def head(self, offset: int) -> tuple[int, int]:
        if self.mm is None or offset + HEAD_SIZE > self.size:
            raise IndexError(offset)
        return _HEAD.unpack_from(self.mm, offset)

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileSource:
    """Any seekable binary file object (an fsspec file for S3 and other remote stores).

    Reads go through one window buffer. A read the window cannot serve fetches
    `[offset, offset + max(n, readahead))` with a single `read` call (one range request on an
    object store opened with `cache_type="none"`). The readahead doubles, up to
    `max_readahead`, while reads continue where the window ends, and falls back to
    `min_readahead` after a jump: a sequential scan makes few large requests, and a random
    read by key fetches about one record. Not thread-safe (one reader per source).
    """

    mm = None  # not mapped: `read_record_at` takes the general path

    def __init__(
        self,
        fileobj: IO[bytes],
        name: str,
        size: int | None = None,
        *,
        min_readahead: int = 64 << 10,
        max_readahead: int = 8 << 20,
    ) -> None:
        if not 0 < min_readahead <= max_readahead:
            raise ValueError(
                f"need 0 < min_readahead <= max_readahead, got {min_readahead}, {max_readahead}"
            )
        self.name = name
        self._f = fileobj
        if size is None:
            fileobj.seek(0, os.SEEK_END)
            size = fileobj.tell()
        self.size = size
        self._min_ra = min_readahead
        self._max_ra = max_readahead
        self._ra = min_readahead
        self._buf = b""
        self._buf_start = 0
        self.requests = 0  # reads issued to the underlying file (for tests and tuning)

    def _fetch(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        self.requests += 1
        if len(data) != n:
            raise RecordIOError(
                f"{self.name}: short read at offset {offset}: asked for {n} bytes, got "
                f"{len(data)} (the file is {self.size} bytes; did it change while open?)"
            )
        return data

    def pread(self, offset: int, n: int) -> bytes:
        """Up to `n` bytes at `offset` (fewer only at the end of the file)."""
        n = min(n, self.size - offset)
        if n <= 0:
            return b""
        start, buf = self._buf_start, self._buf
        end = start + len(buf)
        if start <= offset and offset + n <= end:
            return buf[offset - start : offset - start + n]
        if start <= offset <= end and buf:  # continuing past the window: read on, further
            self._ra = min(self._ra * 2, self._max_ra)
            kept = buf[offset - start :]
            want = min(max(n - len(kept), self._ra), self.size - end)
            window = kept + self._fetch(end, want)
        else:  # a jump
            self._ra = self._min_ra
            window = self._fetch(offset, min(max(n, self._ra), self.size - offset))
        self._buf, self._buf_start = window, offset
        return window[:n]

    def head(self, offset: int) -> tuple[int, int]:
        data = self.pread(offset, HEAD_SIZE)
        if len(data) < HEAD_SIZE:
            raise IndexError(offset)
        return _HEAD.unpack(data)

    def close(self) -> None:
        self._buf = b""
        self._f.close()


def read_record_at(src: MmapSource | FileSource, offset: int) -> tuple[bytes, int]:
    """Read the record starting at `offset`; return `(payload, offset of the next record)`.

    Raises `RecordIOError` naming the file and offset for a wrong magic word, a part flag out
    of order, a length past the end of the file, or a truncated record. Never reads more than
    the file holds.
    """
    size = src.size
    if offset < 0 or offset & 3 or offset >= size:
        raise RecordIOError(
            f"{src.name}: offset {offset} is not a record start (file size {size} bytes)"
        )
    mm = src.mm
    if mm is not None and offset + HEAD_SIZE <= size:
        # Fast path: a whole record (cflag 0) in a mapped file, one slice and no list.
        magic, lrec = _unpack_head(mm, offset)
        end = offset + HEAD_SIZE + lrec
        if magic == MAGIC and lrec <= MAX_PART_LENGTH and end <= size:
            return mm[offset + HEAD_SIZE : end], end + ((-lrec) & 3)
    return _read_record_slow(src, offset)


def _read_record_slow(src: MmapSource | FileSource, offset: int) -> tuple[bytes, int]:
    """`read_record_at` for multi-part records, non-mapped files, and every error case."""
    size = src.size
    parts: list[bytes] = []
    pos = offset
    while True:
        try:
            magic, lrec = src.head(pos)
        except IndexError:
            raise RecordIOError(
                f"{src.name}: truncated record at offset {offset}: the file ends at {size} "
                f"bytes inside a part header at {pos}"
            ) from None
        if magic != MAGIC:
            where = "" if pos == offset else f"record at offset {offset} is corrupt: "
            raise RecordIOError(
                f"{src.name}: {where}no RecordIO magic word at offset {pos} (found "
                f"0x{magic:08X}, expected 0x{MAGIC:08X}); the offset is not at a record start "
                "or the file is corrupt"
            )
        cflag, length = lrec >> LENGTH_BITS, lrec & MAX_PART_LENGTH
        first = pos == offset
        if first and cflag not in (CFLAG_WHOLE, CFLAG_FIRST):
            raise RecordIOError(
                f"{src.name}: offset {pos} holds a continuation part (cflag {cflag}), "
                "not a record start"
            )
        if not first and cflag not in (CFLAG_MIDDLE, CFLAG_LAST):
            raise RecordIOError(
                f"{src.name}: record at offset {offset} is cut short: part at {pos} has cflag "
                f"{cflag}, expected a middle or last part"
            )
        data_start = pos + HEAD_SIZE
        if length > size - data_start:
            raise RecordIOError(
                f"{src.name}: record at offset {offset}: part at {pos} declares {length} bytes "
                f"but only {size - data_start} remain in the file"
            )
        data = src.pread(data_start, length)
        pos = data_start + length
        if cflag in (CFLAG_WHOLE, CFLAG_LAST):
            pos += (-length) & 3
            if parts:
                parts.append(data)
                return MAGIC_BYTES.join(parts), pos
            return data, pos
        parts.append(data)


def is_record_start(src: MmapSource | FileSource, offset: int) -> bool:
    """True if `offset` holds a magic word whose part starts a record (cflag 0 or 1)."""
    try:
        magic, lrec = src.head(offset)
    except IndexError:
        return False
    return magic == MAGIC and (lrec >> LENGTH_BITS) in (CFLAG_WHOLE, CFLAG_FIRST)


def find_record_start(src: MmapSource | FileSource, offset: int, end: int | None = None) -> int:
    """First 4-aligned offset >= `offset` (and < `end`) holding a record start, else `src.size`.

    This is how a reader resynchronises in the middle of a file (MXNet's byte-range parts).
    """
    stop = src.size if end is None else min(end, src.size)
    pos = (offset + 3) & ~3
    block = 1 << 20
    while pos < stop:
        chunk = src.pread(pos, min(block, stop - pos) + 4)
        i = chunk.find(MAGIC_BYTES)
        while i != -1:
            cand = pos + i
            if cand >= stop:
                break
            if cand & 3 == 0 and is_record_start(src, cand):
                return cand
            i = chunk.find(MAGIC_BYTES, i + 1)
        pos += block
    return src.size


def open_source(url: str, storage_options: dict | None = None) -> MmapSource | FileSource:
    """Open a `.rec` URL for random access (mmap for local files, fsspec otherwise)."""
    from recordio_core.storage.fsio import get_fs, is_local

    fs, path = get_fs(url, storage_options)
    if is_local(fs):
        return MmapSource(path)
    size = fs.size(path)
    # FileSource does its own adaptive read-ahead: ask fsspec for exact ranges
    return FileSource(fs.open(path, "rb", cache_type="none"), url, size)


def iter_records(
    src: MmapSource | FileSource, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield `(offset, payload)` for records that start in `[start, end)`."""
    stop = src.size if end is None else min(end, src.size)
    pos = start
    while pos < stop:
        payload, nxt = read_record_at(src, pos)
        yield pos, payload
        pos = nxt


class RecordWriter:
    """Append records to a binary file object; `write` returns each record's offset."""

    def __init__(self, fileobj: IO[bytes], start: int = 0) -> None:
        self._f = fileobj
        self._pos = start

    def tell(self) -> int:
        return self._pos

    def write(self, payload: bytes) -> int:
        """Append one record (framed as `frame_record` does); return its offset."""
        offset = self._pos
        _check_length(payload)
        hits = aligned_magic_offsets(payload)
        write = self._f.write
        if hits:
            data = _frame_parts(_split_at(payload, hits))
            write(data)
            self._pos += len(data)
            return offset
        n = len(payload)
        pad = (-n) & 3
        write(_HEAD.pack(MAGIC, n))  # header, payload and padding without joining them
        write(payload)
        if pad:
            write(b"\0" * pad)
        self._pos += HEAD_SIZE + n + pad
        return offset
