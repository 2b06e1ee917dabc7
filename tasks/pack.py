"""Task: pack one shard (`recordio_core.building.pack.pack_shard`), cached by content.

Cache key: `pack-<content key>` (`tasks/plan.py`: the shard's entries, the image files'
fingerprints, and every byte-changing parameter — never worker counts). A cached result is
only trusted while the shard's files exist: the plan step lists the output once and marks each
shard whose `.rec`, `.idx` or `.lst` is missing, and the flow runs those with
`refresh_cache=True` (packed again, cache record replaced). Validation then reads every shard
back and checks its sha256, so a file that exists but was damaged is caught and repacked the
same way.

Every pack task run carries the tag `PACK_TAG`, and no other task does: a Prefect tag
concurrency limit on it (`prefect concurrency-limit create recordio-flow-pack 4`) caps how
many shards pack at once across every flow run reporting to that server, e.g. scheduled runs
sharing one Dask cluster. A task waiting for a slot stays Pending and holds its thread or Dask
worker thread meanwhile; a cache hit takes a slot too, briefly (see README, "Limits and
caching").
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from prefect import task

from recordio_core.building.pack import PackOptions, ShardResult, pack_shard
from recordio_flow.tasks.common import RETRY_OPTIONS, run_logger
from recordio_flow.tasks.plan import ShardJob

PROGRESS_LOG_SECONDS = 10.0  # how often a long shard logs its progress
# The tag of every pack task run (and of no other task): the name for a Prefect tag
# concurrency limit on packing. Not the runs' `recordio-flow` tag (flows/zombies.py's RUN_TAG):
# `recflow build` gives that one to every task of its run (a `prefect.tags` block).
PACK_TAG = "recordio-flow-pack"


def cache_key_of(key: str) -> str:
    """The Prefect cache key of the pack-shard run of the shard with content key `key`."""
    return f"pack-{key}"


def pack_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    job: ShardJob = parameters["job"]
    return cache_key_of(job.key)


def cached_pack_result(key: str) -> ShardResult | None:
    """The result a pack-shard run cached for content key `key` in this process's result
    store (a build without `streaming`), or None (none, unreadable, or not a result)."""
    from prefect.results import get_result_store

    try:
        store = get_result_store()
        if not store.exists(cache_key_of(key)):
            return None
        result = store.read(cache_key_of(key)).result
    except Exception:  # a cache that cannot be read is a cache miss
        return None
    return result if isinstance(result, ShardResult) else None


class Progress:
    """Counts images done; logs at most every PROGRESS_LOG_SECONDS (thread-safe)."""

    def __init__(self, name: str, count: int, logger: Any) -> None:
        self.name = name
        self.count = count
        self.logger = logger
        self.done = 0
        self.start = self.last = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if now - self.last < PROGRESS_LOG_SECONDS:
                return
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            self.logger.info(
                "%s: %d/%d images (%.0f img/s)", self.name, self.done, self.count, rate
            )


@task(
    name="pack-shard",
    task_run_name="pack {job.label}",
    cache_key_fn=pack_cache_key,
    tags={PACK_TAG},
    **RETRY_OPTIONS,
)
def pack_shard_task(
    job: ShardJob,
    *,
    source: str,
    options: PackOptions,
    source_options: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ShardResult:
    logger = run_logger()
    start = time.perf_counter()
    result = pack_shard(
        job.entries(),
        source,
        job.prefix,
        options,
        source_options=source_options,
        storage_options=storage_options,
        progress=Progress(job.name, job.count, logger),
        sizes=job.sizes(),
        # Worker processes (no GIL shared by the shards packing at once), started from a
        # forkserver: forking this threaded process itself is not safe. A daemonic process
        # (some Dask workers) may not have children: threads there.
        processes=not multiprocessing.current_process().daemon,
        start_method="forkserver",
    )
    seconds = time.perf_counter() - start
    logger.info(
        "%s/%s: %d records, %d bytes, %d rejects in %.1fs (%.0f img/s)",
        job.split,
        job.name,
        result.records,
        result.bytes,
        len(result.rejects),
        seconds,
        job.count / max(seconds, 1e-9),
    )
    return result
