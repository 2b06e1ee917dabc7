"""Work folders that outlive a dead run: a lease file says a run still owns its folder.

A run that keeps a work folder (a streaming build's listing pieces under
`OUTPUT/.recflow/listing/<run>`, about 75 bytes per image: gigabytes at 100 M images) writes
`LEASE_FILE` in it first and rewrites it every `RENEW_SECONDS` while it runs. A run killed
with no chance to clean up (kill -9, a lost machine) stops renewing; the next run under the
same parent removes every folder whose lease is older than `LAPSE_SECONDS`, or that has no
lease at all (a run of an older version, or one that died before its first write). The lease
holds the writer's clock (seconds since the epoch), so no filesystem's modification times are
needed; the margin (10 minutes against a renewal a minute) absorbs clock skew between machines.

A live run whose process stops for longer than the margin (a suspended laptop) loses its
folder and fails reading it, with an error naming the piece; a retry lists again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from recordio_core.storage.fsio import StorageOptions, get_fs, join_url, write_bytes_atomic

LEASE_FILE = ".lease"
RENEW_SECONDS = 60.0
LAPSE_SECONDS = 600.0


def renew_lease(
    folder: str, storage_options: StorageOptions = None, now: float | None = None
) -> None:
    """Write (or rewrite) `folder`'s lease with the time `now` (default: this clock's)."""
    stamp = time.time() if now is None else now
    write_bytes_atomic(join_url(folder, LEASE_FILE), f"{stamp:.3f}\n".encode(), storage_options)


def lease_time(folder: str, storage_options: StorageOptions = None) -> float | None:
    """When `folder`'s lease was last renewed; None without a readable lease."""
    fs, path = get_fs(join_url(folder, LEASE_FILE), storage_options)
    try:
        return float(fs.cat_file(path).decode("ascii").strip())
    except (FileNotFoundError, UnicodeDecodeError, ValueError):
        return None


@dataclass(frozen=True)
class Lapsed:
    """A folder to remove: its URL and when its lease was last renewed (None: no lease)."""

    url: str
    renewed: float | None


def lapsed_folders(
    parent: str,
    storage_options: StorageOptions = None,
    *,
    keep: str = "",
    now: float | None = None,
    lapse_seconds: float = LAPSE_SECONDS,
) -> list[Lapsed]:
    """The folders directly under `parent` (but `keep`, a folder name) whose lease lapsed
    more than `lapse_seconds` before `now`, or that have none; none when `parent` is absent."""
    fs, path = get_fs(parent, storage_options)
    try:
        infos = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    limit = (time.time() if now is None else now) - lapse_seconds
    out = []
    for info in sorted(infos, key=lambda i: str(i["name"])):
        name = str(info["name"]).rstrip("/").rpartition("/")[2]
        if info.get("type") != "directory" or name == keep:
            continue
        url = join_url(parent, name)
        renewed = lease_time(url, storage_options)
        if renewed is None or renewed < limit:
            out.append(Lapsed(url, renewed))
    return out


def remove_folder(url: str, storage_options: StorageOptions = None) -> None:
    """Remove `url` and everything under it (nothing when it is gone already)."""
    fs, path = get_fs(url, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@contextlib.contextmanager
def held_lease(
    folder: str,
    storage_options: StorageOptions = None,
    *,
    renew_seconds: float = RENEW_SECONDS,
    on_error: Callable[[Exception], None] | None = None,
) -> Iterator[None]:
    """Hold `folder`'s lease while the block runs: written once before it starts (an error
    there is raised), then renewed every `renew_seconds` by a daemon thread until it ends. A
    failed renewal is passed to `on_error` (a log line) and tried again next time: the run's
    own work never fails for its lease."""
    renew_lease(folder, storage_options)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(renew_seconds):
            try:
                renew_lease(folder, storage_options)
            except Exception as exc:  # noqa: BLE001 - reported, retried on the next tick
                if on_error is not None:
                    on_error(exc)

    thread = threading.Thread(target=renew, name=f"lease {folder}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=renew_seconds + 5)
