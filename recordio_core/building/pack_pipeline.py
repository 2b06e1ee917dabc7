"""From a shard's entries to `_Batch`es in entry order: `_results` picks the pipeline.

- `_results_threads` (the default): `opts.num_workers` threads read and transform, with at
  most `_WINDOW_PER_WORKER` images each in flight.
- `_results_processes` (`processes=True`, local sources): worker processes read, transform
  and frame chunks of images that grow to about 2 MiB of records (`chunk_size`).
- `_results_fetched` (object stores): an I/O stage (`recordio_core.storage.fetch`) feeds the
  transform workers, threads or processes.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from recordio_core.building.pack_batch import _CHUNK, _Batch, _grouped, _received, chunk_size
from recordio_core.building.pack_options import PackOptions
from recordio_core.building.pack_record import _Facts, _framed, _process, _transform_one
from recordio_core.building.pack_source import _read_reason, _Reader
from recordio_core.building.pack_workers import (
    StartMethod,
    _init_transform_worker,
    _init_worker,
    _process_chunk,
    _shutdown,
    _transform_chunk,
    _transform_chunk_here,
    process_context,
)
from recordio_core.format.lst import LstEntry
from recordio_core.storage.fetch import fetch_ordered

_WINDOW_PER_WORKER = 4  # images in flight per worker: enough to hide read latency


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


# Object stores: an I/O stage (`recordio_core.storage.fetch`: many requests in flight on the
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


def _take(item: tuple[list[LstEntry], Future]) -> _Batch:
    chunk, fut = item
    return _received(chunk, fut.result())
