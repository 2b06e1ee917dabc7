"""Task: validate one packed shard (`recordio_core.building.validate.validate_shard`)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.pack import ShardResult
from recordio_core.building.validate import ValidationFailed, ValidationReport, validate_shard
from recordio_flow.tasks.common import RETRY_OPTIONS, run_logger

__all__ = ["ValidationFailed", "validate_shard_task"]  # ValidationFailed: raised by the flows


@task(
    name="validate-shard",
    task_run_name="validate {shard}",
    cache_policy=NO_CACHE,
    **RETRY_OPTIONS,
)
def validate_shard_task(
    result: ShardResult,
    *,
    shard: str = "",
    label_width: int = 1,
    pack_label: bool = False,
    decode: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> ValidationReport:
    """Re-read every record through the `.idx`; `.lst`, `.idx` and `.rec` must agree and the
    `.rec` must hash to the sha256 the pack step reported. Problems are returned, not raised:
    the flow decides (repack once, then fail)."""
    report = validate_shard(
        result.rec,
        result.idx,
        result.lst,
        label_width=label_width,
        pack_label=pack_label,
        decode=decode,
        expected_sha256=result.sha256,
        storage_options=storage_options,
    )
    if not report.ok:
        run_logger().warning("%s failed validation: %s", result.rec, "; ".join(report.problems[:5]))
    return report
