"""The `build-dataset` flow: list -> split -> (dedupe) -> plan -> pack (map) -> validate (map)
-> manifest, with the data quality report (decoder warnings, duplicates, near-duplicates) in
the manifest and the summary. With `dry_run` it stops after planning and reports what it would
write, estimated from a decoded sample, without writing anything to OUTPUT.

Every step is a task of `tasks/` with its own retries; packing fans out over shards and
validation over packed shards. The parameters are typed (`flows/params.py`), so the Prefect UI
shows a form and refuses bad values; the rules that tie several parameters together are
checked by `BuildParameters` as the run starts, before any work.

The steps live beside this module: `flows/build_plan.py` (list, split, dedupe, plan),
`flows/build_pack.py` (pack and validate), `flows/build_report.py` (rejects, quality,
artifacts) and `flows/build_options.py` (pack options and content-key parameters).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import (
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from recordio_flow.flows.build_options import (
    SHARD_CONCURRENCY,
    pack_options,
    total_workers,
    workers_per_shard,
)
from recordio_flow.flows.build_pack import pack_and_validate
from recordio_flow.flows.build_plan import list_split_plan
from recordio_flow.flows.build_report import (
    collect_rejects,
    quality_of,
    report_build,
    write_dataset,
)
from recordio_flow.flows.build_stream import run_stream_build
from recordio_flow.flows.param_types import (
    DEFAULT_EXTS,
    DEFAULT_IO_CONCURRENCY,
    DEFAULT_MAX_PIXELS,
    DEFAULT_NEAR_DUPLICATE_DISTANCE,
    DEFAULT_REDUCING_GAP,
    AllowOutsideRoot,
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
    Streaming,
    TestRatio,
    TrainRatio,
    ValidateDecode,
    Verify,
)
from recordio_flow.flows.params import BuildParameters, describe_parameters, parse_parameters
from recordio_flow.tasks.common import Carry
from recordio_flow.tasks.dryrun import dry_run_task
from recordio_flow.tasks.split import split_key


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
    streaming: Streaming = False,
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


def run_build(p: BuildParameters) -> dict[str, Any]:
    """list -> split -> (dedupe) -> plan -> pack + validate -> manifest -> report; with
    `streaming`, `flows/build_stream.py`'s steps instead."""
    if p.streaming:
        return run_stream_build(p)
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
            workers=total_workers(opts, len(planned.jobs)),
            class_map=planned.listing.class_map,
            source_options=p.source_options,
        )
    progress_id = create_progress_artifact(
        progress=0.0, description=f"Packing {len(planned.jobs)} shards into {p.output}"
    )
    results, cached = pack_and_validate(p, planned.jobs, opts, progress_id, start, logger)
    rejects = collect_rejects(p, planned, results)
    quality = quality_of(p, planned, results)
    manifest, url = write_dataset(
        p,
        class_map=planned.listing.class_map,
        split_names=[split_key(s) for s in planned.splits],
        results=[(job.split, r) for job, r in zip(planned.jobs, results, strict=True)],
        rejects=rejects,
        quality=quality,
    )
    update_progress_artifact(progress_id, progress=100.0)
    return report_build(p, planned, results, cached, manifest, url, rejects, quality, start, logger)
