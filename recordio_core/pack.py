"""Pack one shard: images listed by `.lst` entries -> `.rec` + `.idx` (+ `.lst`).

`pack_shard` reads each image through fsspec (`join_url(root, entry.path)`), transforms it
(`recordio_core.image.transform_image`: decode, colour, crop, resize, encode, or pass-through)
on `num_workers` threads, and writes the records **in entry order** whatever the worker count,
so the bytes never depend on it. Pillow releases the GIL while it decodes, resizes and
encodes, but the Python glue around those calls (~0.5 ms per image) still serialises the
threads: on 2 cores, 2 threads reach only ~85 % of 2x. `pack_shard(..., processes=True)` runs
the workers as forked processes instead, each reading (local sources; from an object store the
parent fetches), transforming and framing chunks of images; measured on 2,000 photos,
`--resize 256`, 2 workers: 3.6 s against 4.1 s with threads, same bytes. Plain forking is for
a process that owns itself (the `recflow im2rec` command line); in a threaded process (a flow
run) `start_method="forkserver"` forks the workers from a clean server process instead. The
library default stays threads. A worker task carries a chunk of images that grows to about
2 MiB of records (`chunk_size`), so thousands of small files do not pay a round trip each.

Object stores (S3, ...): an I/O stage apart from the CPU stage. `recordio_core.fetch` keeps
`opts.io_concurrency` requests in flight on the filesystem's own loop, one request per image,
within a byte budget (`opts.io_budget`), and hands the bytes over in entry order to the
transform workers (threads, or with `processes=True` forked processes that receive the bytes).
A transient error is retried per image with backoff before it fails the shard.

Streaming: at most `4 * num_workers` images are being transformed by threads, or two chunks
per worker process (plus, from an object store, the fetched images within the byte budget).
Records reach the writer in batches of consecutive entries (at most ~2 MiB of records or 512
entries), each written with one write per file, so thousands of small files do not cost the
writing process a few writes each, and memory does not grow with the number of images.

Atomicity: the three files are written to temporary names and committed only after the last
record, in the order `.rec`, `.lst`, `.idx` (an old `.idx` at the destination is removed
first). An `.idx` therefore only ever sits beside the `.rec` and `.lst` it describes; an
exception or a kill before the commit leaves the destination as it was.

An image that cannot be read or used is a `Reject` (index, path, reason) in the result: never
an exception, never a silent gap. Data-quality facts come back too, computed by the workers on
bytes and pixels already in memory: the sha256 of every source file's bytes (`digests`), JPEG
decoder warnings (`warnings`; with `on_decode_warning="reject"` the image is also a reject) and,
with `near_duplicates`, the difference hash of each image as packed (`dhashes`); see
`recordio_core.quality`. A *transient* read error (connection dropped, timeout, I/O error) is
different: it is raised (from an object store, after the per-image retries), so the shard fails
whole and a retry packs it completely.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import queue
import signal
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

from recordio_core.fetch import (
    DEFAULT_IO_BUDGET,
    DEFAULT_IO_CONCURRENCY,
    FetchStats,
    can_fetch_async,
    fetch_filesystem,
    fetch_ordered,
    is_permanent,
    read_reason,
)
from recordio_core.framing import frame_record
from recordio_core.fsio import StorageOptions, atomic_write, get_fs, is_local, join_url
from recordio_core.image import ImageError, ImageOptions, transform_image_checked
from recordio_core.lst import LstEntry, format_lst_line
from recordio_core.quality import NO_DHASH, NO_DIGEST
from recordio_core.recordio import IRHeader, pack

ProgressCallback = Callable[[int], Any]
StartMethod = Literal["fork", "forkserver"]
START_METHODS: tuple[StartMethod, ...] = ("fork", "forkserver")
DECODE_WARNING_POLICIES = ("keep", "reject")
_WINDOW_PER_WORKER = 4  # images in flight per worker: enough to hide read latency


@dataclass(frozen=True)
class PackOptions:
    """How to pack: the image transform, labels and parallelism.

    - `label_width`: label columns each entry is expected to have (im2rec.cc's option; the
      `.lst` reader enforces it, `validate_shard` checks it).
    - `pack_label`: store all of an entry's labels after the header (flag = their count),
      exactly as im2rec.py does when a line has more than one label; otherwise the header
      holds the first label.
    - `header_label`: with `pack_label`, what the header's own `label` field holds: "zero"
      as im2rec.py (and `mxnet.recordio.pack`) writes it, or "first" (the first label) as
      im2rec.cc writes it. Readers use the labels after the header either way.
    - `num_workers`: threads decoding/encoding inside the shard (>= 1); output order and
      bytes do not depend on it.
    - `io_concurrency`: requests in flight when the images come from an object store (1-1024;
      `recordio_core.fetch`); `io_budget`: bytes of fetched images held at once (>= 1; one
      image always fits). Neither changes the output bytes; local sources ignore both.
    - `on_decode_warning`: what to do with a JPEG that decodes only with libjpeg warnings
      (corrupt but decodable): "keep" packs it (and lists it in the result's `warnings`),
      "reject" also makes it a reject.
    - `near_duplicates`: also compute the difference hash of each image as packed (`dhashes`,
      `recordio_core.dhash`); it changes no byte of the output.
    """

    image: ImageOptions = field(default_factory=ImageOptions)
    label_width: int = 1
    pack_label: bool = False
    num_workers: int = 1
    header_label: Literal["zero", "first"] = "zero"
    io_concurrency: int = DEFAULT_IO_CONCURRENCY
    io_budget: int = DEFAULT_IO_BUDGET
    on_decode_warning: Literal["keep", "reject"] = "keep"
    near_duplicates: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.image, ImageOptions):
            raise ValueError(f"image must be an ImageOptions, got {type(self.image).__name__}")
        if isinstance(self.label_width, bool) or not isinstance(self.label_width, int):
            raise ValueError(f"label_width must be an int >= 1, got {self.label_width!r}")
        if self.label_width < 1:
            raise ValueError(f"label_width must be >= 1, got {self.label_width}")
        if not isinstance(self.pack_label, bool):
            raise ValueError(f"pack_label must be True or False, got {self.pack_label!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int):
            raise ValueError(f"num_workers must be an int >= 1, got {self.num_workers!r}")
        if not 1 <= self.num_workers <= 256:
            raise ValueError(f"num_workers must be between 1 and 256, got {self.num_workers}")
        if isinstance(self.io_concurrency, bool) or not isinstance(self.io_concurrency, int):
            raise ValueError(f"io_concurrency must be an int >= 1, got {self.io_concurrency!r}")
        if not 1 <= self.io_concurrency <= 1024:
            raise ValueError(
                f"io_concurrency must be between 1 and 1024, got {self.io_concurrency}"
            )
        if isinstance(self.io_budget, bool) or not isinstance(self.io_budget, int):
            raise ValueError(f"io_budget must be an int (bytes) >= 1, got {self.io_budget!r}")
        if self.io_budget < 1:
            raise ValueError(f"io_budget must be >= 1 byte, got {self.io_budget}")
        if self.header_label not in ("zero", "first"):
            raise ValueError(
                f"header_label must be 'zero' (im2rec.py) or 'first' (im2rec.cc), "
                f"got {self.header_label!r}"
            )
        if self.on_decode_warning not in DECODE_WARNING_POLICIES:
            raise ValueError(
                "on_decode_warning must be 'keep' (pack and flag) or 'reject', "
                f"got {self.on_decode_warning!r}"
            )
        if not isinstance(self.near_duplicates, bool):
            raise ValueError(f"near_duplicates must be True or False, got {self.near_duplicates!r}")


@dataclass(frozen=True)
class Reject:
    """An image left out of the shard, and why."""

    index: int
    path: str
    reason: str


@dataclass(frozen=True)
class ShardResult:
    """What `pack_shard` wrote. URLs are as given; `bytes` and `sha256` are the `.rec`'s.

    `lst` and `lst_sha256` are empty when the `.lst` was not written (`write_lst=False`).

    Per entry, in entry order (packed and rejected alike): `digests` holds the 32-byte sha256
    of each source file's bytes (32 zero bytes when it could not be read) and `dhashes` the
    difference hash of each image as packed (`NO_DHASH` when not computed). `warnings` lists
    the JPEGs that decoded only with libjpeg warnings (reason: libjpeg's message), packed or
    rejected.
    """

    rec: str
    idx: str
    lst: str
    records: int
    bytes: int
    sha256: str
    idx_sha256: str
    lst_sha256: str
    rejects: tuple[Reject, ...] = ()
    warnings: tuple[Reject, ...] = ()
    digests: bytes = b""
    dhashes: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: rejects and warnings become lists of dicts, digests hex strings."""
        out = asdict(self)
        out["rejects"] = [asdict(r) for r in self.rejects]
        out["warnings"] = [asdict(r) for r in self.warnings]
        out["digests"] = [self.digests[i : i + 32].hex() for i in range(0, len(self.digests), 32)]
        out["dhashes"] = list(self.dhashes)
        return out


def record_payload(entry: LstEntry, image_bytes: bytes, opts: PackOptions) -> bytes:
    """The record payload im2rec.py writes for `entry`: `IRHeader(0, label, index, 0)` with the
    first label as a float32, or, with `pack_label` and more than one label, all labels as a
    float32 array after the header (flag = their count, header label 0)."""
    if opts.pack_label and len(entry.labels) > 1:
        payload = pack(IRHeader(0, list(entry.labels), entry.index, 0), image_bytes)
        if opts.header_label == "first":
            payload = payload[:4] + _F32.pack(entry.labels[0]) + payload[8:]
        return payload
    # what `pack(IRHeader(0, label, index, 0), image_bytes)` gives, without its generality
    return _HEADER_ONE_LABEL.pack(0, float(entry.labels[0]), entry.index, 0) + image_bytes


_F32 = struct.Struct("<f")  # the header's label field, bytes 4..8
_HEADER_ONE_LABEL = struct.Struct("<IfQQ")  # IRHeader: flag, label, id, id2


# --------------------------------------------------------------------------- reading


# Permanent read errors (missing, forbidden, a folder) make a reject; transient ones (a dropped
# connection, a timeout, an I/O error) fail the shard so that the caller's retry packs it
# completely: a flaky source never turns good images into rejects. (`recordio_core.fetch`.)
_is_permanent = is_permanent
_read_reason = read_reason


class _Reader:
    """Reads image bytes from the source root; one fsspec filesystem, shared by threads.

    For an async filesystem (S3, GCS, HTTP...) `fetch_fs` is the instance to fetch with on its
    loop (`recordio_core.fetch`; for S3 with a connection pool of `io_concurrency`), else None.
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


# What the workers learn about each image besides its record: (sha256 digest of the source
# bytes or NO_DIGEST, libjpeg warning or "", difference hash or NO_DHASH).
_Facts = tuple[bytes, str, int]
_NO_FACTS: _Facts = (NO_DIGEST, "", NO_DHASH)  # an image that could not be read


def _process(
    reader: _Reader, entry: LstEntry, opts: PackOptions
) -> tuple[bytes | None, str, _Facts]:
    """(encoded image, "", facts) or (None, reject reason, facts). Never raises for a bad
    image."""
    try:
        data = reader.read(entry)
    except Exception as exc:
        if _is_permanent(exc):
            return None, _read_reason(exc), _NO_FACTS
        raise  # transient (network, I/O): fail the shard, let the caller retry it
    return _transform(data, opts)


def _transform(data: bytes, opts: PackOptions) -> tuple[bytes | None, str, _Facts]:
    """(encoded image, "", facts) or (None, reject reason, facts) for bytes already read."""
    digest = hashlib.sha256(data).digest()
    try:
        out = transform_image_checked(data, opts.image, dhash=opts.near_duplicates)
    except ImageError as exc:
        return None, str(exc), (digest, "", NO_DHASH)
    except MemoryError:
        return None, "not enough memory to decode the image", (digest, "", NO_DHASH)
    except Exception as exc:  # a Pillow plugin bug must not sink the shard: record it
        reason = f"unexpected {type(exc).__name__} while decoding: {str(exc)[:200]}"
        return None, reason, (digest, "", NO_DHASH)
    facts = (digest, out.warning, NO_DHASH if out.dhash is None else out.dhash)
    if out.warning and opts.on_decode_warning == "reject":
        return None, f"corrupt JPEG data (decoder warning): {out.warning}", facts
    return out.data, "", facts


@dataclass
class _Batch:
    """Consecutive entries' outcomes in the form the writer takes them: one write per file
    per batch instead of one per record (thousands of small files cost the parent process
    a few microseconds each otherwise). Built where the records are made (worker processes
    included), so only a few large objects cross between processes."""

    entries: Sequence[LstEntry]
    records: bytes  # the framed records of the packed entries, concatenated
    lengths: list[int]  # framed length per entry; 0: not packed (see `reasons`)
    reasons: list[str]  # reject reason per entry, "" when packed
    digests: bytes  # 32 bytes per entry (`_Facts`)
    warnings: list[str]  # decoder warning per entry, ""
    dhashes: list[int]  # per entry (`_Facts`)
    lst: bytes  # the `.lst` lines of the packed entries (empty without `write_lst`)


_Outcome = tuple[bytes | None, str, _Facts]  # (framed record or None, reason, facts)


def _batch(entries: Sequence[LstEntry], outcomes: Sequence[_Outcome], write_lst: bool) -> _Batch:
    records, lengths, reasons, warnings, dhashes, lst = [], [], [], [], [], []
    digests = bytearray()
    for entry, (framed, reason, (digest, warning, dhash)) in zip(entries, outcomes, strict=True):
        digests += digest
        warnings.append(warning)
        dhashes.append(dhash)
        if framed is None:
            lengths.append(0)
            reasons.append(reason)
        else:
            records.append(framed)
            lengths.append(len(framed))
            reasons.append("")
            if write_lst:
                lst.append(format_lst_line(entry))
    return _Batch(
        entries,
        b"".join(records),
        lengths,
        reasons,
        bytes(digests),
        warnings,
        dhashes,
        "".join(lst).encode("utf-8"),
    )


def _sent(batch: _Batch) -> tuple[Any, ...]:
    """A worker's batch without its entries (the parent has them): what crosses processes."""
    return (
        batch.records,
        batch.lengths,
        batch.reasons,
        batch.digests,
        batch.warnings,
        batch.dhashes,
        batch.lst,
    )


def _received(entries: Sequence[LstEntry], sent: tuple[Any, ...]) -> _Batch:
    return _Batch(entries, *sent)


def _grouped(
    items: Iterable[tuple[LstEntry, bytes | None, str, _Facts]], write_lst: bool
) -> Iterator[_Batch]:
    """Batches of consecutive items, closed at `_CHUNK_BYTES` of records or `_CHUNK_MAX`
    entries (whichever comes first), so memory stays bounded and progress keeps moving."""
    entries: list[LstEntry] = []
    outcomes: list[_Outcome] = []
    size = 0
    for entry, framed, reason, facts in items:
        entries.append(entry)
        outcomes.append((framed, reason, facts))
        size += len(framed) if framed is not None else 0
        if size >= _CHUNK_BYTES or len(entries) >= _CHUNK_MAX:
            yield _batch(entries, outcomes, write_lst)
            entries, outcomes, size = [], [], 0
    if entries:
        yield _batch(entries, outcomes, write_lst)


def _results(
    entries: Sequence[LstEntry],
    reader: _Reader,
    opts: PackOptions,
    processes: bool = False,
    sizes: Sequence[int | None] | None = None,
    start_method: StartMethod = "fork",
    write_lst: bool = True,
) -> Iterator[_Batch]:
    """`_Batch`es covering `entries` in order, with a bounded number of images in flight.
    Each framed record is `frame_record(record_payload(...))`, ready to write."""
    if reader.fetch_fs is not None:
        yield from _results_fetched(
            entries, reader, opts, processes, sizes, start_method, write_lst
        )
        return
    if processes and reader.local:
        yield from _results_processes(entries, reader, opts, start_method, write_lst)
        return
    with contextlib.closing(_results_threads(entries, reader, opts)) as items:
        yield from _grouped(items, write_lst)  # closing: the thread pool stops with the shard


def _results_threads(
    entries: Sequence[LstEntry], reader: _Reader, opts: PackOptions
) -> Iterator[tuple[LstEntry, bytes | None, str, _Facts]]:
    """(entry, framed record or None, reason, facts) in entry order, from `opts.num_workers`
    threads with at most `_WINDOW_PER_WORKER` images each in flight."""
    if opts.num_workers == 1:
        for entry in entries:
            data, reason, facts = _process(reader, entry, opts)
            yield entry, _framed(entry, data, opts), reason, facts
        return
    window = _WINDOW_PER_WORKER * opts.num_workers
    pending: deque[tuple[LstEntry, Future]] = deque()
    executor = ThreadPoolExecutor(opts.num_workers, thread_name_prefix="recflow-pack")
    try:
        it = iter(entries)
        for entry in it:
            pending.append((entry, executor.submit(_process, reader, entry, opts)))
            if len(pending) >= window:
                break
        while pending:
            entry, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, executor.submit(_process, reader, nxt, opts)))
            data, reason, facts = fut.result()
            yield entry, _framed(entry, data, opts), reason, facts
    finally:
        _shutdown(executor, pending)


def _framed(entry: LstEntry, data: bytes | None, opts: PackOptions) -> bytes | None:
    return None if data is None else frame_record(record_payload(entry, data, opts))


def _shutdown(executor: Executor, pending: Iterable[tuple[Any, Future]]) -> None:
    for _, fut in pending:
        fut.cancel()
    executor.shutdown(wait=True, cancel_futures=True)


# Process workers: the entries, reader and options are inherited through fork (nothing is
# pickled but the (start, stop) of each chunk and the framed records coming back).
_CHUNK = 8  # images per task at first: amortises the inter-process round trip
_CHUNK_MAX = 512  # images per task at most
_CHUNK_BYTES = 2 << 20  # 2 MiB of records per task, about
_worker_state: tuple[Sequence[LstEntry], _Reader, PackOptions, bool] | None = None


def _init_worker(
    entries: Sequence[LstEntry], reader: _Reader, opts: PackOptions, write_lst: bool
) -> None:
    global _worker_state
    _worker_state = (entries, reader, opts, write_lst)


def _process_chunk(start: int, stop: int) -> tuple[Any, ...]:
    """Entries `start:stop`, read and transformed here: a `_Batch` as `_sent` makes it."""
    assert _worker_state is not None
    entries, reader, opts, write_lst = _worker_state
    chunk = entries[start:stop]
    outcomes: list[_Outcome] = []
    for entry in chunk:
        data, reason, facts = _process(reader, entry, opts)
        outcomes.append((_framed(entry, data, opts), reason, facts))
    return _sent(_batch(chunk, outcomes, write_lst))


def chunk_size(done_bytes: int, done_images: int) -> int:
    """Images per worker task, from the framed bytes per image seen so far: about
    `_CHUNK_BYTES` of records per task, between `_CHUNK` and `_CHUNK_MAX` images.

    A task costs a round trip between processes (~0.1 ms of pickling and waking up): small
    files (a few KB, pass-through) need hundreds per task to hide it, large photos a few.
    """
    if done_images <= 0:
        return _CHUNK
    per_image = max(1, done_bytes // done_images)
    return max(_CHUNK, min(_CHUNK_MAX, _CHUNK_BYTES // per_image))


def process_context(start_method: StartMethod) -> Any:
    """The multiprocessing context; a forkserver preloads the packing code, so each worker
    forked from it starts in milliseconds. Asked for on the main thread, the forkserver is
    started there with Ctrl-C ignored (`_start_forkserver`)."""
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["recordio_core.pack"])
        _start_forkserver()
    return ctx


def _start_forkserver() -> None:
    """Start the forkserver now, if this is the main thread, with SIGINT ignored: Ctrl-C
    reaches the whole process group, and would otherwise print a KeyboardInterrupt traceback
    from the server's preload import or from each idle worker. The workers inherit the
    ignoring; stopping them is left to the process that asked for them, which sees the
    KeyboardInterrupt itself and shuts its pool down (the running chunks finish first)."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal dispositions can only be changed there; it starts on first use
    from multiprocessing import forkserver

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def _results_processes(
    entries: Sequence[LstEntry],
    reader: _Reader,
    opts: PackOptions,
    start_method: StartMethod,
    write_lst: bool,
) -> Iterator[_Batch]:
    """`_results` on worker processes that read for themselves (local sources): no GIL
    shared between the workers' Python glue, framing done in the workers. Tasks grow from
    `_CHUNK` images as the record sizes become known (`chunk_size`)."""
    n = len(entries)
    window = 2 * opts.num_workers  # chunks: one running and one queued per worker
    pending: deque[tuple[int, int, Future]] = deque()
    executor = ProcessPoolExecutor(
        opts.num_workers,
        mp_context=process_context(start_method),
        initializer=_init_worker,
        initargs=(entries, reader, opts, write_lst),
    )
    next_start, size, done_bytes, done_images = 0, _CHUNK, 0, 0

    def refill() -> None:
        nonlocal next_start
        while next_start < n and len(pending) < window:
            stop = min(n, next_start + size)
            pending.append((next_start, stop, executor.submit(_process_chunk, next_start, stop)))
            next_start = stop

    try:
        refill()
        while pending:
            start, stop, fut = pending.popleft()
            refill()
            batch = _received(entries[start:stop], fut.result())
            done_bytes += len(batch.records)
            yield batch
            done_images += stop - start
            size = chunk_size(done_bytes, done_images)
    finally:
        _shutdown(executor, [(start, fut) for start, _, fut in pending])


# Object stores: an I/O stage (`recordio_core.fetch`: many requests in flight on the
# filesystem's loop, in entry order, within a byte budget) feeds the CPU stage (threads, or
# forked processes that get the bytes pickled: they never touch the filesystem instance, which
# is not fork-safe).


def _fetched(
    entries: Sequence[LstEntry],
    reader: _Reader,
    opts: PackOptions,
    sizes: Sequence[int | None] | None,
) -> Iterator[tuple[LstEntry, bytes | str]]:
    """(entry, image bytes or reject reason) in entry order."""
    assert reader.fetch_fs is not None
    fetched = fetch_ordered(
        reader.fetch_fs,
        [reader.path(e) for e in entries],
        sizes=sizes,
        concurrency=opts.io_concurrency,
        budget=opts.io_budget,
        stats=reader.stats,
    )
    with contextlib.closing(fetched):
        for entry, got in zip(entries, fetched, strict=True):
            yield entry, (got if isinstance(got, bytes) else _read_reason(got))


def _transform_one(
    entry: LstEntry, got: bytes | str, opts: PackOptions
) -> tuple[bytes | None, str, _Facts]:
    """(framed record, "", facts) or (None, reason, facts) for fetched bytes or a read reject."""
    if isinstance(got, str):
        return None, got, _NO_FACTS
    data, reason, facts = _transform(got, opts)
    return _framed(entry, data, opts), reason, facts


_transform_state: tuple[PackOptions, bool] | None = None


def _init_transform_worker(opts: PackOptions, write_lst: bool) -> None:
    global _transform_state
    _transform_state = (opts, write_lst)


def _transform_chunk(chunk: list[tuple[LstEntry, bytes | str]]) -> tuple[Any, ...]:
    """Fetched images transformed in a worker process: a `_Batch` as `_sent` makes it."""
    assert _transform_state is not None
    return _transform_chunk_here(chunk, *_transform_state)


def _results_fetched(
    entries: Sequence[LstEntry],
    reader: _Reader,
    opts: PackOptions,
    processes: bool,
    sizes: Sequence[int | None] | None,
    start_method: StartMethod,
    write_lst: bool,
) -> Iterator[_Batch]:
    if opts.num_workers == 1:
        with contextlib.closing(_fetched(entries, reader, opts, sizes)) as items:
            yield from _grouped(
                ((entry, *_transform_one(entry, got, opts)) for entry, got in items), write_lst
            )
        return
    executor: Executor
    if processes:
        executor = ProcessPoolExecutor(
            opts.num_workers,
            mp_context=process_context(start_method),
            initializer=_init_transform_worker,
            initargs=(opts, write_lst),
        )
        executor.submit(int).result()  # fork the workers before any fetch starts
        window, per_task = 2 * opts.num_workers, _CHUNK
    else:
        executor = ThreadPoolExecutor(opts.num_workers, thread_name_prefix="recflow-pack")
        window, per_task = _WINDOW_PER_WORKER * opts.num_workers, 1
    pending: deque[tuple[list[LstEntry], Future]] = deque()
    items = _fetched(entries, reader, opts, sizes)

    def submit(chunk: list[tuple[LstEntry, bytes | str]]) -> None:
        if processes:
            fut = executor.submit(_transform_chunk, chunk)
        else:
            fut = executor.submit(_transform_chunk_here, chunk, opts, write_lst)
        pending.append(([e for e, _ in chunk], fut))

    try:
        chunk: list[tuple[LstEntry, bytes | str]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) < per_task:
                continue
            submit(chunk)
            chunk = []
            while len(pending) >= window:
                yield _take(pending.popleft())
        if chunk:
            submit(chunk)
        while pending:
            yield _take(pending.popleft())
    finally:
        items.close()
        _shutdown(executor, pending)


def _transform_chunk_here(
    chunk: list[tuple[LstEntry, bytes | str]], opts: PackOptions, write_lst: bool
) -> tuple[Any, ...]:
    entries = [entry for entry, _ in chunk]
    outcomes = [_transform_one(entry, got, opts) for entry, got in chunk]
    return _sent(_batch(entries, outcomes, write_lst))


def _take(item: tuple[list[LstEntry], Future]) -> _Batch:
    chunk, fut = item
    return _received(chunk, fut.result())


# --------------------------------------------------------------------------- writing


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


def pack_shard(
    entries: Iterable[LstEntry],
    root: str,
    out_prefix: str,
    opts: PackOptions,
    *,
    source_options: StorageOptions = None,
    storage_options: StorageOptions = None,
    progress: ProgressCallback | None = None,
    write_lst: bool = True,
    processes: bool = False,
    sizes: Sequence[int | None] | None = None,
    start_method: StartMethod = "fork",
) -> ShardResult:
    """Pack `entries` (images under `root`) into `out_prefix + ".rec"/".idx"` (and `".lst"`).

    - `root`: fsspec URL of the image folder; `source_options` for its filesystem.
    - `out_prefix`: fsspec URL prefix of the outputs; `storage_options` for its filesystem.
    - The `.lst` (with `write_lst`, the default) lists exactly the packed records, in order;
      pass `write_lst=False` to leave a user's own `.lst` alone (the im2rec drop-in).
    - `progress(n)` is called with the number of entries just finished (packed or rejected).
    - `processes`: transform on `opts.num_workers` worker processes instead of threads
      (faster: the workers' Python glue does not share a GIL); the output bytes are the same
      either way. From an object store the parent fetches and the workers transform.
    - `start_method`: how worker processes start (local sources): "fork" (the fastest) only
      in a process that may fork safely (a command line, not a threaded server); "forkserver"
      anywhere (workers fork from a clean server process that has the packing code loaded).
      As with any forkserver or spawn start, a script that calls this must guard its main
      code with `if __name__ == "__main__":` (the workers import the main module).
    - `sizes`: the images' sizes in bytes if known (from the listing; `None` for unknown),
      aligned with `entries`; they make the fetch's byte budget (`opts.io_budget`) exact.

    Bad images become `Reject`s in the result. Errors writing the output (or a bad argument)
    raise, leaving no partial files at the destination.
    """
    if not isinstance(opts, PackOptions):
        raise ValueError(f"opts must be a PackOptions, got {type(opts).__name__}")
    if not out_prefix:
        raise ValueError("out_prefix must be a non-empty URL prefix")
    entries = list(entries)
    for e in entries:
        if not isinstance(e, LstEntry):
            raise ValueError(f"entries must be LstEntry objects, got {type(e).__name__}")
    rec_url, idx_url = out_prefix + ".rec", out_prefix + ".idx"
    lst_url = out_prefix + ".lst" if write_lst else ""
    if start_method not in START_METHODS:
        raise ValueError(
            f"start_method must be one of {', '.join(map(repr, START_METHODS))}, "
            f"got {start_method!r}"
        )
    if sizes is not None:
        sizes = list(sizes)
        if len(sizes) != len(entries):
            raise ValueError(f"sizes has {len(sizes)} items for {len(entries)} entries")
    reader = _Reader(root, source_options, opts.io_concurrency)
    rejects: list[Reject] = []
    warnings: list[Reject] = []
    digests = bytearray()
    dhashes: list[int] = []
    records = 0
    with contextlib.ExitStack() as stack:
        # Entered idx, lst, rec: committed in the reverse order (rec, lst, idx) on success.
        fidx = _HashingWriter(stack.enter_context(atomic_write(idx_url, storage_options)))
        flst = (
            _HashingWriter(stack.enter_context(atomic_write(lst_url, storage_options)))
            if write_lst
            else None
        )
        frec = _HashingWriter(
            stack.enter_context(atomic_write(rec_url, storage_options)), background=True
        )
        stack.callback(frec.close)
        batches = stack.enter_context(
            contextlib.closing(
                _results(entries, reader, opts, processes, sizes, start_method, write_lst)
            )
        )
        for batch in batches:
            digests += batch.digests
            dhashes += batch.dhashes
            offset = frec.size
            idx_lines = []
            for entry, length, reason, warning in zip(
                batch.entries, batch.lengths, batch.reasons, batch.warnings, strict=True
            ):
                if warning:
                    warnings.append(Reject(entry.index, entry.path, warning))
                if length:
                    idx_lines.append(f"{entry.index}\t{offset}\n")
                    offset += length
                else:
                    rejects.append(Reject(entry.index, entry.path, reason))
            if batch.records:
                frec.write(batch.records)
                fidx.write("".join(idx_lines).encode("ascii"))
            if flst is not None and batch.lst:
                flst.write(batch.lst)
            records += len(idx_lines)
            if progress is not None:
                progress(len(batch.entries))
        # Everything is written; an old index must not survive next to the new .rec.
        _remove_if_exists(idx_url, storage_options)
    return ShardResult(
        rec=rec_url,
        idx=idx_url,
        lst=lst_url,
        records=records,
        bytes=frec.size,
        sha256=frec.hexdigest(),
        idx_sha256=fidx.hexdigest(),
        lst_sha256=flst.hexdigest() if flst is not None else "",
        rejects=tuple(rejects),
        warnings=tuple(warnings),
        digests=bytes(digests),
        dhashes=tuple(dhashes),
    )
