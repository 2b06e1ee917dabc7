"""The streaming build's steps before planning (`flows/build_stream.py`): list the source in
parts (runs of top-level folders, or byte ranges of the `.lst`, whose first bad line or
repeated index stops the build here), and with `dedupe="drop"` find the copies to leave out,
bucket range by bucket range of size. Each step is mapped over the task runner; the flow
process receives per-part and per-bucket counts only (and the copies found)."""

from __future__ import annotations

from typing import Any

from prefect import unmapped

from recordio_core.building.split import stable_split_names
from recordio_core.building.stream_dedupe import Copies, size_ranges
from recordio_core.building.stream_list import MAX_LIST_PARTS, PartListing, plan_list_parts
from recordio_core.building.stream_lst import plan_lst_parts
from recordio_core.building.stream_lst_checks import (
    first_error,
    index_check_tasks_for,
    index_ranges,
)
from recordio_core.building.stream_plan import MergedListing, merge_parts
from recordio_core.building.stream_quality import quality_tasks_for
from recordio_flow.flows.build_plan import no_images_error
from recordio_flow.flows.params import BuildParameters
from recordio_flow.tasks.stream import (
    check_indexes_task,
    find_copies_task,
    list_lst_part_task,
    list_part_task,
)


def list_parts(
    p: BuildParameters, staging: str, staging_options: dict[str, Any] | None, logger: Any
) -> tuple[MergedListing, list[PartListing], int]:
    """List every part (mapped over the task runner) and merge their counts; the parts'
    listings and the listing task runs it took."""
    if p.lst is not None:
        listings, runs = _list_lst(p, staging, staging_options)
    else:
        listings, runs = _list_folders(p, staging, staging_options)
    names = [split for _, split in stable_split_names(p.train_ratio, p.test_ratio)]
    merged = merge_parts(listings, names)
    if not merged.entries:
        raise no_images_error(p)
    if p.lst is not None:
        logger.info("read %d entries from %s in %d parts", merged.entries, p.lst, len(listings))
    else:
        logger.info(
            "found %d images in %d classes under %s in %d parts%s",
            merged.entries,
            len(merged.class_map),
            p.source,
            len(listings),
            f" ({len(merged.skipped)} skipped)" if merged.skipped else "",
        )
    return merged, listings, runs


def _listing_arguments(
    p: BuildParameters, staging: str, staging_options: dict[str, Any] | None
) -> dict[str, Any]:
    """The arguments every listing task run shares, folder part or `.lst` range."""
    return {
        "source": unmapped(p.source),
        "staging": unmapped(staging),
        "train_ratio": unmapped(p.train_ratio),
        "test_ratio": unmapped(p.test_ratio),
        "salt": unmapped(p.split_salt),
        "seed": unmapped(p.seed),
        "source_options": unmapped(p.source_options),
        "staging_options": unmapped(staging_options),
        "sizes": unmapped(p.dedupe == "drop"),
    }


def _list_folders(
    p: BuildParameters, staging: str, staging_options: dict[str, Any] | None
) -> tuple[list[PartListing], int]:
    parts = plan_list_parts(
        p.source, recursive=p.recursive, storage_options=p.source_options, max_parts=MAX_LIST_PARTS
    )
    futures = list_part_task.map(
        parts,
        recursive=unmapped(p.recursive),
        exts=unmapped(tuple(p.exts)),
        **_listing_arguments(p, staging, staging_options),
    )
    return [f.result() for f in futures], len(parts)


def _list_lst(
    p: BuildParameters, staging: str, staging_options: dict[str, Any] | None
) -> tuple[list[PartListing], int]:
    """The `.lst`'s parts (mapped), then its first bad line or repeated index, whichever
    comes first in the file, as the `ListFileError` reading it whole raises
    (`recordio_core.building.stream_lst_checks`)."""
    lst = str(p.lst)
    parts = plan_lst_parts(lst, p.source_options)
    futures = list_lst_part_task.map(
        parts,
        lst=unmapped(lst),
        label_width=unmapped(p.label_width),
        allow_outside_root=unmapped(p.allow_outside_root),
        **_listing_arguments(p, staging, staging_options),
    )
    listings = [f.result() for f in futures]
    ranges = index_ranges(listings, index_check_tasks_for(sum(x.entries for x in listings)))
    checks = check_indexes_task.map(
        ranges, number=list(range(len(ranges))), storage_options=unmapped(staging_options)
    )
    error = first_error(lst, listings, [r for f in checks if (r := f.result()) is not None])
    if error is not None:
        raise error
    return listings, len(parts) + len(ranges)


def drop_copies(
    p: BuildParameters,
    merged: MergedListing,
    listings: list[PartListing],
    staging: str,
    staging_options: dict[str, Any] | None,
    logger: Any,
) -> list[Copies]:
    """With `dedupe="drop"`: the copies to leave out, found bucket range by bucket range
    of size (mapped; as many ranges as duplicate runs); nothing otherwise."""
    if p.dedupe != "drop":
        return []
    ranges = size_ranges(listings, merged, quality_tasks_for(merged.entries))
    futures = find_copies_task.map(
        ranges,
        number=list(range(len(ranges))),
        source=unmapped(p.source),
        split_names=unmapped([s.name for s in merged.splits]),
        staging=unmapped(staging),
        source_options=unmapped(p.source_options),
        staging_options=unmapped(staging_options),
    )
    copies = [f.result() for f in futures]
    logger.info(
        "dedupe: hashed %d of %d files (the others have a size no other file has); "
        "%d groups of byte-identical files, %d copies dropped",
        sum(c.hashed for c in copies),
        merged.entries,
        sum(len(c.groups) for c in copies),
        sum(len(c.dropped) for c in copies),
    )
    return copies
