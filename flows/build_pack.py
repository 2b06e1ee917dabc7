"""The build flow's packing: pack every shard (mapped over the task runner), validate each as
soon as it is packed, pack again the ones that fail, and account for every image."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from prefect import unmapped
from prefect.artifacts import (
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed
from prefect.utilities.annotations import opaque

from recordio_core.building.pack import PackOptions, ShardResult
from recordio_flow.flows.params import BuildParameters
from recordio_flow.tasks.pack import pack_shard_task
from recordio_flow.tasks.plan import ShardJob
from recordio_flow.tasks.validate import ValidationFailed, validate_shard_task


def submit_packs(jobs: list[ShardJob], kwargs: dict[str, Any]) -> list[PrefectFuture]:
    """Map the pack task over `jobs`, in order. A shard whose files are missing from storage
    is packed with `refresh_cache=True`: a cached result is only good while its files exist."""
    futures: list[PrefectFuture | None] = [None] * len(jobs)
    present = [i for i, j in enumerate(jobs) if j.present]
    missing = [i for i, j in enumerate(jobs) if not j.present]
    for task, group in (
        (pack_shard_task, present),
        (pack_shard_task.with_options(refresh_cache=True), missing),
    ):
        if group:
            for i, fut in zip(group, task.map([jobs[i] for i in group], **kwargs), strict=True):
                futures[i] = fut
    return [f for f in futures if f is not None]


def pack_and_validate(
    p: BuildParameters,
    jobs: list[ShardJob],
    opts: PackOptions,
    progress_id: Any,
    start: float,
    logger: Any,
) -> tuple[list[ShardResult], list[bool]]:
    """Pack every shard (mapped), validate each as soon as it is packed, pack again the ones
    that fail; (results, which were reused from the cache). Every image is accounted for."""
    so = p.output_options
    pack_kwargs = {
        "source": unmapped(p.source),
        "options": unmapped(opts),
        "source_options": unmapped(p.source_options),
        "storage_options": unmapped(so),
    }
    validate_kwargs = {
        "label_width": unmapped(p.label_width),
        "pack_label": unmapped(p.packs_labels),
        "decode": unmapped(p.validate_decode),
        "storage_options": unmapped(so),
    }
    packs = submit_packs(jobs, pack_kwargs)
    reports = _validate_as_packed(packs, jobs, validate_kwargs, progress_id, start, logger)
    results: list[ShardResult] = [f.result() for f in packs]
    cached = [f.state.name == "Cached" for f in packs]
    # a cached result names the files it was packed to: the same shard packed into another
    # OUTPUT (the cache key is the content's, not the place's) is packed here again
    bad = [i for i, r in enumerate(reports) if not r.ok or results[i].rec != jobs[i].rec]
    if bad:
        logger.warning("%d shard(s) failed validation; packing them again", len(bad))
        for i, result in zip(bad, _repack(jobs, bad, pack_kwargs, validate_kwargs), strict=True):
            results[i] = result
            cached[i] = False
    for job, result in zip(jobs, results, strict=True):  # every image packed or rejected
        if result.records + len(result.rejects) != job.count:
            raise RuntimeError(
                f"{job.label}: {job.count} images planned but {result.records} packed and "
                f"{len(result.rejects)} rejected; run the build again"
            )
    return results, cached


def _validate_as_packed(
    packs: list[PrefectFuture],
    jobs: list[ShardJob],
    validate_kwargs: dict[str, Any],
    progress_id: Any,
    start: float,
    logger: Any,
) -> list[Any]:
    """Each shard's validation report, validated as soon as it is packed, with the progress
    artifact and a log line per packed shard."""
    total_images = max(1, sum(j.count for j in jobs))
    done_images = 0
    index = {id(f): i for i, f in enumerate(packs)}
    reports: list[Any] = [None] * len(jobs)
    plain_validate_kwargs = {k: v.value for k, v in validate_kwargs.items()}
    for done_shards, fut in enumerate(as_completed(packs), start=1):
        i = index[id(fut)]
        done_images += jobs[i].count
        elapsed = time.perf_counter() - start
        update_progress_artifact(progress_id, progress=100.0 * done_images / total_images)
        logger.info(
            "packed %d/%d shards, %d/%d images (%.0f img/s overall)",
            done_shards,
            len(jobs),
            done_images,
            total_images,
            done_images / max(elapsed, 1e-9),
        )
        # Validate each shard as soon as it is packed, here on the flow's own thread (idle
        # otherwise): it overlaps the shards still packing on the task runner's threads,
        # instead of queueing behind every pack task and running at the end.
        # opaque: wait for the pack result without walking its per-image fields (a direct
        # call runs here; annotations do not survive a Dask task runner's serialisation)
        reports[i] = validate_shard_task(opaque(fut), shard=jobs[i].label, **plain_validate_kwargs)
    return reports


def _repack(
    jobs: list[ShardJob],
    bad: list[int],
    pack_kwargs: dict[str, Any],
    validate_kwargs: dict[str, Any],
) -> list[ShardResult]:
    """Pack the shards `bad` (indices into `jobs`) again, ignoring the cache, and validate
    them; their results, or ValidationFailed if one still fails."""
    redo = [dataclasses.replace(jobs[i], present=False) for i in bad]
    again = submit_packs(redo, pack_kwargs)
    rechecks = validate_shard_task.map(again, shard=[j.label for j in redo], **validate_kwargs)
    results = []
    for fut, check in zip(again, rechecks, strict=True):
        result = fut.result()
        report = check.result()
        if not report.ok:
            raise ValidationFailed(
                f"{result.rec} fails validation after packing it again: "
                + "; ".join(report.problems[:5])
            )
        results.append(result)
    return results
