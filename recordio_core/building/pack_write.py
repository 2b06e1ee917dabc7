"""Writing a shard's files: `_ShardFiles` holds the `.idx`, `.lst` and `.rec` being written
(to temporary names, committed together), appends each `_Batch` to them and adds up what
becomes the `ShardResult`; `_HashingWriter` writes one file while hashing and counting its
bytes; `_remove_if_exists` removes an old `.idx` before the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from typing import IO, Any

from recordio_core.building.pack_batch import _Batch
from recordio_core.building.pack_options import Reject, ShardResult
from recordio_core.storage.fsio import StorageOptions, atomic_write, get_fs, is_local

_HASH_QUEUE = 16  # writes (batches of records, ~2 MiB at most each) waiting to be hashed


class _HashingWriter:
    """Writes to a file object while hashing and counting the bytes.

    With `background=True` the hashing runs on a helper thread (hashlib releases the GIL), so
    hashing a shard's data overlaps with producing it; `hexdigest()` waits for it. The thread
    starts at the first write, after `pack_shard` has forked any worker processes.
    """

    def __init__(self, f: IO[bytes], *, background: bool = False) -> None:
        self._f = f
        self._sha = hashlib.sha256()
        self.size = 0
        self._background = background
        # bounded: if hashing ever falls behind, writing waits instead of queueing the shard
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_HASH_QUEUE)
        self._thread: threading.Thread | None = None

    @staticmethod
    def _hash_loop(sha: Any, todo: queue.Queue[bytes | None]) -> None:
        while (data := todo.get()) is not None:
            sha.update(data)

    def write(self, data: bytes) -> None:
        self._f.write(data)
        if self._background:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._hash_loop, args=(self._sha, self._queue), daemon=True
                )
                self._thread.start()
            self._queue.put(data)
        else:
            self._sha.update(data)
        self.size += len(data)

    def close(self) -> None:
        """Stop the helper thread, if any (idempotent)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._background = False

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


def _remove_if_exists(url: str, storage_options: StorageOptions) -> None:
    fs, path = get_fs(url, storage_options)
    if is_local(fs):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    with contextlib.suppress(FileNotFoundError):
        if fs.exists(path):
            fs.rm(path)


class _ShardFiles:
    """A shard's `.idx`, `.lst` (unless `lst_url` is empty) and `.rec` being written, with what
    the batches written to them add up to.

    Each file is an `atomic_write` entered on `stack` in the order idx, lst, rec, so that
    leaving `stack` without an exception commits them in the reverse order (rec, lst, idx),
    and with one commits none. The `.rec` is hashed on a helper thread, stopped when `stack`
    closes.
    """

    def __init__(
        self,
        stack: contextlib.ExitStack,
        rec_url: str,
        idx_url: str,
        lst_url: str,
        storage_options: StorageOptions,
    ) -> None:
        self.rec_url, self.idx_url, self.lst_url = rec_url, idx_url, lst_url
        self.idx = _HashingWriter(stack.enter_context(atomic_write(idx_url, storage_options)))
        self.lst = (
            _HashingWriter(stack.enter_context(atomic_write(lst_url, storage_options)))
            if lst_url
            else None
        )
        self.rec = _HashingWriter(
            stack.enter_context(atomic_write(rec_url, storage_options)), background=True
        )
        stack.callback(self.rec.close)
        self.rejects: list[Reject] = []
        self.warnings: list[Reject] = []
        self.digests = bytearray()
        self.dhashes: list[int] = []
        self.records = 0

    def write(self, batch: _Batch) -> None:
        """Append `batch`'s records, `.idx` lines and `.lst` lines; note its rejects, warnings
        and facts."""
        self.digests += batch.digests
        self.dhashes += batch.dhashes
        offset = self.rec.size
        idx_lines = []
        for entry, length, reason, warning in zip(
            batch.entries, batch.lengths, batch.reasons, batch.warnings, strict=True
        ):
            if warning:
                self.warnings.append(Reject(entry.index, entry.path, warning))
            if length:
                idx_lines.append(f"{entry.index}\t{offset}\n")
                offset += length
            else:
                self.rejects.append(Reject(entry.index, entry.path, reason))
        if batch.records:
            self.rec.write(batch.records)
            self.idx.write("".join(idx_lines).encode("ascii"))
        if self.lst is not None and batch.lst:
            self.lst.write(batch.lst)
        self.records += len(idx_lines)

    def result(self) -> ShardResult:
        """What was written, once the files are committed (hashing waits for the `.rec`'s)."""
        return ShardResult(
            rec=self.rec_url,
            idx=self.idx_url,
            lst=self.lst_url,
            records=self.records,
            bytes=self.rec.size,
            sha256=self.rec.hexdigest(),
            idx_sha256=self.idx.hexdigest(),
            lst_sha256=self.lst.hexdigest() if self.lst is not None else "",
            rejects=tuple(self.rejects),
            warnings=tuple(self.warnings),
            digests=bytes(self.digests),
            dhashes=tuple(self.dhashes),
        )
