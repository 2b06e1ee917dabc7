"""A local folder of fetched byte ranges, with a size limit (least recently used first out).

    cache = BlockCache("/scratch/recflow-cache", limit_bytes=20 << 30)
    key = cache_key("s3://b/train-0.rec", version="1234:\\"etag\\"", start=0, end=8 << 20)
    data = cache.get(key)            # None when absent
    cache.put(key, data)             # written atomically; older entries evicted past the limit

A key names the object's URL, its **version** (size plus ETag or modification time, or the
manifest's sha256 when the store gives neither) and the range, hashed: a shard replaced in
place has a new version, so its old ranges are never served again (they age out). Entries are
files named by the key's hash; each is written to a temporary name and renamed, so a crash or
a concurrent reader never sees a partial entry. Using an entry refreshes its modification
time, which is the LRU clock; several processes may share a folder (a vanished entry is
simply a miss).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

SUFFIX = ".blk"
_VERSION_FIELDS = (
    "ETag",
    "etag",
    "md5Hash",
    "generation",
    "mtime",
    "LastModified",
    "last_modified",
    "updated",
    "created",
)


def object_version(info: Mapping[str, Any], sha256: str | None = None) -> str:
    """What identifies an object's content, from its fsspec `info`: the size and the first of
    ETag / mtime / ... present, else the `sha256` known from a manifest. (The same shard named
    through a manifest or by its URL gets the same version.)"""
    size = info.get("size")
    stamp = next((str(info[k]) for k in _VERSION_FIELDS if info.get(k) is not None), None)
    return f"{size}:{stamp if stamp is not None else 'sha256=' + (sha256 or '')}"


def cache_key(url: str, version: str, start: int, end: int) -> str:
    """The hex name of the entry for bytes `[start, end)` of `url` at `version`."""
    raw = "\0".join((url, version, str(start), str(end)))
    return hashlib.sha256(raw.encode()).hexdigest()


class BlockCache:
    """Byte ranges on local disk under `folder`, at most `limit_bytes` in all (None: no limit).

    Thread-safe. The folder is created when missing. Entries larger than the limit are not
    kept. Counters `hits`, `misses` and `evictions` are for tests and tuning.
    """

    def __init__(self, folder: str | os.PathLike[str], limit_bytes: int | None = None) -> None:
        if limit_bytes is not None and (
            isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 1
        ):
            raise ValueError(f"limit_bytes must be a positive integer or None, got {limit_bytes!r}")
        self.folder = os.fspath(folder)
        self.limit_bytes = limit_bytes
        os.makedirs(self.folder, exist_ok=True)
        self._lock = threading.Lock()
        self._total = sum(size for _, size, _ in self._entries())
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, key + SUFFIX)

    def _entries(self) -> list[tuple[str, int, float]]:
        """`(path, size, last use)` of every entry now in the folder."""
        out: list[tuple[str, int, float]] = []
        with os.scandir(self.folder) as it:
            for e in it:
                if not e.name.endswith(SUFFIX) or e.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = e.stat()
                    out.append((e.path, st.st_size, st.st_mtime))
        return out

    def get(self, key: str, size: int | None = None) -> bytes | None:
        """The entry's bytes, or None. An entry whose length is not `size` (when given) is
        dropped and reported as absent."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            with self._lock:
                self.misses += 1
            return None
        if size is not None and len(data) != size:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            with self._lock:
                self.misses += 1
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # the LRU clock
        with self._lock:
            self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (atomically), then evict the least recently used entries
        until the folder is within the limit."""
        n = len(data)
        if self.limit_bytes is not None and n > self.limit_bytes:
            return
        path = self._path(key)
        tmp = os.path.join(self.folder, f".{key}.tmp-{uuid.uuid4().hex[:12]}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            existed = os.path.exists(path)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self._lock:
            if not existed:
                self._total += n
            if self.limit_bytes is not None and self._total > self.limit_bytes:
                self._evict(keep=path)

    def _evict(self, keep: str) -> None:
        # Rescan: other processes may share the folder. Oldest use first; never the new entry.
        entries = sorted(self._entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        for path, size, _ in entries:
            if total <= (self.limit_bytes or 0):
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                self.evictions += 1
            total -= size
        self._total = total

    @property
    def total_bytes(self) -> int:
        """Bytes held (as this process last counted them)."""
        return self._total
