"""The workers' side of packing: process pools, and the work their tasks do.

`process_context` gives the multiprocessing context (a forkserver preloads the packing code;
`tasks/listing_prefetch.py` starts its workers with it too). Worker processes that read for
themselves (local sources) get the entries, reader and options once (`_init_worker`) and run
`_process_chunk`; those that transform fetched bytes get the options (`_init_transform_worker`)
and run `_transform_chunk`, which threads run as `_transform_chunk_here`. `_shutdown` stops a
pool, cancelling the tasks not started.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, Future
from typing import Any, Literal

from recordio_core.building.pack_batch import _batch, _Outcome, _sent
from recordio_core.building.pack_options import PackOptions
from recordio_core.building.pack_record import _framed, _process, _transform_one
from recordio_core.building.pack_source import _Reader
from recordio_core.format.lst import LstEntry

StartMethod = Literal["fork", "forkserver"]
START_METHODS: tuple[StartMethod, ...] = ("fork", "forkserver")


def _shutdown(executor: Executor, pending: Iterable[tuple[Any, Future]]) -> None:
    for _, fut in pending:
        fut.cancel()
    executor.shutdown(wait=True, cancel_futures=True)


# Process workers: the entries, reader and options are inherited through fork (nothing is
# pickled but the (start, stop) of each chunk and the framed records coming back).
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


# what else a forkserver's children run: a streaming build's listing and groups of shards
# (`tasks/stream.py`)
PRELOAD = ("recordio_core.building.stream_list", "recordio_core.building.stream_pack")


def process_context(start_method: StartMethod) -> Any:
    """The multiprocessing context; a forkserver preloads the packing code (and `PRELOAD`),
    so each worker forked from it starts in milliseconds. Asked for on the main thread, the
    forkserver is started there with Ctrl-C ignored (`_start_forkserver`)."""
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["recordio_core.building.pack", *PRELOAD])
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


_transform_state: tuple[PackOptions, bool] | None = None


def _init_transform_worker(opts: PackOptions, write_lst: bool) -> None:
    global _transform_state
    _transform_state = (opts, write_lst)


def _transform_chunk(chunk: list[tuple[LstEntry, bytes | str]]) -> tuple[Any, ...]:
    """Fetched images transformed in a worker process: a `_Batch` as `_sent` makes it."""
    assert _transform_state is not None
    return _transform_chunk_here(chunk, *_transform_state)


def _transform_chunk_here(
    chunk: list[tuple[LstEntry, bytes | str]], opts: PackOptions, write_lst: bool
) -> tuple[Any, ...]:
    entries = [entry for entry, _ in chunk]
    outcomes = [_transform_one(entry, got, opts) for entry, got in chunk]
    return _sent(_batch(entries, outcomes, write_lst))
