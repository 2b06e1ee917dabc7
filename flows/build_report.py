"""What the build flow reports after packing: rejects (checked against the reject policy), the
data quality report, and the run's artifacts (summary with a contact sheet, shard table)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from recordio_core.building.pack import ShardResult
from recordio_core.building.quality import NO_DHASH, NO_DIGEST, QualityReport, Seen
from recordio_core.building.quality import quality_report as make_quality_report
from recordio_core.format.lst import LstEntry, read_lst
from recordio_core.format.manifest import Manifest, RejectEntry
from recordio_core.reading.inspect import SheetPick, sheet_from_records
from recordio_flow.flows.build_plan import Planned
from recordio_flow.flows.params import BuildParameters
from recordio_flow.tasks.commit import build_manifest, commit_dataset
from recordio_flow.tasks.report import (
    SHEET_PER_CLASS,
    ShardOutcome,
    artifact_key,
    build_summary,
    label_key,
    quality_text,
    shard_table,
    sheet_picks,
    summary_markdown,
)


class RejectsExceeded(ValueError):
    """More images were rejected than the reject policy allows."""


def check_rejects(p: BuildParameters, rejects: list[RejectEntry], listed: int) -> None:
    if not rejects:
        return
    shown = "; ".join(f"{r.path}: {r.reason}" for r in rejects[:5])
    if p.reject_policy == "fail":
        raise RejectsExceeded(
            f"{len(rejects)} image(s) rejected and reject_policy='fail' (e.g. {shown})"
        )
    fraction = len(rejects) / max(1, listed)
    if fraction > p.max_reject_fraction:
        raise RejectsExceeded(
            f"{len(rejects)} of {listed} images rejected ({fraction:.1%}), more than "
            f"max_reject_fraction={p.max_reject_fraction:g} (e.g. {shown})"
        )


def quality_of(p: BuildParameters, planned: Planned, results: list[ShardResult]) -> QualityReport:
    """Warnings, duplicates and near-duplicates over every planned image. A result cached by
    a version that did not hash has no digests: its images are left out of the grouping."""
    dedupe = planned.dedupe
    seen: list[Seen] = []
    for job, entries, result in zip(planned.jobs, planned.job_entries, results, strict=True):
        digests = result.digests if len(result.digests) == 32 * len(entries) else b""
        dhashes = result.dhashes if len(result.dhashes) == len(entries) else ()
        for i, e in enumerate(entries):
            seen.append(
                Seen(
                    e.path,
                    tuple(e.labels),
                    job.split,
                    digests[32 * i : 32 * i + 32] if digests else NO_DIGEST,
                    dhashes[i] if dhashes else NO_DHASH,
                )
            )
    warnings = [(w.path, w.reason) for r in results for w in r.warnings]
    return make_quality_report(
        seen,
        warnings,
        p.near_duplicate_distance,
        duplicates=dedupe.groups if dedupe is not None else None,
    )


def collect_rejects(
    p: BuildParameters, planned: Planned, results: list[ShardResult]
) -> list[RejectEntry]:
    """Every image left out: skipped by the listing, rejected while packing (checked against
    the reject policy), then copies dropped by `dedupe="drop"` (never a policy failure)."""
    rejects = [RejectEntry(path=path, reason=reason) for path, reason in planned.listing.skipped]
    rejects += [
        RejectEntry(path=r.path, reason=r.reason, index=r.index)
        for result in results
        for r in result.rejects
    ]
    check_rejects(p, rejects, planned.listed)
    if planned.dedupe is not None:
        rejects += [
            RejectEntry(path=e.path, reason=f"duplicate of {kept}", index=e.index)
            for e, kept in planned.dedupe.dropped
        ]
    return rejects


def write_dataset(
    p: BuildParameters,
    *,
    class_map: Mapping[str, int],
    split_names: Sequence[str],
    results: Sequence[tuple[str, ShardResult]],
    rejects: Sequence[RejectEntry],
    quality: QualityReport,
) -> tuple[Manifest, str]:
    """The manifest of `results` (`(split, shard result)` in shard order), written with the
    class map and rejects under the commit lock; (manifest, its URL)."""
    manifest = build_manifest(
        output=p.output,
        # pack_label as the bytes hold it (an empty pack_label means label_width > 1)
        parameters={**p.model_dump(mode="json"), "pack_label": p.packs_labels},
        class_map=class_map,
        split_names=split_names,
        results=results,
        rejects=rejects,
        quality=quality,
    )
    url = commit_dataset(
        manifest,
        output=p.output,
        owner=str(flow_run.id or "local"),
        storage_options=p.output_options,
    )
    return manifest, url


def publish_shards(
    p: BuildParameters,
    outcomes: Sequence[ShardOutcome],
    summary: Mapping[str, Any],
    url: str,
    logger: Any,
) -> None:
    """The shard table artifact and the run's closing log line."""
    create_table_artifact(
        shard_table(outcomes),
        key=artifact_key("shards", p.output),
        description=f"Shards of {p.output}",
    )
    logger.info(
        "dataset complete: %d records in %d shards (%d packed, %d reused), %d rejects -> %s",
        summary["records"],
        summary["shards"],
        summary["shards_packed"],
        summary["shards_cached"],
        summary["rejects"],
        url,
    )


def summary_sheet(
    job_entries: list[Sequence[LstEntry]],
    results: list[ShardResult],
    outcomes: list[ShardOutcome],
    class_map: dict[str, int],
    storage_options: dict[str, Any],
    logger: Any,
) -> bytes | None:
    """A small contact sheet of the packed records (a few per class, as `recflow inspect`
    draws them) for the run summary; None, with a warning, if it cannot be drawn."""
    counts: Counter = Counter()
    for o in outcomes:
        counts.update(o.labels)

    def picks() -> list[SheetPick]:
        return sheet_picks(
            (r.rec, r.idx, entries, [x.index for x in r.rejects])
            for entries, r in zip(job_entries, results, strict=True)
        )

    return _draw_sheet(picks, dict(counts), class_map, storage_options, logger)


SHEET_SHARDS = 2  # the shards a streaming build reads back for its contact sheet


def sheet_of_shards(
    results: Sequence[ShardResult],
    counts: Mapping[str, int],
    class_map: dict[str, int],
    storage_options: dict[str, Any],
    logger: Any,
) -> bytes | None:
    """`summary_sheet` for a build that holds no entries (streaming): the records are picked
    from the `.lst` of the first `SHEET_SHARDS` shards, read back (one shard of class-mixed
    records holds many classes); `counts`: images per class (`label_key`)."""

    def shards() -> Iterator[tuple[str, str, list[LstEntry], list[int]]]:
        for r in results[:SHEET_SHARDS]:
            if r.lst:
                entries = read_lst(r.lst, storage_options, allow_duplicates=True)
                yield r.rec, r.idx, entries, [x.index for x in r.rejects]

    return _draw_sheet(
        lambda: sheet_picks(shards()), dict(counts), class_map, storage_options, logger
    )


def _draw_sheet(
    picks: Callable[[], list[SheetPick]],
    counts: dict[str, int],
    class_map: dict[str, int],
    storage_options: dict[str, Any],
    logger: Any,
) -> bytes | None:
    """The sheet of the records `picks()` chooses; None, with a warning, on any error."""
    try:
        return sheet_from_records(
            picks(),
            counts,
            {label: name for name, label in class_map.items()},
            per_class=SHEET_PER_CLASS,
            storage_options=storage_options,
        )
    except Exception as exc:  # a picture is not worth failing a finished build
        logger.warning("no contact sheet in the summary: %s", exc)
        return None


def publish_summary(
    p: BuildParameters,
    summary: Mapping[str, Any],
    class_map: Mapping[str, int],
    rejects: Sequence[RejectEntry],
    quality: QualityReport,
    sheet: bytes | None,
) -> None:
    """The run summary artifact (markdown, with the contact sheet when there is one)."""
    create_markdown_artifact(
        summary_markdown(summary, class_map, rejects, quality, sheet),
        key=artifact_key("dataset", p.output),
        description=f"Dataset summary for {p.output}",
    )


def shard_outcomes(
    planned: Planned, results: list[ShardResult], cached: list[bool]
) -> list[ShardOutcome]:
    """What each shard holds, for the summary and the shard table."""
    outcomes = []
    for job, entries, result, was_cached in zip(
        planned.jobs, planned.job_entries, results, cached, strict=True
    ):
        rejected = {r.index for r in result.rejects}
        labels = Counter(label_key(e.label) for e in entries if e.index not in rejected)
        outcomes.append(
            ShardOutcome(
                split=job.split,
                name=job.name,
                rec=result.rec.rpartition("/")[2],
                records=result.records,
                bytes=result.bytes,
                sha256=result.sha256,
                rejects=len(result.rejects),
                cached=was_cached,
                labels=labels,
            )
        )
    return outcomes


def report_build(
    p: BuildParameters,
    planned: Planned,
    results: list[ShardResult],
    cached: list[bool],
    manifest: Manifest,
    url: str,
    rejects: list[RejectEntry],
    quality: QualityReport,
    start: float,
    logger: Any,
) -> dict[str, Any]:
    """The run's artifacts (summary with its contact sheet, shard table) and closing log
    lines; returns the summary."""
    class_map = planned.listing.class_map
    outcomes = shard_outcomes(planned, results, cached)
    sheet = summary_sheet(
        planned.job_entries, results, outcomes, class_map, p.output_options, logger
    )
    summary = build_summary(
        output=p.output,
        manifest_url=url,
        manifest=manifest,
        outcomes=outcomes,
        seconds=time.perf_counter() - start,
        listed=planned.listed,
        quality=quality,
    )
    publish_summary(p, summary, class_map, rejects, quality, sheet)
    publish_shards(p, outcomes, summary, url, logger)
    logger.info("data quality: %s", quality_text(summary["quality"]))
    return summary
