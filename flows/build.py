"""The `build-dataset` flow: list -> split -> (dedupe) -> plan -> pack (map) -> validate (map)
-> manifest, with the data quality report (decoder warnings, duplicates, near-duplicates) in
the manifest and the summary. With `dry_run` it stops after planning and reports what it would
write, estimated from a decoded sample, without writing anything to OUTPUT.

Every step is a task of `tasks/` with its own retries; packing fans out over shards and
validation over packed shards. The parameters are typed (`flows/params.py`), so the Prefect UI
shows a form and refuses bad values; the rules that tie several parameters together are
checked by `BuildParameters` as the run starts, before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import opaque

from flows.params import (
    DEFAULT_EXTS,
    DEFAULT_IO_CONCURRENCY,
    DEFAULT_MAX_PIXELS,
    DEFAULT_NEAR_DUPLICATE_DISTANCE,
    DEFAULT_REDUCING_GAP,
    MAX_SHARDS,
    AllowOutsideRoot,
    BuildParameters,
    CenterCrop,
    Chunks,
    Color,
    CredentialsBlockParam,
    DaskAddress,
    Dedupe,
    DryRun,
    Encoding,
    Exts,
    InterMethod,
    IoConcurrency,
    LabelWidth,
    Lst,
    MaxPixels,
    MaxRejectFraction,
    NearDuplicateDistance,
    NumWorkers,
    OnDecodeWarning,
    Output,
    PackLabel,
    PassThrough,
    Quality,
    RecordOrder,
    RecordsPerShard,
    Recursive,
    ReducingGap,
    RejectPolicy,
    Resize,
    Seed,
    Shuffle,
    Source,
    SourceCredentialsBlockParam,
    SourceStorageOptionsParam,
    SplitMethod,
    SplitSalt,
    StorageOptionsParam,
    TestRatio,
    TrainRatio,
    ValidateDecode,
    Verify,
    describe_parameters,
    parse_parameters,
)
from recordio_core.image import ImageOptions
from recordio_core.inspect import sheet_from_records
from recordio_core.listing import Listing
from recordio_core.lst import LstEntry
from recordio_core.manifest import Manifest, RejectEntry
from recordio_core.pack import PackOptions, ShardResult
from recordio_core.quality import NO_DHASH, NO_DIGEST, DedupePlan, QualityReport, Seen
from recordio_core.quality import quality_report as make_quality_report
from tasks.commit import build_manifest, commit_dataset
from tasks.common import Carry
from tasks.dryrun import dry_run_task
from tasks.listing import list_source
from tasks.pack import pack_shard_task
from tasks.plan import ShardJob, plan_shards
from tasks.quality import dedupe_splits
from tasks.report import (
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
from tasks.split import split_entries, split_key
from tasks.validate import validate_shard_task

SHARD_CONCURRENCY = max(2, os.cpu_count() or 1)  # shard tasks at once on the thread pool


class RejectsExceeded(ValueError):
    """More images were rejected than the reject policy allows."""


class ValidationFailed(RuntimeError):
    """A shard still fails validation after being packed again."""


def workers_per_shard(p: BuildParameters, shards: int) -> int:
    """Threads inside each shard task: as asked, or share the CPUs among concurrent shards."""
    if p.num_workers:
        return p.num_workers
    cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, min(cpus, shards)))


def pack_options(p: BuildParameters, num_workers: int = 1) -> PackOptions:
    image = ImageOptions(
        resize=p.resize,
        center_crop=p.center_crop,
        color=p.color,
        encoding=p.encoding,
        quality=p.quality,
        pass_through=p.pass_through,
        inter_method=p.inter_method,
        verify=p.verify,
        max_pixels=p.max_pixels,
        reducing_gap=p.reducing_gap,
    )
    return PackOptions(
        image=image,
        label_width=p.label_width,
        pack_label=p.packs_labels,
        num_workers=num_workers,
        io_concurrency=p.io_concurrency,
        on_decode_warning=p.on_decode_warning,
        near_duplicates=p.near_duplicate_distance is not None,
    )


# Pack options that change no byte of a shard: always (worker counts, I/O concurrency,
# near-duplicate hashing only reports) or at today's value (`on_decode_warning="keep"`). They
# stay out of the content key then, so adding them moved no existing shard's key.
_NO_BYTES = {"num_workers", "io_concurrency", "io_budget", "near_duplicates"}
_NO_BYTES_AT = {"on_decode_warning": "keep"}


def key_parameters(opts: PackOptions) -> dict[str, Any]:
    """Everything in the pack options that can change bytes: all of it but worker counts, I/O
    concurrency, near-duplicate hashing and `on_decode_warning="keep"`."""
    image = {f"image.{k}": v for k, v in vars(opts.image).items()}
    rest = {
        k: v
        for k, v in vars(opts).items()
        if k != "image" and k not in _NO_BYTES and _NO_BYTES_AT.get(k, object()) != v
    }
    return {**image, **rest}


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


@flow(
    name="build-dataset",
    description="Build an MXNet RecordIO dataset (.rec/.idx/.lst shards + manifest.json) "
    "from an image folder, locally or in object storage.",
    validate_parameters=True,
    task_runner=ThreadPoolTaskRunner(max_workers=SHARD_CONCURRENCY),
)
@describe_parameters  # the form's help text: the aliases' descriptions (flows/params.py)
def build_dataset(
    source: Source,
    output: Output,
    resize: Resize = 0,
    label_width: LabelWidth = 1,
    train_ratio: TrainRatio = 1.0,
    test_ratio: TestRatio = 0.0,
    quality: Quality = 95,
    pass_through: PassThrough = False,
    lst: Lst = None,
    pack_label: PackLabel = None,
    allow_outside_root: AllowOutsideRoot = False,
    recursive: Recursive = True,
    exts: Exts = tuple(DEFAULT_EXTS),  # type: ignore[assignment]
    split_method: SplitMethod = "stable",
    record_order: RecordOrder = "hash",
    shuffle: Shuffle = True,
    seed: Seed = 100,
    chunks: Chunks = 1,
    split_salt: SplitSalt = "",
    center_crop: CenterCrop = False,
    color: Color = 1,
    encoding: Encoding = ".jpg",
    inter_method: InterMethod = 1,
    verify: Verify = "header",
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    reducing_gap: ReducingGap = DEFAULT_REDUCING_GAP,
    records_per_shard: RecordsPerShard = None,
    num_workers: NumWorkers = 0,
    io_concurrency: IoConcurrency = DEFAULT_IO_CONCURRENCY,
    reject_policy: RejectPolicy = "skip",
    max_reject_fraction: MaxRejectFraction = 1.0,
    validate_decode: ValidateDecode = False,
    on_decode_warning: OnDecodeWarning = "keep",
    dedupe: Dedupe = "none",
    near_duplicate_distance: NearDuplicateDistance = DEFAULT_NEAR_DUPLICATE_DISTANCE,
    dry_run: DryRun = False,
    storage_options: StorageOptionsParam = None,
    source_storage_options: SourceStorageOptionsParam = None,
    credentials_block: CredentialsBlockParam = None,
    source_credentials_block: SourceCredentialsBlockParam = None,
    dask_address: DaskAddress = None,
) -> dict[str, Any]:
    """Build the dataset; returns a summary (records, bytes, rejects, shards, time)."""
    p = parse_parameters(locals())
    if p.dask_address:
        from prefect_dask import DaskTaskRunner

        on_dask = build_dataset_on_dask.with_options(
            task_runner=DaskTaskRunner(address=p.dask_address)
        )
        return on_dask(p.model_dump(mode="json"))
    return run_build(p)


@flow(name="build-dataset-dask", description="build-dataset's work, with tasks on Dask.")
def build_dataset_on_dask(parameters: dict[str, Any]) -> dict[str, Any]:
    """Run by `build-dataset` as a subflow when `dask_address` is set."""
    return run_build(parse_parameters(parameters))


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


def _total_workers(opts: PackOptions, shards: int) -> int:
    """Images transformed at once: workers per shard times shards packed at once."""
    return opts.num_workers * max(1, min(shards, SHARD_CONCURRENCY))


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
    picks = sheet_picks(
        (r.rec, r.idx, entries, [x.index for x in r.rejects])
        for entries, r in zip(job_entries, results, strict=True)
    )
    counts: Counter = Counter()
    for o in outcomes:
        counts.update(o.labels)
    try:
        return sheet_from_records(
            picks,
            dict(counts),
            {label: name for name, label in class_map.items()},
            per_class=SHEET_PER_CLASS,
            storage_options=storage_options,
        )
    except Exception as exc:  # a picture is not worth failing a finished build
        logger.warning("no contact sheet in the summary: %s", exc)
        return None


@dataclasses.dataclass(frozen=True)
class Planned:
    """What listing, splitting, deduplication and planning gave: the shards to pack."""

    listing: Listing
    listed: int  # images listed, skipped ones included
    splits: list[Any]
    dedupe: DedupePlan | None
    jobs: list[ShardJob]

    @functools.cached_property
    def job_entries(self) -> list[Sequence[LstEntry]]:
        """Each job's entries for the steps after packing: its slice of the split it was
        planned from."""
        return [job.entries() for job in self.jobs]


def run_build(p: BuildParameters) -> dict[str, Any]:
    """list -> split -> (dedupe) -> plan -> pack + validate -> manifest -> report."""
    logger = get_run_logger()
    start = time.perf_counter()
    planned = list_split_plan(p)
    opts = pack_options(p, workers_per_shard(p, len(planned.jobs)))
    if p.dry_run:
        return dry_run_task(
            Carry(planned.jobs),
            source=p.source,
            output=p.output,
            options=opts,
            listed=planned.listed,
            skipped=len(planned.listing.skipped),
            dropped=len(planned.dedupe.dropped) if planned.dedupe else 0,
            workers=_total_workers(opts, len(planned.jobs)),
            class_map=planned.listing.class_map,
            source_options=p.source_options,
        )
    progress_id = create_progress_artifact(
        progress=0.0, description=f"Packing {len(planned.jobs)} shards into {p.output}"
    )
    results, cached = pack_and_validate(p, planned.jobs, opts, progress_id, start, logger)
    rejects = collect_rejects(p, planned, results)
    quality = quality_of(p, planned, results)
    manifest = build_manifest(
        output=p.output,
        # pack_label as the bytes hold it (an empty pack_label means label_width > 1)
        parameters={**p.model_dump(mode="json"), "pack_label": p.packs_labels},
        class_map=planned.listing.class_map,
        split_names=[split_key(s) for s in planned.splits],
        results=[(job.split, r) for job, r in zip(planned.jobs, results, strict=True)],
        rejects=rejects,
        quality=quality,
    )
    url = commit_dataset(
        manifest,
        output=p.output,
        owner=str(flow_run.id or "local"),
        storage_options=p.output_options,
    )
    update_progress_artifact(progress_id, progress=100.0)
    return report_build(p, planned, results, cached, manifest, url, rejects, quality, start, logger)


def list_split_plan(p: BuildParameters) -> Planned:
    """List the source (or read the .lst), split, drop copies if asked, and plan the shards."""
    src_so = p.source_options
    listing = list_source(
        p.source,
        lst=p.lst,
        allow_outside_root=p.allow_outside_root,
        recursive=p.recursive,
        exts=list(p.exts),
        label_width=p.label_width,
        storage_options=src_so,
        lst_storage_options=src_so,
    ).value
    if not listing.entries:
        raise ValueError(
            f"no images found under {p.source} with extensions {', '.join(p.exts)}"
            + ("" if p.recursive else " (recursive=False looks only at the folder itself)")
        )
    carried_splits = split_entries(
        Carry(listing.entries),
        method=p.split_method,
        train_ratio=p.train_ratio,
        test_ratio=p.test_ratio,
        shuffle=p.shuffle,
        seed=p.seed,
        chunks=p.chunks,
        salt=p.split_salt,
        order=p.record_order,
    )
    dedupe: DedupePlan | None = None
    if p.dedupe == "drop":
        dedupe = dedupe_splits(carried_splits, source=p.source, source_options=src_so).value
        carried_splits = Carry(list(dedupe.splits))
    jobs: list[ShardJob] = plan_shards(
        carried_splits,
        source=p.source,
        output=p.output,
        records_per_shard=p.records_per_shard,
        key_params=key_parameters(pack_options(p)),
        max_shards=MAX_SHARDS,
        source_options=src_so,
        storage_options=p.output_options,
        fingerprints=Carry(listing.fingerprints) if listing.fingerprints is not None else None,
    )
    listed = len(listing.entries) + len(listing.skipped)
    return Planned(listing, listed, carried_splits.value, dedupe, jobs)


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
    results: list[ShardResult] = [f.result() for f in packs]
    cached = [f.state.name == "Cached" for f in packs]

    bad = [i for i, r in enumerate(reports) if not r.ok]
    if bad:
        logger.warning("%d shard(s) failed validation; packing them again", len(bad))
        redo = [dataclasses.replace(jobs[i], present=False) for i in bad]
        again = submit_packs(redo, pack_kwargs)
        rechecks = validate_shard_task.map(again, shard=[j.label for j in redo], **validate_kwargs)
        for i, fut, check in zip(bad, again, rechecks, strict=True):
            results[i] = fut.result()
            cached[i] = False
            report = check.result()
            if not report.ok:
                raise ValidationFailed(
                    f"{results[i].rec} fails validation after packing it again: "
                    + "; ".join(report.problems[:5])
                )

    for job, result in zip(jobs, results, strict=True):  # every image packed or rejected
        if result.records + len(result.rejects) != job.count:
            raise RuntimeError(
                f"{job.label}: {job.count} images planned but {result.records} packed and "
                f"{len(result.rejects)} rejected; run the build again"
            )
    return results, cached


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
    jobs, class_map = planned.jobs, planned.listing.class_map
    outcomes = []
    for job, entries, result, was_cached in zip(
        jobs, planned.job_entries, results, cached, strict=True
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
    create_markdown_artifact(
        summary_markdown(summary, class_map, rejects, quality, sheet),
        key=artifact_key("dataset", p.output),
        description=f"Dataset summary for {p.output}",
    )
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
    logger.info("data quality: %s", quality_text(summary["quality"]))
    return summary
