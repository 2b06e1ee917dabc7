"""Tasks of a streaming build (`flows/build_stream.py`): list one part of the source, and pack
one group of shards.

`list_part_task` streams a part's images to piece files under the run's staging folder
(`recordio_core.building.stream_list`) and returns per-bucket counts only. It lists in a child
process (from the forkserver the pack workers use), so concurrent listing tasks on the thread
pool use every core; inside a Dask worker, in the worker itself. With a `.lst` source,
`list_lst_part_task` does the same for a byte range of the `.lst`
(`recordio_core.building.stream_lst`), and `check_indexes_task` looks for a repeated index in
one range of the index buckets those parts wrote. With `dedupe="drop"`, `find_copies_task`
finds the byte-identical copies among one range of size buckets before anything is packed.

`pack_group_task` packs a group of consecutive shards of one split, one after the other, in
one task run (so 100 M images are at most 1,800 task runs, not 100,000), in a child process
of its own (as the listing), making two calls to it
(`recordio_core.building.stream_pack`): `prepare_group` reads the group's records back from
the pieces, gives each shard its content key and file names (those of the in-memory build:
`tasks/plan.py`) and looks for the result a streaming build kept under its key; for a shard
without one the task looks up the result a build without streaming cached (Prefect's result
store, read in this process); `pack_prepared` then reuses each shard whose result holds for
its files, and packs, validates (packing again once if that fails) and keeps the others. The
flow process thus does no per-image work, and a retry or a rerun after a crash redoes only
the shards that were not finished. Like `pack-shard` it carries `PACK_TAG`, so a tag
concurrency limit caps it. Its images' hashes go to the quality pieces
(`recordio_core.building.stream_quality`) that `quality_task` reduces, bucket range by bucket
range, into the duplicate report (in a child process too); its records per first label go
back with its results, for the report's label table.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.pack import PackOptions, ShardResult
from recordio_core.building.pack_workers import process_context
from recordio_core.building.quality import DuplicateGroup, Seen
from recordio_core.building.stream_dedupe import Copies, SizeRange, find_copies
from recordio_core.building.stream_list import (
    ListPart,
    PartListing,
    filesystem_classes,
    list_part,
    with_filesystems,
)
from recordio_core.building.stream_lst import LstPart, list_lst_part
from recordio_core.building.stream_lst_checks import IndexRange, find_duplicate_index
from recordio_core.building.stream_pack import GroupPacker, pack_prepared, prepare_group
from recordio_core.building.stream_plan import GroupJob
from recordio_core.building.stream_quality import (
    BucketSpan,
    QualityPieces,
    reduce_quality,
)
from recordio_core.storage.fsio import resolve_options
from recordio_flow.tasks.common import RETRY_OPTIONS, run_logger
from recordio_flow.tasks.pack import PACK_TAG, cached_pack_result


@dataclass(frozen=True)
class GroupResult:
    """What a group's task run did: per shard its result (no per-image digests) and whether
    it was reused."""

    results: tuple[ShardResult, ...]
    reused: tuple[bool, ...]
    seconds: float = 0.0
    quality: QualityPieces | None = None  # the group's images for the quality report
    # its records per first label (None: more distinct labels than the report counts)
    labels: dict[float, int] | None = None


def _shareable(*urls: str) -> bool:
    """Whether a child process sees the same files at `urls` (not so for `memory://`)."""
    return "memory" not in filesystem_classes(*urls)


@contextlib.contextmanager
def _process(urls: Sequence[str]) -> Iterator[Callable[..., Any]]:
    """A `call(fn, *args, **kwargs)`, for calls that read and write `urls`, that runs `fn` in
    one child process forked from the forkserver (listing and packing are CPU-bound Python:
    threads of one process would share one core), the same child for every call, with the
    filesystems of `urls` registered there first (`stream_list.with_filesystems`: one the
    parent registered at run time is unknown to the child). Or right here inside a daemonic
    process (a Dask worker), which may not have children, or when a child would not see the
    files: a filesystem that lives in this process's memory (`memory://`). `fn` must live in
    recordio_core (preloaded there): importing Prefect would cost each child seconds."""
    if multiprocessing.current_process().daemon or not _shareable(*urls):
        yield lambda fn, *args, **kwargs: fn(*args, **kwargs)
        return
    classes = filesystem_classes(*urls)
    with ProcessPoolExecutor(1, mp_context=process_context("forkserver")) as pool:
        yield lambda fn, *args, **kwargs: pool.submit(
            with_filesystems, classes, fn, *args, **kwargs
        ).result()


def _in_process(urls: Sequence[str], fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` as `_process(urls)` runs it."""
    with _process(urls) as call:
        return call(fn, *args, **kwargs)


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
    sizes: bool = False,
) -> PartListing:
    """List one part of `source` into its pieces under `staging` (never cached: a listing
    must see images added since the last run); with `sizes`, its size piece too."""
    start = time.perf_counter()
    listing = _in_process(
        (source, staging),
        list_part,
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
        sizes=sizes,
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


@task(
    name="list-lst-part",
    task_run_name="list {lst} {part.label}",
    cache_policy=NO_CACHE,
    **RETRY_OPTIONS,
)
def list_lst_part_task(
    part: LstPart,
    *,
    lst: str,
    source: str,
    staging: str,
    label_width: int,
    allow_outside_root: bool,
    train_ratio: float,
    test_ratio: float,
    salt: str,
    seed: int,
    source_options: dict[str, Any] | None = None,
    staging_options: dict[str, Any] | None = None,
    sizes: bool = False,
) -> PartListing:
    """Parse one byte range of the `.lst` into its pieces under `staging`, in a child process
    as `list_part_task` (never cached: the source's files may have changed). A bad line is
    returned (`PartListing.problem` or `outside`), for the flow to number in the whole file."""
    start = time.perf_counter()
    listing = _in_process(
        (lst, source, staging),
        list_lst_part,
        lst,
        source,
        part,
        staging,
        label_width=label_width,
        allow_outside_root=allow_outside_root,
        train_ratio=train_ratio,
        test_ratio=test_ratio,
        salt=salt,
        seed=seed,
        storage_options=resolve_options(source, source_options),
        lst_storage_options=resolve_options(lst, source_options),
        staging_options=resolve_options(staging, staging_options),
        sizes=sizes,
    )
    run_logger().info(
        "%s: %d lines, %d entries%s in %.1fs",
        part.label,
        listing.lines,
        listing.entries,
        "".join(f" (a bad line: {bad[1]})" for bad in (listing.problem or listing.outside,) if bad),
        time.perf_counter() - start,
    )
    return listing


@task(
    name="check-indexes",
    task_run_name="indexes {number}",
    cache_policy=NO_CACHE,
    **RETRY_OPTIONS,
)
def check_indexes_task(
    ranges: tuple[IndexRange, ...],
    *,
    number: int = 0,
    storage_options: dict[str, Any] | None = None,
) -> tuple[int, int, int] | None:
    """The earliest line repeating an index among one range of index buckets
    (`recordio_core.building.stream_lst_checks.find_duplicate_index`), in a child process."""
    if not ranges:
        return None
    url = ranges[0].url
    return _in_process((url,), find_duplicate_index, ranges, resolve_options(url, storage_options))


@task(
    name="find-copies",
    task_run_name="copies {number}",
    cache_policy=NO_CACHE,
    **RETRY_OPTIONS,
)
def find_copies_task(
    ranges: tuple[SizeRange, ...],
    *,
    number: int,
    source: str,
    split_names: list[str],
    staging: str,
    source_options: dict[str, Any] | None = None,
    staging_options: dict[str, Any] | None = None,
) -> Copies:
    """The byte-identical copies among one range of size buckets, to drop before packing
    (`recordio_core.building.stream_dedupe.find_copies`: it hashes the files whose size
    another shares), in a child process."""
    start = time.perf_counter()
    copies = _in_process(
        (source, staging),
        find_copies,
        source,
        ranges,
        split_names,
        staging,
        number,
        resolve_options(source, source_options),
        resolve_options(staging, staging_options),
    )
    run_logger().info(
        "copies %d: hashed %d files, %d groups, %d copies to drop in %.1fs",
        number,
        copies.hashed,
        len(copies.groups),
        len(copies.dropped),
        time.perf_counter() - start,
    )
    return copies


@task(
    name="find-duplicates",
    task_run_name="duplicates {number}",
    cache_policy=NO_CACHE,
    **RETRY_OPTIONS,
)
def quality_task(
    exact: tuple[BucketSpan, ...],
    near: tuple[BucketSpan, ...],
    *,
    number: int = 0,
    distance: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[list[DuplicateGroup], list[tuple[Seen, Seen]]]:
    """Duplicate groups and near pairs of one range of quality buckets
    (`recordio_core.building.stream_quality.reduce_quality`, a bounded chunk of buckets at a
    time), found in a child process."""
    ranges = (*exact, *near)
    if not ranges:
        return [], []
    url = ranges[0].url
    return _in_process(
        (url,), reduce_quality, exact, near, distance, resolve_options(url, storage_options)
    )


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
        output=output,
        key_params=key_params,
    )
    with _process((source, output, staging)) as call:
        missing = call(prepare_group, packer, group, staging)
        # a shard packed by a build without streaming: its result is in this process's store
        cached = {key: found for key in missing if (found := cached_pack_result(key))}
        results, reused, quality, labels = call(
            pack_prepared,
            packer,
            group,
            staging=staging,
            candidates=cached,
            near_distance=near_distance,
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
    return GroupResult(tuple(results), tuple(reused), seconds, quality, labels)
