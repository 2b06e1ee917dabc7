"""Tasks of a streaming build (`flows/build_stream.py`): list one part of the source, and pack
one group of shards.

`list_part_task` streams a part's images to piece files under the run's staging folder
(`recordio_core.building.stream_list`) and returns per-bucket counts only. It lists in a child
process (from the forkserver the pack workers use), so concurrent listing tasks on the thread
pool use every core; inside a Dask worker, in the worker itself.

`pack_group_task` packs a group of consecutive shards of one split, one after the other, in
one task run (so 100 M images are about 1,800 task runs, not 100,000): it reads the group's
records back from the pieces (`stream_read`), gives each shard its content key and file names
(those of the in-memory build: `tasks/plan.py`), and for each shard either reuses it (its
result is kept under its key, `stream_results`, and its files pass validation) or packs it,
validates it, packs it again once if that fails, and keeps its result. A shard a build
without `streaming` packed is reused through that build's Prefect cache record. A retry or a rerun
after a crash therefore redoes only the shards that were not finished. Like `pack-shard` it
carries `PACK_TAG`, so a tag concurrency limit caps it. It also writes its images' hashes to
the quality pieces (`recordio_core.building.stream_quality`) that `quality_task` reduces,
bucket range by bucket range, into the duplicate report.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.pack import PackOptions, ShardResult, pack_shard
from recordio_core.building.pack_workers import process_context
from recordio_core.building.quality import NO_DHASH, NO_DIGEST, DuplicateGroup, Seen
from recordio_core.building.shardkey import fingerprint_size, shard_key, source_fingerprints
from recordio_core.building.stream_list import (
    ListPart,
    PartListing,
    filesystem_classes,
    list_part_elsewhere,
)
from recordio_core.building.stream_plan import GroupJob, PieceRange
from recordio_core.building.stream_quality import (
    QualityPieces,
    reduce_quality,
    write_quality_pieces,
)
from recordio_core.building.stream_read import PlannedShard, read_group
from recordio_core.building.stream_results import load_result, result_url, save_result, slim
from recordio_core.building.validate import validate_shard
from recordio_core.storage.fsio import join_url, resolve_options
from recordio_flow.tasks.common import RETRY_OPTIONS, run_logger
from recordio_flow.tasks.pack import PACK_TAG, Progress, cached_pack_result
from recordio_flow.tasks.plan import KEY_CHARS
from recordio_flow.tasks.validate import ValidationFailed


@dataclass(frozen=True)
class GroupResult:
    """What a group's task run did: per shard its result (no per-image digests) and whether
    it was reused."""

    results: tuple[ShardResult, ...]
    reused: tuple[bool, ...]
    seconds: float = 0.0
    quality: QualityPieces | None = None  # the group's images for the quality report


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
    classes = filesystem_classes(source, staging)
    listing = _in_process(
        list_part_elsewhere,
        classes,
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
        shared="memory" not in classes,
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


@dataclass(frozen=True)
class _Packer:
    """Everything a group's shards are packed and validated with."""

    source: str
    output: str
    options: PackOptions
    key_params: dict[str, Any]
    label_width: int
    pack_label: bool
    decode: bool
    source_options: dict[str, Any] | None
    storage_options: dict[str, Any] | None
    logger: Any

    def valid(self, result: ShardResult) -> tuple[bool, list[str]]:
        try:
            report = validate_shard(
                result.rec,
                result.idx,
                result.lst,
                label_width=self.label_width,
                pack_label=self.pack_label,
                decode=self.decode,
                expected_sha256=result.sha256,
                storage_options=self.storage_options,
            )
        except FileNotFoundError as exc:
            return False, [str(exc)]
        return report.ok, list(report.problems)

    def pack(self, shard: PlannedShard, prefix: str) -> ShardResult:
        sizes = [fingerprint_size(shard.fingerprints.get(e.path, "")) for e in shard.entries]
        return pack_shard(
            shard.entries,
            self.source,
            prefix,
            self.options,
            source_options=self.source_options,
            storage_options=self.storage_options,
            progress=Progress(shard.plan.name, shard.plan.count, self.logger),
            sizes=sizes,
            # as pack-shard does: worker processes from a forkserver, threads in a daemon
            processes=not multiprocessing.current_process().daemon,
            start_method="forkserver",
        )

    def shard(self, split: str, shard: PlannedShard) -> tuple[ShardResult, bool]:
        """The shard's result (with its per-image digests), reused when kept and still valid,
        else packed and kept."""
        key = shard_key(
            shard.entries,
            root=self.source,
            fingerprints=shard.fingerprints,
            params={**self.key_params, "shard": f"{split}/{shard.plan.name}"},
        )
        prefix = join_url(self.output, split, f"{shard.plan.name}.{key[:KEY_CHARS]}")
        kept_at = result_url(self.output, key)
        # kept by a streaming build, else cached by a build without streaming; the files it
        # names may be elsewhere (an output copied, or the same shard packed into another
        # one): it holds for the files here if they validate against its sha256
        kept = load_result(kept_at, self.storage_options) or cached_pack_result(key)
        if kept is not None:
            here = replace(kept, rec=prefix + ".rec", idx=prefix + ".idx", lst=prefix + ".lst")
            if self.valid(here)[0]:
                if here != kept:
                    save_result(kept_at, here, self.storage_options)
                return here, True
        result = self.pack(shard, prefix)
        ok, problems = self.valid(result)
        if not ok:
            self.logger.warning("%s failed validation (%s); packing it again", prefix, problems[:3])
            result = self.pack(shard, prefix)
            ok, problems = self.valid(result)
            if not ok:
                raise ValidationFailed(
                    f"{result.rec} fails validation after packing it again: "
                    + "; ".join(problems[:5])
                )
        if result.records + len(result.rejects) != shard.plan.count:
            raise RuntimeError(
                f"{split}/{shard.plan.name}: {shard.plan.count} images planned but "
                f"{result.records} packed and {len(result.rejects)} rejected; run the build again"
            )
        save_result(kept_at, result, self.storage_options)
        return result, False


def seen_images(split: str, entries: Any, result: ShardResult) -> list[Seen]:
    """The shard's images as the quality report sees them (no digests from a result that
    has none: its images are left out of the grouping, as `flows/build_report.quality_of`)."""
    digests = result.digests if len(result.digests) == 32 * len(entries) else b""
    dhashes = result.dhashes if len(result.dhashes) == len(entries) else ()
    return [
        Seen(
            e.path,
            tuple(e.labels),
            split,
            digests[32 * i : 32 * i + 32] if digests else NO_DIGEST,
            dhashes[i] if dhashes else NO_DHASH,
        )
        for i, e in enumerate(entries)
    ]


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
    packer = _Packer(
        source, output, options, key_params, label_width, pack_label, decode,
        source_options, storage_options, logger,
    )  # fmt: skip
    results, reused, seen = [], [], []
    for shard in shards:
        result, was_kept = packer.shard(group.split, shard)
        results.append(slim(result))
        reused.append(was_kept)
        seen += seen_images(group.split, shard.entries, result)
    quality = write_quality_pieces(staging, group.number, seen, near_distance, storage_options)
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
