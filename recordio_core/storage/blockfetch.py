"""Fetch record blocks ahead: one ranged read per block, several in flight, results in order.

`BlockFetcher.stream(blocks)` keeps up to `prefetch` blocks being fetched on a small thread
pool (on s3fs each thread's `cat_file` becomes a coroutine on the filesystem's own I/O loop,
so the requests are truly concurrent) and yields `(block, bytes)` in the order given. At most
`prefetch + 1` blocks are held at once: those in flight and the one being consumed. With a
`BlockCache`, a block found on disk is not fetched, and a fetched one is stored.

`block_records(block, data, extents, name)` cuts a fetched block into record payloads with the
ordinary framing checks (a bad record is a `RecordIOError` naming the shard and offset).
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from recordio_core.format.errors import RecordIOError
from recordio_core.format.framing import HEAD_SIZE, read_record_at
from recordio_core.reading.shuffle import Block, Extent
from recordio_core.storage.blockcache import BlockCache, cache_key
from recordio_core.storage.fsio import StorageOptions, get_fs


class WindowSource:
    """Bytes `[start, start + len(data))` of a file, read like a `FileSource` (absolute
    offsets; `size` is the window's end, so nothing past it is ever read)."""

    mm = None

    def __init__(self, name: str, start: int, data: bytes) -> None:
        self.name = name
        self.start = start
        self.data = data
        self.size = start + len(data)

    def pread(self, offset: int, n: int) -> bytes:
        lo = offset - self.start
        if lo < 0:
            raise RecordIOError(f"{self.name}: offset {offset} is before the fetched block")
        return self.data[lo : lo + n]

    def head(self, offset: int) -> tuple[int, int]:
        raw = self.pread(offset, HEAD_SIZE)
        if len(raw) < HEAD_SIZE:
            raise IndexError(offset)
        return int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")

    def close(self) -> None:
        self.data = b""


def block_records(
    block: Block, data: bytes, extents: Sequence[Extent], name: str
) -> Iterator[tuple[int, bytes]]:
    """`(offset, payload)` of the block's records (`extents[block.lo:block.hi]`)."""
    src = WindowSource(name, block.start, data)
    for ext in extents[block.lo : block.hi]:
        payload, _ = read_record_at(src, ext.offset)
        yield ext.offset, payload


class BlockFetcher:
    """Ranged reads of blocks of the files `urls` (one per shard number), `prefetch` at once.

    `versions[i]` identifies the content of `urls[i]` (see `blockcache.object_version`); it
    keys the cache. Call `close()` (or use as a context manager) to stop the threads.
    Counters: `fetched` blocks and `fetched_bytes` read from storage (cache hits excluded).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        prefetch: int = 4,
        storage_options: StorageOptions = None,
        versions: Sequence[str] | None = None,
        cache: BlockCache | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self.urls = list(urls)
        self.versions = list(versions) if versions is not None else [""] * len(self.urls)
        self.prefetch = prefetch
        self.cache = cache
        self._fs = [get_fs(url, storage_options) for url in self.urls]
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.fetched = 0
        self.fetched_bytes = 0

    def fetch(self, block: Block) -> bytes:
        """The block's bytes: from the cache, else one ranged read (then cached)."""
        url = self.urls[block.shard]
        key = None
        if self.cache is not None:
            key = cache_key(url, self.versions[block.shard], block.start, block.end)
            data = self.cache.get(key, block.nbytes)
            if data is not None:
                return data
        fs, path = self._fs[block.shard]
        data = fs.cat_file(path, start=block.start, end=block.end)
        if len(data) != block.nbytes:
            raise RecordIOError(
                f"{url}: short read of bytes {block.start}-{block.end}: got {len(data)} of "
                f"{block.nbytes} (did the file change since its index was read?)"
            )
        with self._lock:
            self.fetched += 1
            self.fetched_bytes += len(data)
        if self.cache is not None and key is not None:
            self.cache.put(key, data)
        return data

    def stream(self, blocks: Iterable[Block]) -> Iterator[tuple[Block, bytes]]:
        """Yield `(block, bytes)` in order, with up to `prefetch` reads ahead."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="recordio-fetch")
        pool = self._pool
        it = iter(blocks)
        pending: collections.deque[tuple[Block, Future[bytes]]] = collections.deque()

        def submit() -> None:
            for block in it:
                pending.append((block, pool.submit(self.fetch, block)))
                return

        try:
            for _ in range(self.prefetch):
                submit()
            while pending:
                block, future = pending.popleft()
                data = future.result()
                submit()
                yield block, data
        finally:
            for _, future in pending:
                future.cancel()
            for _, future in pending:
                with contextlib.suppress(BaseException):
                    future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BlockFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
