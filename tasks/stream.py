"""Tasks of a streaming build (`flows/build_stream.py`): list one part of the source, and pack
one group of shards.

`list_part_task` streams a part's images to piece files under the run's staging folder
(`recordio_core.building.stream_list`) and returns per-bucket counts only. It lists in a child
process (from the forkserver the pack workers use), so concurrent listing tasks on the thread
pool use every core; inside a Dask worker, in the worker itself.

`pack_group_task` packs a group of consecutive shards of one split, one after the other, in
one task run (so 100 M images are at most 1,800 task runs, not 100,000): it reads the group's
records back from the pieces (`stream_read`), gives each shard its content key and file names
(those of the in-memory build: `tasks/plan.py`) and looks for a result to reuse (kept under
its key by a streaming build, `stream_results`, or cached by a build without streaming), then
hands the group to `recordio_core.building.stream_pack.pack_works` in a child process of its
own (as the listing): each shard reused if that result holds for its files, else packed,
validated, packed again once if that fails, and kept. A retry or a rerun after a crash
therefore redoes only the shards that were not finished. Like `pack-shard` it carries
`PACK_TAG`, so a tag concurrency limit caps it. Its images' hashes go to the quality pieces
(`recordio_core.building.stream_quality`) that `quality_task` reduces, bucket range by bucket
range, into the duplicate report.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.pack import PackOptions, ShardResult
from recordio_core.building.pack_workers import process_context
from recordio_core.building.quality import DuplicateGroup, Seen
from recordio_core.building.shardkey import fingerprint_size, shard_key, source_fingerprints
from recordio_core.building.stream_list import (
    ListPart,
    PartListing,
    filesystem_classes,
    list_part_elsewhere,
)
from recordio_core.building.stream_pack import GroupPacker, ShardWork, pack_works
from recordio_core.building.stream_plan import GroupJob, PieceRange
from recordio_core.building.stream_quality import (
    QualityPieces,
    reduce_quality,
)
from recordio_core.building.stream_read import PlannedShard, read_group
from recordio_core.building.stream_results import load_result, result_url
from recordio_core.storage.fsio import join_url, resolve_options
from recordio_flow.tasks.common import RETRY_OPTIONS, run_logger
from recordio_flow.tasks.pack import PACK_TAG, cached_pack_result
from recordio_flow.tasks.plan import KEY_CHARS


@dataclass(frozen=True)
class GroupResult:
    """What a group's task run did: per shard its result (no per-image digests) and whether
    it was reused."""

    results: tuple[ShardResult, ...]
    reused: tuple[bool, ...]
    seconds: float = 0.0
    quality: QualityPieces | None = None  # the group's images for the quality report


def _shareable(*urls: str) -> bool:
    """Whether a child process sees the same files at `urls` (not so for `memory://`)."""
    return "memory" not in filesystem_classes(*urls)


def _in_process(fn: Any, /, *args: Any, shared: bool = True, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` in a child process forked from the forkserver (the listing is
    CPU-bound Python: threads of one process would share one core), or right here inside a
    daemonic process (a Dask worker), which may not have children, or when not `shared`: a
    filesystem that lives in this process's memory (`memory://`). `fn` must live in
    recordio_core (preloaded there): importing Prefect would cost each child seconds."""
    if multiprocessing.current_process().daemon or not shared:
        return fn(*args, **kwargs)
    with ProcessPoolExecutor(1, mp_context=process_context("forkserver")) as pool:
        return pool.submit(fn, *args, **kwargs).result()


@task(name="list-part", task_run_name="list {part.label}", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def list_part_task(
    part: ListPart,
    *,
    source: str,
    staging: str,
    recursive: bool,
    exts: tuple[str, ...],
    train_ratio: float,
    test_ratio: float,
    salt: str,
    seed: int,
    source_options: dict[str, Any] | None = None,
    staging_options: dict[str, Any] | None = None,
) -> PartListing:
    """List one part of `source` into its pieces under `staging` (never cached: a listing
    must see images added since the last run)."""
    start = time.perf_counter()
    listing = _in_process(
        list_part_elsewhere,
        filesystem_classes(source, staging),
        source,
        part,
        staging,
        recursive=recursive,
        exts=exts,
        train_ratio=train_ratio,
        test_ratio=test_ratio,
        salt=salt,
        seed=seed,
        # resolved here: a credentials block is read by this process, not by the child
        storage_options=resolve_options(source, source_options),
        staging_options=resolve_options(staging, staging_options),
        shared=_shareable(source, staging),
    )
    run_logger().info(
        "%s: %d images in %d classes%s in %.1fs",
        part.label,
        listing.entries,
        len(listing.classes),
        f" ({len(listing.skipped)} skipped)" if listing.skipped else "",
        time.perf_counter() - start,
    )
    return listing


def _with_fingerprints(shards: list[PlannedShard], source: str, options: Any) -> None:
    """Ask the source for the fingerprints the listing could not take ("")."""
    missing = [path for s in shards for path, fp in s.fingerprints.items() if not fp]
    if missing:
        found = source_fingerprints(source, missing, options)
        for s in shards:
            for path in s.fingerprints:
                if not s.fingerprints[path]:
                    s.fingerprints[path] = found[path]


@task(
    name="find-duplicates",
    task_run_name="duplicates {number}",
    cache_policy=NO_CACHE,
    **RETRY_OPTIONS,
)
def quality_task(
    exact: tuple[PieceRange, ...],
    near: tuple[PieceRange, ...],
    *,
    number: int = 0,
    distance: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[list[DuplicateGroup], list[tuple[Seen, Seen]]]:
    """Duplicate groups and near pairs of one range of quality buckets
    (`recordio_core.building.stream_quality.reduce_quality`)."""
    return reduce_quality(exact, near, distance, storage_options)


@task(
    name="pack-shards",
    task_run_name="pack {group.label}",
    cache_policy=NO_CACHE,
    tags={PACK_TAG},
    **RETRY_OPTIONS,
)
def pack_group_task(
    group: GroupJob,
    *,
    source: str,
    output: str,
    staging: str,
    options: PackOptions,
    key_params: dict[str, Any],
    near_distance: int | None = None,
    label_width: int = 1,
    pack_label: bool = False,
    decode: bool = False,
    source_options: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> GroupResult:
    """Pack (or reuse) every shard of `group`; see the module docstring."""
    logger = run_logger()
    start = time.perf_counter()
    shards = read_group(group, storage_options)
    _with_fingerprints(shards, source, source_options)
    works = _works(group, shards, source, output, key_params, storage_options)
    daemon = multiprocessing.current_process().daemon
    packer = GroupPacker(
        source,
        options,
        label_width,
        pack_label,
        decode,
        resolve_options(source, source_options),
        resolve_options(output, storage_options),
        # in a child process of its own, threads pack as fast as worker processes and
        # spare the hand-off; more workers than one need processes to pass the GIL
        processes=options.num_workers > 1 and not daemon,
    )
    results, reused, quality = _in_process(
        pack_works,
        packer,
        works,
        staging=staging,
        number=group.number,
        near_distance=near_distance,
        shared=_shareable(source, output),
    )
    seconds = time.perf_counter() - start
    logger.info(
        "%s: %d shards (%d reused), %d records, %d rejects in %.1fs (%.0f img/s)",
        group.label,
        len(results),
        sum(reused),
        sum(r.records for r in results),
        sum(len(r.rejects) for r in results),
        seconds,
        group.count / max(seconds, 1e-9),
    )
    return GroupResult(tuple(results), tuple(reused), seconds, quality)


def _works(
    group: GroupJob,
    shards: list[PlannedShard],
    source: str,
    output: str,
    key_params: dict[str, Any],
    storage_options: dict[str, Any] | None,
) -> list[ShardWork]:
    """Each shard's content key, file names and place for its kept result, and a result to
    try first: kept by a streaming build, else cached by a build without streaming."""
    works = []
    for shard in shards:
        key = shard_key(
            shard.entries,
            root=source,
            fingerprints=shard.fingerprints,
            params={**key_params, "shard": f"{group.split}/{shard.plan.name}"},
        )
        kept_at = result_url(output, key)
        works.append(
            ShardWork(
                split=group.split,
                plan=shard.plan,
                entries=shard.entries,
                sizes=tuple(fingerprint_size(shard.fingerprints[e.path]) for e in shard.entries),
                prefix=join_url(output, group.split, f"{shard.plan.name}.{key[:KEY_CHARS]}"),
                kept_at=kept_at,
                candidate=load_result(kept_at, storage_options) or cached_pack_result(key),
            )
        )
    return works
