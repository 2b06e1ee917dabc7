"""Where `pack_shard` reads the images from: `_Reader`, one fsspec filesystem under the source
root shared by the worker threads (for an object store also the instance
`recordio_core.storage.fetch` fetches with), and `read_local_file`, the quick way to read a local
file."""

from __future__ import annotations

import os

from recordio_core.format.lst import LstEntry
from recordio_core.storage.fetch import (
    FetchStats,
    can_fetch_async,
    fetch_filesystem,
    is_permanent,
    read_reason,
)
from recordio_core.storage.fsio import StorageOptions, get_fs, is_local, join_url

# Permanent read errors (missing, forbidden, a folder) make a reject; transient ones (a dropped
# connection, a timeout, an I/O error) fail the shard so that the caller's retry packs it
# completely: a flaky source never turns good images into rejects. (`recordio_core.storage.fetch`.)
_is_permanent = is_permanent
_read_reason = read_reason


class _Reader:
    """Reads image bytes from the source root; one fsspec filesystem, shared by threads.

    For an async filesystem (S3, GCS, HTTP...) `fetch_fs` is the instance to fetch with on its
    loop (`recordio_core.storage.fetch`; for S3 with a connection pool of `io_concurrency`), else
    None.
    """

    def __init__(self, root: str, source_options: StorageOptions, io_concurrency: int = 1) -> None:
        self.root = root
        self.fs, self.root_path = get_fs(root, source_options)
        self.local = is_local(self.fs)
        self.fetch_fs = None
        if not self.local and can_fetch_async(self.fs):
            self.fetch_fs, self.root_path = fetch_filesystem(root, source_options, io_concurrency)
        self.stats = FetchStats()

    def path(self, entry: LstEntry) -> str:
        return join_url(self.root_path, entry.path)

    def url(self, entry: LstEntry) -> str:
        return join_url(self.root, entry.path)

    def read(self, entry: LstEntry) -> bytes:
        if self.local:
            return read_local_file(join_url(self.root_path, entry.path))
        return self.fs.cat_file(join_url(self.root_path, entry.path))


def read_local_file(path: str) -> bytes:
    """A local file's bytes with a few system calls and no file object (half the time of
    `open(path, "rb").read()` on a small file). Raises what `open` and `read` raise."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size) if size > 0 else b""
        if len(data) < size or size == 0:  # a short read, or a size the file does not tell
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)
