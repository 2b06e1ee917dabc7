"""Fetching many objects from an object store at once: the I/O stage of packing.

On an object store every request waits tens of milliseconds for its first byte, so reading
images one after another (or on a few threads) pays that latency once per image. `fetch_ordered`
keeps up to `concurrency` requests in flight on the filesystem's own asyncio loop (fsspec's
`fsspecIO` thread, shared with every other sync instance) and hands the results back **in the
order asked**, as soon as each is ready, to the thread that iterates (any thread: no assumption
about the main thread, so it runs inside a Dask worker or a Prefect task thread as well).

- **One request per object.** S3 gets `_cat_file(path, max_concurrency=1)`: one GET, with no
  size lookup first (s3fs's default looks the size up with a HEAD unless the listing is cached).
- **Pool size.** botocore's connection pool (`max_pool_connections`, 10 by default) caps the
  requests in flight whatever the window; `fetch_filesystem` returns an S3 instance whose pool
  is raised to the concurrency (`config_kwargs` given by the user are kept otherwise).
- **Byte budget.** Bytes held (fetched but not yet taken by the caller, plus what requests in
  flight will bring) stay within `budget`, except that one object is always allowed when
  nothing is held, so an image larger than the budget still goes through: at most
  `max(budget, largest object)` when sizes are known (from the listing). When a size is not
  known, the request reserves the largest size seen so far (the whole budget until a first
  object has come back), so the bound can only be passed by objects larger than all those
  seen before them, each by its difference.
- **Errors.** A transient error (dropped connection, timeout, throttling, I/O error) is retried
  for that object alone, `attempts` times in all with exponential backoff; still failing, it
  is raised (the caller fails the shard so its retry packs it whole). A permanent error (not
  found, access denied, ...) is returned in place of the bytes: the caller makes it a reject.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem

from recordio_core.storage.fsio import StorageOptions, get_fs

DEFAULT_IO_CONCURRENCY = 64
DEFAULT_IO_BUDGET = 256 << 20  # bytes
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF = 0.25  # seconds before the 2nd attempt; doubled for each one after

# --------------------------------------------------------------------------- error classes

# Errors that will not go away on a retry: the image is a reject. Anything else raised while
# reading (a dropped connection, a timeout, an I/O error) is transient.
_PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EINVAL,
    }
)


def is_permanent(exc: BaseException) -> bool:
    """True when reading again cannot help (the object is missing, forbidden, a folder...)."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return False
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, ValueError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS


def read_reason(exc: BaseException) -> str:
    """The reject reason for a permanent read error."""
    if isinstance(exc, FileNotFoundError):
        return "file not found (missing or removed after listing)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    text = str(exc).strip() or type(exc).__name__
    return f"cannot read file: {text[:200]}"


def backoff_delays(attempts: int, first: float) -> list[float]:
    """Seconds to wait before attempts 2..n: `first`, then doubling (`[]` for one attempt)."""
    return [first * 2**i for i in range(max(0, attempts - 1))]


# --------------------------------------------------------------------------- filesystems


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    return bool({"s3", "s3a"} & set(_protocols(fs)))


def can_fetch_async(fs: fsspec.AbstractFileSystem) -> bool:
    """True for a synchronous-API instance of an async filesystem (s3fs, gcsfs, http...):
    its coroutines can run on its own loop thread."""
    return isinstance(fs, AsyncFileSystem) and not getattr(fs, "asynchronous", False)


def pool_options(
    storage_options: StorageOptions, fs: fsspec.AbstractFileSystem, concurrency: int
) -> dict[str, Any]:
    """`storage_options` with botocore's connection pool raised to `concurrency` for S3 (a
    larger pool the user asked for is kept); other filesystems' options are returned as given."""
    so = dict(storage_options or {})
    if not is_s3(fs):
        return so
    config = dict(so.get("config_kwargs") or {})
    config["max_pool_connections"] = max(int(config.get("max_pool_connections") or 0), concurrency)
    so["config_kwargs"] = config
    return so


def fetch_filesystem(
    url: str, storage_options: StorageOptions, concurrency: int
) -> tuple[fsspec.AbstractFileSystem, str]:
    """`(filesystem, path)` for fetching under `url` with `concurrency` requests in flight.

    The instance comes from fsspec's cache (one per process and set of options), so shards
    packed one after another in a process reuse its connections. It is not fork-safe: a
    forked child must make its own (fsspec refuses an inherited one)."""
    fs, path = get_fs(url, storage_options)
    if is_s3(fs):
        fs, path = get_fs(url, pool_options(storage_options, fs, concurrency))
    return fs, path


# --------------------------------------------------------------------------- the window


@dataclass
class FetchStats:
    """What a fetch did: for tests and benchmarks (requests counts every attempt)."""

    requests: int = 0
    retries: int = 0
    max_in_flight: int = 0
    peak_held: int = 0  # bytes: fetched and not yet taken, plus reserved for requests in flight


async def _fetch_one(
    fs: AsyncFileSystem, path: str, kwargs: Mapping[str, Any], delays: Sequence[float]
) -> tuple[bytes | BaseException, int]:
    """(bytes or permanent error, attempts made); a transient error past the last attempt is
    raised."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fs._cat_file(path, **kwargs), attempt
        except Exception as exc:
            if is_permanent(exc):
                return exc, attempt
            if attempt > len(delays):
                raise
            await asyncio.sleep(delays[attempt - 1])


class _Window:
    """The requests of one `fetch_ordered` call: at most `concurrency` in flight, and the
    bytes reserved by them and by results waiting for their turn within `budget` (one object
    always fits when nothing is held). An object of unknown size reserves the largest size
    seen so far (the whole budget before the first result)."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        paths: Sequence[str],
        sizes: Sequence[int | None] | None,
        concurrency: int,
        budget: int,
        delays: list[float],
        stats: FetchStats,
    ) -> None:
        self.fs, self.paths, self.sizes = fs, paths, sizes
        self.concurrency, self.budget, self.delays, self.stats = concurrency, budget, delays, stats
        self.kwargs: dict[str, Any] = {"max_concurrency": 1} if is_s3(fs) else {}
        self.estimate = budget
        self.seen = False
        self.pending: dict[int, concurrent.futures.Future] = {}
        self.reserved: dict[int, int] = {}
        self.ready: dict[int, bytes | BaseException] = {}
        self.held = 0
        self.next_submit = 0

    def fill(self) -> None:
        """Submit requests while the count and the byte budget allow."""
        n = len(self.paths)
        while self.next_submit < n and len(self.pending) < self.concurrency:
            k = self.next_submit
            size = self.sizes[k] if self.sizes is not None else None
            need = size if size is not None and size >= 0 else self.estimate
            if self.held and self.held + need > self.budget:
                break
            coro = _fetch_one(self.fs, self.paths[k], self.kwargs, self.delays)
            self.pending[k] = asyncio.run_coroutine_threadsafe(coro, self.fs.loop)
            self.reserved[k] = need
            self.held += need
            self.next_submit += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, len(self.pending))
        self.stats.peak_held = max(self.stats.peak_held, self.held)

    def collect(self) -> None:
        """Wait for at least one request to finish; keep what finished (its real size held)."""
        done, _ = concurrent.futures.wait(
            self.pending.values(), return_when=concurrent.futures.FIRST_COMPLETED
        )
        for j in [j for j, fut in self.pending.items() if fut in done]:
            fut = self.pending.pop(j)
            result, tries = fut.result()  # a transient error past retries raises here
            self.stats.requests += tries
            self.stats.retries += tries - 1
            got = len(result) if isinstance(result, bytes) else 0
            self.held += got - self.reserved.pop(j)
            if isinstance(result, bytes):
                self.estimate = max(self.estimate, got) if self.seen else max(1, got)
                self.seen = True
            self.ready[j] = result
            self.reserved[j] = got
        self.stats.peak_held = max(self.stats.peak_held, self.held)

    def take(self, i: int) -> bytes | BaseException:
        """Object `i`'s result, once it has arrived (requests go on meanwhile)."""
        while True:
            self.fill()
            if i in self.ready:
                break
            self.collect()
        result = self.ready.pop(i)
        self.held -= self.reserved.pop(i)
        return result

    def cancel(self) -> None:
        for fut in self.pending.values():
            fut.cancel()


def fetch_ordered(
    fs: fsspec.AbstractFileSystem,
    paths: Sequence[str],
    *,
    sizes: Sequence[int | None] | None = None,
    concurrency: int = DEFAULT_IO_CONCURRENCY,
    budget: int = DEFAULT_IO_BUDGET,
    attempts: int | None = None,
    backoff: float | None = None,
    stats: FetchStats | None = None,
) -> Iterator[bytes | BaseException]:
    """The content of each of `paths` (filesystem paths of `fs`, an async filesystem with a
    sync API), in order: bytes, or the permanent error that made it unreadable. See the module
    docstring for the window, the byte budget and retries.

    `sizes` (same length as `paths`, `None` for unknown) make the budget exact. `attempts` and
    `backoff` default to `DEFAULT_ATTEMPTS` and `DEFAULT_BACKOFF`. Closing the iterator early
    cancels the requests still in flight.
    """
    attempts = DEFAULT_ATTEMPTS if attempts is None else attempts
    backoff = DEFAULT_BACKOFF if backoff is None else backoff
    if not can_fetch_async(fs):
        raise ValueError(f"{type(fs).__name__} has no async API to fetch with")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1 byte, got {budget}")
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if sizes is not None and len(sizes) != len(paths):
        raise ValueError(f"sizes has {len(sizes)} items for {len(paths)} paths")
    window = _Window(
        fs,
        paths,
        sizes,
        concurrency,
        budget,
        backoff_delays(attempts, backoff),
        stats if stats is not None else FetchStats(),
    )
    try:
        for i in range(len(paths)):
            yield window.take(i)
    finally:
        window.cancel()
