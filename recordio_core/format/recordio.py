"""Drop-in replacement for `mxnet.recordio`: same names, arguments and results.

Switch with one import::

    from recordio_core import recordio   # instead of: from mxnet import recordio

Differences, on purpose:
- URIs are fsspec URLs (`/path`, `file://`, `s3://bucket/key`, `memory://`);
  `storage_options` is passed to fsspec untouched.
- Images are decoded and encoded with Pillow, not OpenCV. `unpack_img` returns arrays in
  **RGB** order (OpenCV/MXNet return BGR); pass `channel_order="bgr"` to get MXNet's order,
  and the same argument to `pack_img` when your array is BGR.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import struct
from collections import namedtuple
from typing import Any, Literal

import numpy as np

from recordio_core.format.errors import IndexFileError, RecordIOError
from recordio_core.format.framing import (
    FileSource,
    MmapSource,
    RecordWriter,
    find_record_start,
    open_source,
    read_record_at,
)
from recordio_core.format.idx import format_idx, parse_idx
from recordio_core.storage.fsio import get_fs, is_local

# The current process id, kept up to date across fork() so the per-record process check is a
# comparison, not a system call (MXNet calls getpid through multiprocessing on every read).
_PID = os.getpid()


def _after_fork_in_child() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)

IRHeader = namedtuple("HEADER", ["flag", "label", "id", "id2"])
"""Image record header: `flag` (label count, 0 for one label), `label`, `id`, `id2`."""

_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)
ChannelOrder = Literal["rgb", "bgr"]


def pack(header: IRHeader | tuple, s: bytes) -> bytes:
    """Pack a header and a byte string into a record payload (MXNet's rules: a number label
    forces flag 0; an array label sets flag to its size, stores the labels after the header
    and puts 0 in `label`)."""
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        header = header._replace(flag=0)
    else:
        label = np.asarray(header.label, dtype=np.float32)
        header = header._replace(flag=label.size, label=0)
        s = label.tobytes() + s
    return struct.pack(_IR_FORMAT, *header) + s


def unpack(s: bytes) -> tuple[IRHeader, bytes]:
    """Split a record payload into `(IRHeader, bytes)`; label is a float32 array if flag > 0."""
    if len(s) < _IR_SIZE:
        raise RecordIOError(
            f"record of {len(s)} bytes is too short for a {_IR_SIZE}-byte image header"
        )
    header = IRHeader(*struct.unpack_from(_IR_FORMAT, s))
    s = s[_IR_SIZE:]
    if header.flag > 0:
        if header.flag * 4 > len(s):
            raise RecordIOError(
                f"image header declares {header.flag} labels but only {len(s)} bytes follow it"
            )
        header = header._replace(label=np.frombuffer(s, np.float32, header.flag))
        s = s[header.flag * 4 :]
    return header, s


def unpack_img(
    s: bytes, iscolor: int = -1, channel_order: ChannelOrder = "rgb"
) -> tuple[IRHeader, np.ndarray]:
    """Unpack a record into its header and a decoded uint8 image array.

    `iscolor`: 1 three channels, 0 gray (a 2-D array), -1 as stored (alpha kept).
    Channels come back in RGB(A) order unless `channel_order="bgr"` (MXNet's order).
    """
    from recordio_core.images.image import decode_array

    header, img = unpack(s)
    return header, decode_array(img, iscolor=iscolor, channel_order=channel_order)


def pack_img(
    header: IRHeader | tuple,
    img: np.ndarray,
    quality: int = 95,
    img_fmt: str = ".jpg",
    channel_order: ChannelOrder = "rgb",
) -> bytes:
    """Encode an image array (JPEG quality 0-100, or PNG compression 0-9) and pack it.

    The array is taken as RGB(A) unless `channel_order="bgr"` (what MXNet/OpenCV code holds).
    Like OpenCV under MXNet, `quality` is clamped to the format's range, so the default 95
    with `img_fmt=".png"` means compression 9.
    """
    from recordio_core.images.image import encode_array

    top = 9 if img_fmt.lower() == ".png" else 100
    quality = min(max(int(quality), 0), top)
    return pack(
        header, encode_array(img, img_fmt=img_fmt, quality=quality, channel_order=channel_order)
    )


class MXRecordIO:
    """Sequential RecordIO reader (`flag="r"`) or writer (`flag="w"`) over an fsspec URL."""

    def __init__(self, uri: str, flag: str, storage_options: dict[str, Any] | None = None) -> None:
        self.uri = uri
        self.flag = flag
        self.storage_options = storage_options
        self.pid: int | None = None
        self.is_open = False
        self.writable = False
        self._src: MmapSource | FileSource | None = None
        self._file: Any = None
        self._writer: RecordWriter | None = None
        self._pos = 0
        self.open()

    def open(self) -> None:
        if self.flag == "w":
            fs, path = get_fs(self.uri, self.storage_options)
            if is_local(fs):
                parent = os.path.dirname(path)
                if parent:
                    os.makedirs(parent, exist_ok=True)
                self._file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
            else:
                self._file = fs.open(path, "wb")
            self._writer = RecordWriter(self._file)
            self.writable = True
        elif self.flag == "r":
            self._src = open_source(self.uri, self.storage_options)
            self._pos = 0
            self.writable = False
        else:
            raise ValueError(f"Invalid flag {self.flag!r}: use 'r' to read or 'w' to write")
        self.pid = _PID
        self.is_open = True

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the arguments, not the open file: the copy reopens it (a reader from the
        start, like MXNet's). Unlike MXNet, the original stays open and keeps its position.

        An open writer cannot be pickled: its copy would truncate the file being written.
        """
        if self.is_open and self.writable:
            raise TypeError(
                f"cannot pickle {type(self).__name__} writing {self.uri}: close it first (a "
                "copy would reopen the file for writing and truncate it)"
            )
        state = dict(self.__dict__)
        for key in ("_src", "_file", "_writer"):
            state[key] = None
        state["_pos"] = 0
        state["pid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        is_open = state["is_open"]
        self.is_open = False
        if is_open:
            self.open()

    def __enter__(self) -> MXRecordIO:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_pid(self, allow_reset: bool = False) -> None:
        """In a child process (after fork): reopen if `allow_reset`, else refuse (as MXNet)."""
        if self.pid != _PID:
            if allow_reset:
                self.reset()
            else:
                raise RuntimeError("Forbidden operation in multiple processes")

    def close(self) -> None:
        if not getattr(self, "is_open", False):
            return
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None
        if self._src is not None:
            self._src.close()
            self._src = None
        self.is_open = False
        self.pid = None

    def reset(self) -> None:
        """Close and reopen: a reader starts over from the beginning."""
        self.close()
        self.open()

    def _not_open(self, action: str) -> RuntimeError:
        if not self.is_open:
            return RuntimeError(f"{self.uri}: the record file is closed; cannot {action}")
        mode = "writing" if self.writable else "reading"
        return RuntimeError(f"{self.uri}: opened for {mode}; cannot {action}")

    def write(self, buf: bytes) -> None:
        """Append one record (its payload bytes)."""
        writer = self._writer
        if writer is None:
            raise self._not_open("write")
        self._check_pid(allow_reset=False)
        writer.write(bytes(buf))

    def read(self) -> bytes | None:
        """The next record's payload, or None at the end of the file.

        Like MXNet, reading on in a child process (after fork) is refused; `reset()` first.
        """
        src = self._src
        if src is None:
            raise self._not_open("read")
        if self.pid != _PID:
            self._check_pid(allow_reset=False)
        pos = self._pos
        if pos >= src.size:
            return None
        payload, self._pos = read_record_at(src, pos)
        return payload

    def tell(self) -> int:
        if self.writable and self._writer is not None:
            return self._writer.tell()
        return self._pos

    def _seek(self, pos: int) -> None:
        if self._src is None:
            raise self._not_open("seek")
        if pos < 0 or pos > self._src.size:
            raise RecordIOError(
                f"{self.uri}: offset {pos} is outside the file ({self._src.size} bytes)"
            )
        self._pos = pos

    def seek_to_record_start(self, pos: int) -> int:
        """Move to the first record that starts at or after byte `pos`; return its offset."""
        if self._src is None:
            raise self._not_open("seek")
        self._pos = find_record_start(self._src, pos)
        return self._pos


class MXIndexedRecordIO(MXRecordIO):
    """RecordIO with an `.idx` for random access by key (`read_idx`, `write_idx`, `seek`)."""

    def __init__(
        self,
        idx_path: str,
        uri: str,
        flag: str,
        key_type: type = int,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.idx_path = idx_path
        self.idx: dict[Any, int] = {}
        self.keys: list[Any] = []
        self.key_type = key_type
        self.fidx: Any = None
        super().__init__(uri, flag, storage_options)

    def open(self) -> None:
        super().open()
        try:
            self._open_index()
        except BaseException:
            self.close()
            raise

    def _open_index(self) -> None:
        self.idx = {}
        self.keys = []
        fs, path = get_fs(self.idx_path, self.storage_options)
        if self.writable:
            if is_local(fs):
                parent = os.path.dirname(path)
                if parent:
                    os.makedirs(parent, exist_ok=True)
            self.fidx = fs.open(path, "w")
        else:
            with fs.open(path, "rb") as f:
                raw = f.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IndexFileError(self.idx_path, 0, f"not UTF-8 text ({exc})") from None
            size = self._src.size if self._src is not None else 0
            idx = self.idx
            keys = self.keys
            for key, offset in parse_idx(text, source=self.idx_path, key_type=self.key_type):
                if offset >= size:
                    raise RecordIOError(
                        f"{self.idx_path}: offset {offset} for key {key!r} is past the end of "
                        f"{self.uri} ({size} bytes)"
                    )
                idx[key] = offset
                keys.append(key)

    def close(self) -> None:
        if not getattr(self, "is_open", False):
            return
        super().close()
        if self.fidx is not None:
            self.fidx.close()
            self.fidx = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["fidx"] = None
        if state["is_open"]:  # reopening re-reads the index: keep pickles small
            state["idx"] = {}
            state["keys"] = []
        return state

    def seek(self, idx: Any) -> None:
        """Position the reader at the record with key `idx` (reopens in a child process)."""
        if self._src is None:
            raise self._not_open("seek")
        if self.pid != _PID:
            self._check_pid(allow_reset=True)
        try:
            pos = self.idx[idx]
        except KeyError:
            raise KeyError(f"{self.idx_path}: no record with key {idx!r}") from None
        self._seek(pos)

    def read_idx(self, idx: Any) -> bytes | None:
        """The payload of the record with key `idx` (`seek(idx)` then `read()`, in one step)."""
        src = self._src
        if src is None or self.pid != _PID:
            self.seek(idx)
            return self.read()
        try:
            pos = self.idx[idx]
        except KeyError:
            raise KeyError(f"{self.idx_path}: no record with key {idx!r}") from None
        payload, self._pos = read_record_at(src, pos)
        return payload

    def write_idx(self, idx: Any, buf: bytes) -> None:
        """Append a record and its `key<TAB>offset` line to the index."""
        key = self.key_type(idx)
        pos = self.tell()
        self.write(buf)
        self.fidx.write(format_idx([(key, pos)]))
        self.idx[key] = pos
        self.keys.append(key)
