"""Task: the `dedupe="drop"` pre-pass — hash the source files that may have a byte-identical
twin and drop the copies from their splits before planning (`recordio_core.building.quality`)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.quality import (
    hash_sources,
    plan_dedupe,
    same_size_paths,
    sizes_from_fingerprints,
)
from recordio_core.building.shardkey import source_fingerprints
from recordio_flow.tasks.common import RETRY_OPTIONS, Carry, run_logger


@task(name="find-duplicates", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def dedupe_splits(
    splits: Carry, *, source: str, source_options: dict[str, Any] | None = None
) -> Carry:
    """The carried `list[SplitList]` -> a carried `DedupePlan` (splits without the copies)."""
    logger = run_logger()
    lists = splits.value
    paths = [e.path for s in lists for e in s.entries]
    sizes = sizes_from_fingerprints(source_fingerprints(source, paths, source_options))
    todo = same_size_paths(sizes, paths)
    digests = hash_sources(source, todo, source_options)
    plan = plan_dedupe(lists, digests)
    logger.info(
        "dedupe: hashed %d of %d files (the others have a size no other file has); "
        "%d groups of byte-identical files, %d copies dropped",
        len(todo),
        len(paths),
        len(plan.groups),
        len(plan.dropped),
    )
    return Carry(plan)
