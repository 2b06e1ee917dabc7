"""List a source folder while `recflow build` starts Prefect, for the list task to take.

`recflow build` spends its first seconds importing Prefect, creating the flow run and, with no
Prefect API configured, starting a temporary one (flows/local_api.py). `prefetch_listing`
lists the source in that time; the list task (`list_source`, tasks/listing.py) still runs, and is
what the UI and the logs show, but takes the prefetched listing (`take_prefetched`) when it was
asked for with exactly the task's arguments, waiting for it if it is not finished.

A local folder is listed in a child process (forked from the forkserver the pack tasks use,
which it starts early): the walk then runs on another core instead of taking turns with
Prefect's import for the GIL. At 100,000 files the walk costs ~1.2 s of CPU and the hand-over
~0.2 s (the entries travel as plain columns, not pickled dataclasses). An object store is
listed on a background thread instead (the listing waits on requests there, not on the GIL).

A prefetch that failed is dropped without a word: the task then lists by itself, so its error,
and its retries, are the task's as always. Each prefetch is taken at most once. This module
imports no Prefect.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from recordio_core.building.listing import Listing, list_images
from recordio_core.building.pack import process_context
from recordio_core.format.lst import checked_entry
from recordio_core.storage.fsio import get_fs, is_local

_Args = tuple[str, bool, tuple[str, ...], dict[str, Any] | None]


def listing_key(
    source: str, recursive: bool, exts: Sequence[str], storage_options: Mapping[str, Any] | None
) -> str:
    """What identifies a listing: the arguments of `list_images`."""
    args = [source, bool(recursive), list(exts), dict(storage_options or {})]
    return json.dumps(args, sort_keys=True, default=repr)


def _list(args: _Args) -> Listing:
    source, recursive, exts, so = args
    return list_images(
        source, recursive=recursive, exts=exts, storage_options=so, fingerprints=True
    )


def listing_columns(listing: Listing) -> tuple[Any, ...]:
    """`listing` as plain lists and dicts: ~2x cheaper to pickle and rebuild than its entries."""
    entries = listing.entries
    prints = listing.fingerprints
    return (
        [e.index for e in entries],
        [e.labels for e in entries],
        [e.path for e in entries],
        listing.class_map,
        listing.skipped,
        None if prints is None else [prints[e.path] for e in entries],
    )


def listing_from_columns(columns: tuple[Any, ...]) -> Listing:
    """The `Listing` that `listing_columns` took apart."""
    indices, labels, paths, class_map, skipped, prints = columns
    return Listing(
        entries=tuple(map(checked_entry, indices, labels, paths)),
        class_map=class_map,
        skipped=skipped,
        fingerprints=None if prints is None else dict(zip(paths, prints, strict=True)),
    )


class _ThreadPrefetch(threading.Thread):
    def __init__(self, args: _Args) -> None:
        super().__init__(name="recflow-prefetch-listing", daemon=True)
        self.args_ = args
        self.listing: Listing | None = None

    def run(self) -> None:
        try:
            self.listing = _list(self.args_)
        except Exception:  # the list task lists again and reports it
            self.listing = None

    def take(self) -> Listing | None:
        self.join()
        return self.listing

    def drop(self) -> None:
        pass  # a daemon thread: it ends with the command


def _list_in_child(conn: Connection, args: _Args) -> None:
    # Ctrl-C reaches the whole process group: end quietly, without a KeyboardInterrupt's
    # traceback from a helper the user never asked for
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        payload = pickle.dumps(listing_columns(_list(args)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # the list task lists again and reports it
        payload = b""
    with contextlib.suppress(OSError):  # the command ended without taking it
        conn.send_bytes(payload)
    conn.close()


class _ProcessPrefetch:
    """`list_images` in a child process; the columns come back through a pipe."""

    def __init__(self, args: _Args) -> None:
        ctx = process_context("forkserver")
        self._conn, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_list_in_child, args=(send, args), name="recflow-prefetch-listing", daemon=True
        )
        self._proc.start()
        send.close()

    def take(self) -> Listing | None:
        try:
            payload = self._conn.recv_bytes()
        except (EOFError, OSError):  # the child died: the list task lists by itself
            payload = b""
        finally:
            self._conn.close()
            self._proc.join()
        return listing_from_columns(pickle.loads(payload)) if payload else None

    def drop(self) -> None:
        self._proc.terminate()
        self._proc.join()
        self._conn.close()


def _in_a_process(source: str, storage_options: Mapping[str, Any] | None) -> bool:
    """Whether to list in a child process: a local folder, where a forkserver can run."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    try:
        return is_local(get_fs(source, dict(storage_options or {}) or None)[0])
    except Exception:  # an unknown protocol, say: the list task reports it
        return False


_lock = threading.Lock()
_started: dict[str, _ThreadPrefetch | _ProcessPrefetch] = {}


def prefetch_listing(
    source: str,
    *,
    recursive: bool,
    exts: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Start listing `source` in a child process or on a thread (once per set of arguments)."""
    key = listing_key(source, recursive, exts, storage_options)
    args: _Args = (source, bool(recursive), tuple(exts), dict(storage_options or {}) or None)
    with _lock:
        if key in _started:
            return
        if _in_a_process(source, storage_options):
            _started[key] = _ProcessPrefetch(args)
            return
        _started[key] = worker = _ThreadPrefetch(args)
    worker.start()


def take_prefetched(
    source: str,
    *,
    recursive: bool,
    exts: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
) -> Listing | None:
    """The listing a `prefetch_listing` with these arguments made (waiting for it to finish),
    or None: none was started, it failed, or it was already taken."""
    with _lock:
        worker = _started.pop(listing_key(source, recursive, exts, storage_options), None)
    return None if worker is None else worker.take()


def drop_prefetched() -> None:
    """Stop every prefetch nobody took (the run ended before its list task did)."""
    with _lock:
        workers = list(_started.values())
        _started.clear()
    for worker in workers:
        worker.drop()
