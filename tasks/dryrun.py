"""Task: a dry run's report — decode a small sample of the planned shards' images, estimate
bytes and time, and publish what the build would write as a markdown artifact. Nothing is
written to OUTPUT (`recordio_core.building.dryrun`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from recordio_core.building.dryrun import (
    DryRun,
    PlannedShard,
    dry_run_markdown,
    measure_sample,
    sample_entries,
)
from recordio_core.building.pack import PackOptions
from recordio_core.format.manifest import relative_path
from recordio_flow.tasks.common import Carry, run_logger
from recordio_flow.tasks.report import artifact_key, label_key


@task(name="dry-run", cache_policy=NO_CACHE)
def dry_run_task(
    jobs: Carry,
    *,
    source: str,
    output: str,
    options: PackOptions,
    listed: int,
    skipped: int,
    dropped: int,
    workers: int,
    class_map: Mapping[str, int],
    source_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dry run's summary (`DryRun.to_dict()`), also published as an artifact."""
    planned = jobs.value
    entries = [e for job in planned for e in job.entries()]
    labels: dict[str, Counter] = {}
    for job in planned:
        labels.setdefault(job.split, Counter()).update(label_key(e.label) for e in job.entries())
    sample = measure_sample(sample_entries(entries), source, options, source_options)
    report = DryRun(
        output=output,
        listed=listed,
        skipped=skipped,
        dropped_duplicates=dropped,
        shards=tuple(
            PlannedShard(j.split, j.name, j.count, relative_path(output, j.rec)) for j in planned
        ),
        labels=labels,
        sample=sample,
        workers=workers,
        class_names={label_key(float(v)): k for k, v in class_map.items()},
    )
    create_markdown_artifact(
        dry_run_markdown(report),
        key=artifact_key("dry-run", output),
        description=f"Dry run of a build into {output} (nothing written)",
    )
    summary = report.to_dict()
    run_logger().info(
        "dry run: %d images in %d shards, ~%d bytes, ~%.0f s; nothing written to %s",
        summary["images"],
        len(summary["shards"]),
        summary["estimated_bytes"],
        summary["estimated_seconds"],
        output,
    )
    return summary
