"""Task: commit a dataset — class map, rejects and `manifest.json` (last), under a lock.

How concurrent runs are kept apart (the design, in short):

1. Shards are written to names that carry their content key (`tasks/plan.py`), each file
   atomically. Two runs can only ever write the same name with the same bytes, so shard files
   never interleave, whatever runs at the same time, and a crashed run leaves only whole files
   that a rerun reuses.
2. The switch to a new dataset is `manifest.json`, written atomically and last. The commit runs
   under a lock marker `OUTPUT/.recflow.lock`, created exclusively (`O_EXCL` locally, S3's
   `If-None-Match: *` on object stores; a best-effort exists-then-write elsewhere). Holding
   it, the commit checks that every file the new manifest names exists, writes the class map,
   `rejects.jsonl` and then the manifest, and deletes the shard files that only the previous
   manifest named. Commits are therefore serialized: a live manifest never names a deleted or
   half-written file. A lock older than `LOCK_STALE_SECONDS` (a commit takes seconds), or one
   whose holder was a process on this host that no longer exists, is taken to be left by a
   killed run and removed; that run, if Prefect still shows it Running, is marked Crashed
   (the heartbeat automation of `flows/zombies.py` catches runs killed at any other moment).
3. A run killed while packing leaves its half-written shard files under hidden temporary names
   (`.NAME.tmp-XXXXXXXXXXXX`, never a visible `.rec`). A commit removes those nobody has
   written to for `DEBRIS_AGE_SECONDS`; a live writer's temporary file is always fresher.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.listing import write_class_map
from recordio_core.building.pack import ShardResult
from recordio_core.building.quality import QualityReport
from recordio_core.format.manifest import (
    CLASS_MAP_NAME,
    REJECTS_NAME,
    Manifest,
    ManifestError,
    RejectEntry,
    ShardEntry,
    SplitEntry,
    WarningEntry,
    manifest_url,
    read_manifest,
    relative_path,
    tool_versions,
    write_manifest,
    write_rejects,
)
from recordio_core.storage.fsio import get_fs, is_local, join_url, read_bytes
from recordio_flow.tasks.common import RETRY_OPTIONS, run_logger
from recordio_flow.tasks.storage import missing_urls

LOCK_NAME = ".recflow.lock"
LOCK_STALE_SECONDS = 600.0
LOCK_WAIT_SECONDS = 120.0
LOCK_POLL_SECONDS = 0.5
DEBRIS_AGE_SECONDS = 600.0  # temporary files untouched this long were left by a killed run


class LockBusy(TimeoutError):
    """Another run holds the commit lock for longer than we were willing to wait."""


def _create_exclusive(url: str, data: bytes, storage_options: Mapping[str, Any] | None) -> None:
    """Create `url` holding `data`; FileExistsError if it exists (atomically where possible)."""
    fs, path = get_fs(url, storage_options)
    if is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if {"s3", "s3a"} & set(protocols):
        with fs.open(path, "xb") as f:  # If-None-Match: * (FileExistsError when taken)
            f.write(data)
        return
    if fs.exists(path):
        raise FileExistsError(url)
    fs.pipe_file(path, data)


def _read_lock(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    try:
        doc = json.loads(read_bytes(url, storage_options))
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _holder_gone(held: Mapping[str, Any]) -> bool:
    """True when the lock names a process on this host that no longer exists (a killed run)."""
    pid = held.get("pid")
    if held.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else
        return False
    return False


@contextlib.contextmanager
def commit_lock(
    output: str,
    owner: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    wait_seconds: float = LOCK_WAIT_SECONDS,
    stale_seconds: float = LOCK_STALE_SECONDS,
    on_takeover: Callable[[dict[str, Any], str], None] | None = None,
) -> Iterator[str]:
    """Hold `OUTPUT/.recflow.lock` for the duration of the block. `on_takeover(lock, why)` is
    called after a lock left by a killed run was removed."""
    url = join_url(output, LOCK_NAME)
    body = json.dumps(
        {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    ).encode()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            _create_exclusive(url, body, storage_options)
            break
        except FileExistsError:
            held = _read_lock(url, storage_options)
            if held is None:
                continue  # released between our attempt and the read
            age = time.time() - float(held.get("time", 0) or 0)
            gone = _holder_gone(held)
            if age > stale_seconds or gone:
                fs, path = get_fs(url, storage_options)
                if _read_lock(url, storage_options) == held:
                    with contextlib.suppress(FileNotFoundError):
                        fs.rm_file(path)
                    if on_takeover is not None:
                        why = (
                            f"its process ({held.get('pid')} on {held.get('host')}) is gone"
                            if gone
                            else f"it held the commit lock for {age:.0f} s"
                        )
                        on_takeover(held, why)
                continue
            if time.monotonic() > deadline:
                raise LockBusy(
                    f"{url} is held by run {held.get('owner', '?')} on "
                    f"{held.get('host', '?')} (for {age:.0f}s); another build is committing "
                    "to this output. Try again, or remove the file if no build is running."
                ) from None
            time.sleep(LOCK_POLL_SECONDS)
    try:
        yield url
    finally:
        fs, path = get_fs(url, storage_options)
        if (_read_lock(url, storage_options) or {}).get("owner") == owner:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)


def build_manifest(
    *,
    output: str,
    parameters: Mapping[str, Any],
    class_map: Mapping[str, int],
    split_names: Sequence[str],
    results: Sequence[tuple[str, ShardResult]],
    rejects: Sequence[RejectEntry],
    quality: QualityReport | None = None,
) -> Manifest:
    """The manifest for `results` (`(split, shard result)` in shard order), with the data
    quality findings (`quality`: decoder warnings, duplicates, near-duplicates)."""
    q = quality or QualityReport()
    shards: dict[str, list[ShardEntry]] = {name: [] for name in split_names}
    for split, r in results:
        shards.setdefault(split, []).append(
            ShardEntry(
                rec=relative_path(output, r.rec),
                idx=relative_path(output, r.idx),
                lst=relative_path(output, r.lst),
                records=r.records,
                bytes=r.bytes,
                sha256=r.sha256,
                idx_sha256=r.idx_sha256,
                lst_sha256=r.lst_sha256,
            )
        )
    return Manifest(
        parameters=dict(parameters),
        class_map=dict(class_map),
        splits={name: SplitEntry(shards=tuple(s)) for name, s in shards.items()},
        rejects=tuple(rejects),
        tools=tool_versions(),
        warnings=tuple(WarningEntry(path, reason) for path, reason in q.warnings),
        duplicates=tuple(g.to_dict() for g in q.duplicates),
        near_duplicates=tuple(g.to_dict() for g in q.near_duplicates),
    )


def missing_files(
    output: str, relpaths: Sequence[str], storage_options: Mapping[str, Any] | None
) -> list[str]:
    """The relative paths among `relpaths` that do not exist under `output`."""
    urls = {join_url(output, rel): rel for rel in relpaths}
    return [urls[u] for u in missing_urls(urls, storage_options)]


def _modified(info: Mapping[str, Any]) -> float | None:
    value = info.get("mtime", info.get("LastModified"))
    if isinstance(value, int | float):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else None


def remove_debris(
    output: str,
    folders: Sequence[str],
    storage_options: Mapping[str, Any] | None,
    older_than: float = DEBRIS_AGE_SECONDS,
) -> list[str]:
    """Delete the hidden temporary files (`.name.tmp-...`) a killed run left in `folders`,
    once nothing has written to them for `older_than` seconds (a live run's are younger)."""
    fs, root = get_fs(output, storage_options)
    now = time.time()
    removed = []
    for folder in folders:
        try:
            infos = fs.ls(f"{root.rstrip('/')}/{folder}", detail=True)
        except FileNotFoundError:
            continue
        for info in infos:
            name = str(info["name"]).rstrip("/").rpartition("/")[2]
            modified = _modified(info)
            if not (name.startswith(".") and ".tmp-" in name) or modified is None:
                continue
            if now - modified > older_than:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(info["name"])
                    removed.append(f"{folder}/{name}")
    return removed


def _previous_manifest(output: str, storage_options: Mapping[str, Any] | None, logger: Any):
    try:
        return read_manifest(manifest_url(output), storage_options)
    except FileNotFoundError:
        return None
    except ManifestError as exc:
        logger.warning("ignoring the unreadable previous manifest: %s", exc)
        return None


def crash_dead_owner(held: Mapping[str, Any], why: str) -> None:
    """Mark the flow run that left a commit lock behind Crashed, if Prefect still shows it
    running (so the UI offers Retry instead of a run "Running" forever). Best effort."""
    logger = run_logger()
    try:
        run_id = uuid.UUID(str(held.get("owner")))
    except ValueError:
        return  # not a flow run (a local call)
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
            if state is None or not (state.is_running() or state.is_pending()):
                return
            client.set_flow_run_state(
                run_id,
                Crashed(message=f"Found dead by a later run of the same output: {why}."),
            )
        logger.warning("flow run %s left the commit lock behind; marked it Crashed", run_id)
    except Exception as exc:  # a stale run's state is not worth failing this commit
        logger.warning("could not mark flow run %s Crashed: %s", run_id, exc)


@task(name="write-manifest", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def commit_dataset(
    manifest: Manifest,
    *,
    output: str,
    owner: str,
    storage_options: dict[str, Any] | None = None,
    prune: bool = True,
) -> str:
    """Write class map, rejects and manifest (last) under the commit lock; return its URL."""
    logger = run_logger()
    with commit_lock(output, owner, storage_options, on_takeover=crash_dead_owner):
        gone = missing_files(output, manifest.files(), storage_options)
        if gone:
            raise FileNotFoundError(
                f"{len(gone)} shard file(s) disappeared before the commit (e.g. {gone[0]}); "
                "a concurrent build may have replaced this output. Run the build again."
            )
        previous = _previous_manifest(output, storage_options, logger)
        write_class_map(join_url(output, CLASS_MAP_NAME), manifest.class_map, storage_options)
        write_rejects(join_url(output, REJECTS_NAME), manifest.rejects, storage_options)
        url = write_manifest(output, manifest, storage_options)
        if prune and previous is not None:
            keep = set(manifest.files())
            stale = [p for p in previous.files() if p not in keep]
            fs, root = get_fs(output, storage_options)
            for rel in stale:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(f"{root.rstrip('/')}/{rel}")
            if stale:
                logger.info("removed %d files of the previous dataset", len(stale))
        debris = remove_debris(output, sorted(manifest.splits), storage_options)
        if debris:
            logger.info("removed %d temporary files left by interrupted runs", len(debris))
    logger.info("wrote %s", url)
    return url
