"""List a source folder while the temporary Prefect API starts, for the list task to take.

`recflow build` with no Prefect API configured starts a temporary one (flows/local_api.py),
which takes seconds during which the command itself only imports Prefect. `prefetch_listing`
lists the source on a background thread in that time; the list task
(`tasks.listing.list_source`) still runs, and is what the UI and the logs show, but takes the
prefetched listing (`take_prefetched`) when it was asked for with exactly the task's arguments,
waiting for it if it is not finished. A prefetch that failed is dropped without a word: the
task then lists by itself, so its error, and its retries, are the task's as always. Each
prefetch is taken at most once. This module imports no Prefect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from recordio_core.listing import Listing, list_images


def listing_key(
    source: str, recursive: bool, exts: Sequence[str], storage_options: Mapping[str, Any] | None
) -> str:
    """What identifies a listing: the arguments of `list_images`."""
    args = [source, bool(recursive), list(exts), dict(storage_options or {})]
    return json.dumps(args, sort_keys=True, default=repr)


class _Prefetch(threading.Thread):
    def __init__(
        self,
        source: str,
        recursive: bool,
        exts: Sequence[str],
        storage_options: Mapping[str, Any] | None,
    ) -> None:
        super().__init__(name="recflow-prefetch-listing", daemon=True)
        self.args_ = (source, recursive, tuple(exts), dict(storage_options or {}) or None)
        self.listing: Listing | None = None

    def run(self) -> None:
        source, recursive, exts, so = self.args_
        try:
            self.listing = list_images(
                source, recursive=recursive, exts=exts, storage_options=so, fingerprints=True
            )
        except Exception:  # the list task lists again and reports it
            self.listing = None


_lock = threading.Lock()
_started: dict[str, _Prefetch] = {}


def prefetch_listing(
    source: str,
    *,
    recursive: bool,
    exts: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Start listing `source` on a background thread (once per set of arguments)."""
    key = listing_key(source, recursive, exts, storage_options)
    with _lock:
        if key in _started:
            return
        _started[key] = worker = _Prefetch(source, recursive, exts, storage_options)
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
    if worker is None:
        return None
    worker.join()
    return worker.listing
