"""The build flow with `streaming=True`: for sources of millions of images.

list parts (mapped) -> (dedupe: find copies, mapped over size buckets) -> plan groups of
shards (in the flow, from per-bucket counts) -> pack groups (mapped; each packs, validates and
keeps its shards one by one, and writes its images' hashes to quality pieces) -> find
duplicates (mapped over bucket ranges) -> manifest -> report.

The steps before planning live in `flows/build_stream_list.py`. The parts are runs of
top-level folders of SOURCE, or with `lst`, byte ranges of that `.lst`
(`recordio_core.building.stream_lst`), whose first error (`stream_lst_checks`) stops the build
before packing, as reading the whole `.lst` does. With `dedupe="drop"` the copies are found
bucket by bucket of file size (`recordio_core.building.stream_dedupe`) and each pack group
leaves out those of its buckets. The flow process holds per-part, per-bucket, per-label and
per-shard numbers (and the copies dropped), never a list of images: the listing tasks stream
each image to piece files under the run's staging folder (`flows/build_staging.py`, leased
while the run lives, removed when it ends) and the pack tasks read back only their own
shards' records. Task runs: at most `MAX_LIST_PARTS` (128) listing runs (for a `.lst`, at
most 112 parts and 16 index checks), `MAX_PACK_GROUPS` (1,800) pack runs (less one per copy-finding
run with `dedupe="drop"`: up to 64), `QUALITY_TASKS` (64) duplicate runs (one per 500k
images, `quality_tasks_for`) and the manifest's: at most 1,993, whatever the size of the
source. The shards, their names and bytes, the rejects and the manifest's duplicate and
near-duplicate groups are the in-memory build's (`flows/build_plan.py`), so switching
`streaming` on or off reuses every finished shard.

Not here (the parameters refuse them up front): `split_method='im2rec'`,
`record_order='listing'`. The summary's records per label are what the pack groups packed
(not counted past 10,000 distinct first labels); its contact sheet is drawn from the first
shards' `.lst` read back (`build_report.sheet_of_shards`), and a dry run lists and plans
(shards, groups, task runs; with `dedupe="drop"` it hashes what the dedupe hashes) without
decoding a sample.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prefect import unmapped
from prefect.artifacts import (
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.logging import get_run_logger

from recordio_core.building.plan import auto_records_per_shard
from recordio_core.building.quality import QualityReport
from recordio_core.building.stream_dedupe import Copies, with_drops
from recordio_core.building.stream_pack import MAX_LABEL_VALUES
from recordio_core.building.stream_plan import GroupJob, MergedListing, plan_groups
from recordio_core.building.stream_quality import (
    bucket_ranges,
    near_groups_from_pairs,
    quality_tasks_for,
)
from recordio_core.format.manifest import Manifest, RejectEntry
from recordio_flow.flows.build_options import (
    key_parameters,
    pack_options,
    workers_per_shard,
)
from recordio_flow.flows.build_report import (
    check_rejects,
    publish_shards,
    publish_summary,
    sheet_of_shards,
    write_dataset,
)
from recordio_flow.flows.build_staging import staged
from recordio_flow.flows.build_stream_list import drop_copies, list_parts
from recordio_flow.flows.param_types import MAX_STREAM_SHARDS
from recordio_flow.flows.params import BuildParameters
from recordio_flow.tasks.plan import effective_records_per_shard
from recordio_flow.tasks.report import (
    ShardOutcome,
    build_summary,
    label_key,
)
from recordio_flow.tasks.stream import (
    GroupResult,
    pack_group_task,
    quality_task,
)

MAX_PACK_GROUPS = 1_800  # pack task runs per build, at most


def run_stream_build(p: BuildParameters) -> dict[str, Any]:
    """list parts -> plan groups -> pack groups -> manifest -> report (module docstring)."""
    logger = get_run_logger()
    start = time.perf_counter()
    with staged(p, logger) as (staging, staging_options):
        merged, listings, runs = list_parts(p, staging, staging_options, logger)
        copies = drop_copies(p, merged, listings, staging, staging_options, logger)
        groups = _plan(p, with_drops(merged, copies), logger, MAX_PACK_GROUPS - len(copies))
        if p.dry_run:
            return _dry_run_summary(p, merged, groups, runs, copies, start)
        done = _pack(p, groups, staging, logger, start)
        return _commit(p, merged, groups, done, copies, start, logger)


def _plan(
    p: BuildParameters, merged: MergedListing, logger: Any, max_groups: int = MAX_PACK_GROUPS
) -> list[GroupJob]:
    asked = p.records_per_shard or auto_records_per_shard(merged.known_bytes, merged.known_count)
    sizes = [s.total for s in merged.splits]
    rps = effective_records_per_shard(sizes, asked, MAX_STREAM_SHARDS)
    groups = plan_groups(merged, rps, max_groups)
    logger.info(
        "planned %d shards of up to %d images in %d groups",
        sum(len(g.shards) for g in groups),
        rps,
        len(groups),
    )
    return groups


def _pack(
    p: BuildParameters, groups: list[GroupJob], staging: str, logger: Any, start: float
) -> list[GroupResult]:
    """Pack every group (mapped), with the progress artifact and a log line per group."""
    total = max(1, sum(g.count for g in groups))
    progress_id = create_progress_artifact(
        progress=0.0, description=f"Packing {total} images in {len(groups)} groups into {p.output}"
    )
    futures = pack_group_task.map(
        groups,
        source=unmapped(p.source),
        output=unmapped(p.output),
        staging=unmapped(staging),
        options=unmapped(pack_options(p, workers_per_shard(p, len(groups)))),
        key_params=unmapped(key_parameters(pack_options(p))),
        near_distance=unmapped(p.near_duplicate_distance),
        label_width=unmapped(p.label_width),
        pack_label=unmapped(p.packs_labels),
        decode=unmapped(p.validate_decode),
        source_options=unmapped(p.source_options),
        storage_options=unmapped(p.output_options),
    )
    index = {id(f): i for i, f in enumerate(futures)}
    done: list[Any] = [None] * len(groups)
    images = 0
    for n, fut in enumerate(as_completed(futures), start=1):
        i = index[id(fut)]
        done[i] = fut.result()
        images += groups[i].count
        update_progress_artifact(progress_id, progress=100.0 * images / total)
        logger.info(
            "packed %d/%d groups, %d/%d images (%.0f img/s overall)",
            n,
            len(groups),
            images,
            total,
            images / max(time.perf_counter() - start, 1e-9),
        )
    return done


def _commit(
    p: BuildParameters,
    merged: MergedListing,
    groups: list[GroupJob],
    done: list[GroupResult],
    copies: list[Copies],
    start: float,
    logger: Any,
) -> dict[str, Any]:
    """Check the rejects (then add the copies dropped, never a policy failure), write the
    manifest (under the commit lock), report."""
    results = [(g.split, r) for g, d in zip(groups, done, strict=True) for r in d.results]
    rejects = [RejectEntry(path=path, reason=reason) for path, reason in merged.skipped]
    rejects += [
        RejectEntry(path=r.path, reason=r.reason, index=r.index)
        for _, s in results
        for r in s.rejects
    ]
    listed = merged.entries + len(merged.skipped)
    check_rejects(p, rejects, listed)
    rejects += [
        RejectEntry(path=path, reason=f"duplicate of {kept}", index=index)
        for path, index, kept in sorted(d for c in copies for d in c.dropped)
    ]
    warnings = [(w.path, w.reason) for _, s in results for w in s.warnings]
    quality = _quality(p, done, warnings, merged.entries, copies)
    manifest, url = write_dataset(
        p,
        class_map=merged.class_map,
        split_names=[s.name for s in merged.splits],
        results=results,
        rejects=rejects,
        quality=quality,
    )
    labels = split_labels(groups, done, logger)
    return _report(
        p, merged, groups, done, manifest, url, listed, rejects, quality, labels, start, logger
    )


def _quality(
    p: BuildParameters,
    done: list[GroupResult],
    warnings: list[tuple[str, str]],
    images: int,
    copies: list[Copies],
) -> QualityReport:
    """Duplicates and near-duplicates of the `images` listed, reduced bucket range by bucket
    range (mapped; as many ranges as a dry run counts). With `dedupe="drop"` the duplicate
    groups are those found before packing (the copies packed none)."""
    distance = p.near_duplicate_distance
    tasks = quality_tasks_for(images)
    ranges = bucket_ranges([d.quality for d in done if d.quality is not None], tasks)
    futures = quality_task.map(
        [exact for exact, _ in ranges],
        [near for _, near in ranges],
        number=list(range(len(ranges))),
        distance=unmapped(distance),
        storage_options=unmapped(p.output_options),
    )
    duplicates, pairs = [], []
    for fut in futures:
        groups, close = fut.result()
        duplicates += groups
        pairs += close
    if copies:
        duplicates = [g for c in copies for g in c.groups]
    return QualityReport(
        warnings=tuple(sorted(warnings)),
        duplicates=tuple(sorted(duplicates, key=lambda g: g.paths)),
        near_duplicates=tuple(near_groups_from_pairs(pairs)) if distance is not None else (),
        near_distance=distance,
    )


def split_labels(
    groups: list[GroupJob], done: list[GroupResult], logger: Any
) -> dict[str, Counter]:
    """Records per split and first label ("%g"): the groups' counts of what they packed,
    summed; none for a split of more than `MAX_LABEL_VALUES` distinct first labels (a
    regression `.lst`), which is logged."""
    totals: dict[str, dict[float, int] | None] = {}
    for g, d in zip(groups, done, strict=True):
        have = totals.setdefault(g.split, {})
        if have is None:
            continue
        if d.labels is None:
            totals[g.split] = None
            continue
        for label, n in d.labels.items():
            have[label] = have.get(label, 0) + n
        if len(have) > MAX_LABEL_VALUES:
            totals[g.split] = None
    out: dict[str, Counter] = {}
    for name, counts in totals.items():
        out[name] = Counter()
        if counts is None:
            logger.info(
                "%s: more than %d distinct first labels, not counted in the summary",
                name,
                MAX_LABEL_VALUES,
            )
            continue
        for label, n in counts.items():
            if n > 0:
                out[name][label_key(float(label))] += n
    return out


def _report(
    p: BuildParameters,
    merged: MergedListing,
    groups: list[GroupJob],
    done: list[GroupResult],
    manifest: Manifest,
    url: str,
    listed: int,
    rejects: list[RejectEntry],
    quality: QualityReport,
    labels: dict[str, Counter],
    start: float,
    logger: Any,
) -> dict[str, Any]:
    """The summary artifact (its contact sheet from the first shards), the shard table and the
    closing log line; returns the summary."""
    outcomes = [
        ShardOutcome(
            split=g.split,
            name=plan.name,
            rec=r.rec.rpartition("/")[2],
            records=r.records,
            bytes=r.bytes,
            sha256=r.sha256,
            rejects=len(r.rejects),
            cached=reused,
        )
        for g, d in zip(groups, done, strict=True)
        for plan, r, reused in zip(g.shards, d.results, d.reused, strict=True)
    ]
    summary = build_summary(
        output=p.output,
        manifest_url=url,
        manifest=manifest,
        outcomes=outcomes,
        seconds=time.perf_counter() - start,
        listed=listed,
        quality=quality,
        split_labels=labels,
    )
    summary["streaming"] = {"groups": len(groups)}
    counts: Counter = Counter()
    for per_split in labels.values():
        counts.update({str(cls): n for cls, n in per_split.items()})
    results = [r for d in done for r in d.results]
    sheet = sheet_of_shards(results, counts, merged.class_map, p.output_options, logger)
    publish_summary(p, summary, merged.class_map, rejects, quality, sheet)
    publish_shards(p, outcomes, summary, url, logger)
    return summary


def _dry_run_summary(
    p: BuildParameters,
    merged: MergedListing,
    groups: list[GroupJob],
    parts: int,
    copies: list[Copies],
    start: float,
) -> dict[str, Any]:
    splits: dict[str, Any] = {s.name: {"records": s.total, "shards": 0} for s in merged.splits}
    for g in groups:
        splits[g.split]["shards"] += len(g.shards)
    return {
        "dry_run": True,
        "streaming": True,
        "source": p.source,
        "output": p.output,
        "images_listed": merged.entries + len(merged.skipped),
        "skipped": len(merged.skipped),
        "dropped": sum(len(c.dropped) for c in copies),
        "classes": len(merged.class_map),
        "splits": splits,
        "shards": sum(len(g.shards) for g in groups),
        "listing_tasks": parts,  # a .lst's index checks included
        "pack_groups": len(groups),
        # + the duplicate runs (at most; fewer when buckets are empty) and the manifest's
        "task_runs": parts + len(copies) + len(groups) + quality_tasks_for(merged.entries) + 1,
        "seconds": round(time.perf_counter() - start, 3),
    }
