"""The build flow's steps before packing: list the source (or read the .lst), split, drop
copies if asked, and plan the shards (`Planned`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from recordio_core.building.listing import Listing
from recordio_core.building.quality import DedupePlan
from recordio_core.format.lst import LstEntry
from recordio_flow.flows.build_options import (
    key_parameters,
    pack_options,
)
from recordio_flow.flows.param_types import MAX_SHARDS
from recordio_flow.flows.params import BuildParameters
from recordio_flow.tasks.common import Carry
from recordio_flow.tasks.listing import list_source
from recordio_flow.tasks.plan import ShardJob, plan_shards
from recordio_flow.tasks.quality import dedupe_splits
from recordio_flow.tasks.split import split_entries


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


def no_images_error(p: BuildParameters) -> ValueError:
    """The error of a source that holds no image."""
    return ValueError(
        f"no images found under {p.source} with extensions {', '.join(p.exts)}"
        + ("" if p.recursive else " (recursive=False looks only at the folder itself)")
    )


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
        raise no_images_error(p)
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
