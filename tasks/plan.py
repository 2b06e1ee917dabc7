"""Task: plan the shards of every split and give each its content key and output prefix.

A shard's files are `OUTPUT/<split>/<split>-00000-of-00004.<key12>.{rec,idx,lst}` where
`key12` starts the shard's content key (`recordio_core.building.shardkey`): the same entries, image
files and byte-changing parameters always land on the same names with the same bytes, and
anything different lands on different names. That is what makes reruns skip finished shards,
resume after a crash, and keeps two concurrent runs from ever writing different bytes to one
file (see `tasks/commit.py` for how the manifest is switched over).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.plan import auto_records_per_shard, num_shards_for, plan_split
from recordio_core.building.shardkey import (
    KEY_CHARS,
    fingerprint_size,
    shard_key,
    source_fingerprints,
)
from recordio_core.building.split import SplitList
from recordio_core.format.lst import LstEntry
from recordio_core.storage.fsio import join_url
from recordio_flow.tasks.common import RETRY_OPTIONS, Carry, run_logger
from recordio_flow.tasks.split import split_key
from recordio_flow.tasks.storage import missing_urls


@dataclass(frozen=True)
class ShardJob:
    """One shard to pack: small and picklable. Its entries (its slice of the split) and the
    images' sizes ride in `Carry` leaves, so Prefect does not walk thousands of values in
    every task's inputs, and nothing is encoded or decoded on the way (JSON text of the
    entries cost ~0.4 s to make and as much to read back per 100,000 images)."""

    split: str
    name: str
    key: str
    prefix: str
    count: int
    carried_entries: Carry  # Sequence[LstEntry]
    present: bool = False  # all three output files existed when the shard was planned
    # the images' sizes from the listing (None: unknown), for the fetch's byte budget
    carried_sizes: Carry | None = None  # list[int | None]

    def sizes(self) -> list[int | None] | None:
        """The images' sizes in bytes (None for unknown), or None when not planned."""
        return None if self.carried_sizes is None else self.carried_sizes.value

    def entries(self) -> Sequence[LstEntry]:
        """The shard's entries: its slice of the split it was planned from."""
        return self.carried_entries.value

    @property
    def label(self) -> str:
        """`split/name`, how logs and the UI name the shard."""
        return f"{self.split}/{self.name}"

    @property
    def rec(self) -> str:
        return self.prefix + ".rec"

    @property
    def idx(self) -> str:
        return self.prefix + ".idx"

    @property
    def lst(self) -> str:
        return self.prefix + ".lst"


def effective_records_per_shard(
    sizes: Sequence[int], records_per_shard: int, max_shards: int
) -> int:
    """`records_per_shard`, raised until all splits together need at most `max_shards`."""
    if max_shards < len(sizes):
        raise ValueError(f"max_shards={max_shards} is less than the {len(sizes)} splits")
    rps = records_per_shard
    while sum(num_shards_for(n, records_per_shard=rps) for n in sizes) > max_shards:
        total = sum(sizes)
        rps = max(rps + 1, math.ceil(total / max(1, max_shards - len(sizes))))
    return rps


def make_jobs(
    splits: Sequence[SplitList],
    *,
    source: str,
    output: str,
    records_per_shard: int,
    key_params: Mapping[str, Any],
    fingerprints: Mapping[str, str],
    sizes: Sequence[Sequence[int | None]] | None = None,
) -> list[ShardJob]:
    """The shard jobs of every split. `sizes`: per split, its images' sizes in entry order
    (`split_sizes`; taken from `fingerprints` when not given)."""
    if sizes is None:
        sizes = split_sizes(splits, fingerprints)
    jobs: list[ShardJob] = []
    for split, known in zip(splits, sizes, strict=True):
        name = split_key(split)
        n = len(split.entries)
        for plan in plan_split(name, n, num_shards_for(n, records_per_shard=records_per_shard)):
            entries = split.entries[plan.start : plan.stop]
            key = shard_key(
                entries,
                root=source,
                fingerprints=fingerprints,
                params={**key_params, "shard": f"{name}/{plan.name}"},
            )
            jobs.append(
                ShardJob(
                    split=name,
                    name=plan.name,
                    key=key,
                    prefix=join_url(output, name, f"{plan.name}.{key[:KEY_CHARS]}"),
                    count=plan.count,
                    carried_entries=Carry(entries),
                    carried_sizes=Carry(list(known[plan.start : plan.stop])),
                )
            )
    return jobs


def split_sizes(
    splits: Sequence[SplitList], fingerprints: Mapping[str, str]
) -> list[list[int | None]]:
    """Per split, each entry's image size from its fingerprint (None when unknown)."""
    get = fingerprints.get
    return [[fingerprint_size(get(e.path, "")) for e in s.entries] for s in splits]


@task(name="plan-shards", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def plan_shards(
    splits: Carry,
    *,
    source: str,
    output: str,
    records_per_shard: int | None,
    key_params: Mapping[str, Any],
    max_shards: int,
    source_options: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    fingerprints: Carry | None = None,
) -> list[ShardJob]:
    """Shard jobs for the carried `list[SplitList]`. `fingerprints`: the carried
    `{path: fingerprint}` the listing took (`Listing.fingerprints`); the source is asked for
    any path it lacks (all of them without it, e.g. for a user's `.lst`).
    `records_per_shard` None: `auto_records_per_shard` of the images' sizes (2,000, more for
    small files). Either way it is raised to stay within `max_shards`."""
    logger = run_logger()
    splits = splits.value
    paths = [e.path for s in splits for e in s.entries]
    known = dict(fingerprints.value or {}) if fingerprints is not None else {}
    missing = [path for path in paths if path not in known]
    prints = {**known, **source_fingerprints(source, missing, source_options)}
    per_split = split_sizes(splits, prints)
    asked = records_per_shard
    if asked is None:
        sizes = [n for known in per_split for n in known if n is not None]
        asked = auto_records_per_shard(sum(sizes), len(sizes))
        if sizes:
            logger.info(
                "records_per_shard: %d (images of %.1f KB on average)",
                asked,
                sum(sizes) / len(sizes) / 1000,
            )
    rps = effective_records_per_shard([len(s.entries) for s in splits], asked, max_shards)
    if rps != asked:
        logger.info(
            "raised records_per_shard from %d to %d to stay within %d shards",
            asked,
            rps,
            max_shards,
        )
    jobs = make_jobs(
        splits,
        source=source,
        output=output,
        records_per_shard=rps,
        key_params=key_params,
        fingerprints=prints,
        sizes=per_split,
    )
    missing = set(missing_urls([u for j in jobs for u in (j.rec, j.idx, j.lst)], storage_options))
    jobs = [dataclasses.replace(j, present=not ({j.rec, j.idx, j.lst} & missing)) for j in jobs]
    logger.info(
        "planned %d shards of up to %d images (%d already on storage)",
        len(jobs),
        rps,
        sum(j.present for j in jobs),
    )
    return jobs
