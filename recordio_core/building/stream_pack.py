"""Packing a streaming build's group of shards, in two calls to the same process:

1. `prepare_group` reads the group's records back from the listing's pieces (`stream_read`),
   gives each shard its content key and file names (those of the in-memory build:
   `tasks/plan.py`) and looks for the result kept under its key (`stream_results`); it holds
   the shards' work in this process and returns the keys without a kept result, for the caller
   to look up elsewhere (a build without streaming caches its results in Prefect's store);
2. `pack_prepared` packs them one after the other, each reused when a result found for it
   still holds for its files, else packed, validated, packed again once if that fails, and
   kept; then it writes the group's quality pieces and counts its records per first label
   (`first_label_counts`, for the report: the listing counts no labels).

No Prefect here: `tasks/stream.py` makes both calls to one child process from the forkserver
(two groups packing at once then never share a GIL, and the flow process does no per-image
work), or in a Dask worker itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from recordio_core.building.pack import PackOptions, ShardResult, pack_shard
from recordio_core.building.plan import ShardPlan
from recordio_core.building.quality import NO_DHASH, NO_DIGEST, Seen
from recordio_core.building.shardkey import (
    KEY_CHARS,
    fingerprint_size,
    shard_key,
    source_fingerprints,
)
from recordio_core.building.stream_plan import GroupJob
from recordio_core.building.stream_quality import QualityPieces, write_quality_pieces
from recordio_core.building.stream_read import PlannedShard, read_group
from recordio_core.building.stream_results import load_result, result_url, save_result, slim
from recordio_core.building.validate import ValidationFailed, validate_shard
from recordio_core.format.lst import LstEntry
from recordio_core.storage.fsio import StorageOptions, join_url

MAX_LABEL_VALUES = 10_000  # distinct first labels a group counts for the report, at most


@dataclass(frozen=True)
class ShardWork:
    """One shard of a group: what it holds, where it goes, where its result is kept, and
    a result found for it (kept, or cached by a build without streaming) to try first."""

    split: str
    plan: ShardPlan
    entries: tuple[LstEntry, ...]
    sizes: tuple[int | None, ...]
    prefix: str
    kept_at: str
    key: str
    candidate: ShardResult | None = None


@dataclass(frozen=True)
class GroupPacker:
    """Everything a group's shards are keyed, packed and validated with. `processes`: pack
    with worker processes (`pack_shard`'s), else threads of this process. `output`: the
    dataset's folder; `key_params`: what every shard's content key holds besides its images
    (`flows/build_options.key_parameters`)."""

    source: str
    options: PackOptions
    label_width: int = 1
    pack_label: bool = False
    decode: bool = False
    source_options: StorageOptions = None
    storage_options: StorageOptions = None
    processes: bool = False
    output: str = field(kw_only=True)
    key_params: Mapping[str, Any] = field(kw_only=True, default_factory=dict)

    def valid(self, result: ShardResult) -> tuple[bool, list[str]]:
        try:
            report = validate_shard(
                result.rec,
                result.idx,
                result.lst,
                label_width=self.label_width,
                pack_label=self.pack_label,
                decode=self.decode,
                expected_sha256=result.sha256,
                storage_options=self.storage_options,
            )
        except FileNotFoundError as exc:
            return False, [str(exc)]
        return report.ok, list(report.problems)

    def pack(self, work: ShardWork) -> ShardResult:
        return pack_shard(
            work.entries,
            self.source,
            work.prefix,
            self.options,
            source_options=self.source_options,
            storage_options=self.storage_options,
            sizes=list(work.sizes),
            processes=self.processes,
            start_method="forkserver",
        )

    def shard(self, work: ShardWork, log: logging.Logger) -> tuple[ShardResult, bool]:
        """The shard's result (with its per-image digests) and whether it was reused. A
        candidate may name files elsewhere (an output copied, the same shard packed into
        another output): it holds for the files here if they validate against its sha256."""
        if work.candidate is not None:
            p = work.prefix
            here = replace(work.candidate, rec=p + ".rec", idx=p + ".idx", lst=p + ".lst")
            if self.valid(here)[0]:
                if here != work.candidate:
                    save_result(work.kept_at, here, self.storage_options)
                return here, True
        result = self.pack(work)
        ok, problems = self.valid(result)
        if not ok:
            log.warning("%s failed validation (%s); packing it again", result.rec, problems[:3])
            result = self.pack(work)
            ok, problems = self.valid(result)
            if not ok:
                raise ValidationFailed(
                    f"{result.rec} fails validation after packing it again: "
                    + "; ".join(problems[:5])
                )
        if result.records + len(result.rejects) != work.plan.count:
            raise RuntimeError(
                f"{work.split}/{work.plan.name}: {work.plan.count} images planned but "
                f"{result.records} packed and {len(result.rejects)} rejected; run the build again"
            )
        save_result(work.kept_at, result, self.storage_options)
        return result, False


def seen_images(split: str, entries: Sequence[LstEntry], result: ShardResult) -> list[Seen]:
    """The shard's images as the quality report sees them (no digests from a result that
    has none: its images are left out of the grouping, as `flows/build_report.quality_of`)."""
    digests = result.digests if len(result.digests) == 32 * len(entries) else b""
    dhashes = result.dhashes if len(result.dhashes) == len(entries) else ()
    return [
        Seen(
            e.path,
            tuple(e.labels),
            split,
            digests[32 * i : 32 * i + 32] if digests else NO_DIGEST,
            dhashes[i] if dhashes else NO_DHASH,
        )
        for i, e in enumerate(entries)
    ]


def first_label_counts(
    entries: Sequence[LstEntry], rejected: Iterable[int], counts: dict[float, int], limit: int
) -> bool:
    """Add the records of `entries` (less the `rejected` indexes) to `counts` by first label;
    False, and `counts` left part-filled, once it would hold more than `limit` labels (a
    regression `.lst`: a value per image is not a table worth counting)."""
    skip = set(rejected)
    for e in entries:
        if e.index not in skip:
            first = e.labels[0]
            if first not in counts and len(counts) >= limit:
                return False
            counts[first] = counts.get(first, 0) + 1
    return True


def pack_works(
    packer: GroupPacker,
    works: Sequence[ShardWork],
    *,
    staging: str,
    number: int,
    near_distance: int | None = None,
) -> tuple[list[ShardResult], list[bool], QualityPieces, dict[float, int] | None]:
    """Pack (or reuse) every shard of group `number`, in order, then write its quality
    pieces under `staging`; (results without per-image digests, reused, quality pieces,
    records per first label or None past `MAX_LABEL_VALUES` labels)."""
    log = logging.getLogger("recflow")
    results, reused, seen = [], [], []
    labels: dict[float, int] | None = {}
    for work in works:
        result, was_kept = packer.shard(work, log)
        results.append(slim(result))
        reused.append(was_kept)
        seen += seen_images(work.split, work.entries, result)
        if labels is not None and not first_label_counts(
            work.entries, (r.index for r in result.rejects), labels, MAX_LABEL_VALUES
        ):
            labels = None
    quality = write_quality_pieces(staging, number, seen, near_distance, packer.storage_options)
    return results, reused, quality, labels


def _with_fingerprints(shards: list[PlannedShard], source: str, options: StorageOptions) -> None:
    """Ask the source for the fingerprints the listing could not take ("")."""
    missing = [path for s in shards for path, fp in s.fingerprints.items() if not fp]
    if missing:
        found = source_fingerprints(source, missing, options)
        for s in shards:
            for path in s.fingerprints:
                if not s.fingerprints[path]:
                    s.fingerprints[path] = found[path]


def prepare_works(packer: GroupPacker, group: GroupJob) -> list[ShardWork]:
    """The group's shards, read from its pieces, each with its content key, file names,
    place for its kept result, and that result if one is kept."""
    shards = read_group(group, packer.storage_options)
    _with_fingerprints(shards, packer.source, packer.source_options)
    works = []
    for shard in shards:
        key = shard_key(
            shard.entries,
            root=packer.source,
            fingerprints=shard.fingerprints,
            params={**packer.key_params, "shard": f"{group.split}/{shard.plan.name}"},
        )
        kept_at = result_url(packer.output, key)
        works.append(
            ShardWork(
                split=group.split,
                plan=shard.plan,
                entries=shard.entries,
                sizes=tuple(fingerprint_size(shard.fingerprints[e.path]) for e in shard.entries),
                prefix=join_url(packer.output, group.split, f"{shard.plan.name}.{key[:KEY_CHARS]}"),
                kept_at=kept_at,
                key=key,
                candidate=load_result(kept_at, packer.storage_options),
            )
        )
    return works


# The works `prepare_group` made, by (staging, group number), until `pack_prepared` takes them.
_PREPARED: dict[tuple[str, int], list[ShardWork]] = {}
_PREPARED_LOCK = threading.Lock()


def prepare_group(packer: GroupPacker, group: GroupJob, staging: str) -> list[str]:
    """Make the group's works (`prepare_works`) and hold them in this process for
    `pack_prepared`; the content keys of the shards that have no kept result."""
    works = prepare_works(packer, group)
    with _PREPARED_LOCK:
        _PREPARED[(staging, group.number)] = works
    return [w.key for w in works if w.candidate is None]


def pack_prepared(
    packer: GroupPacker,
    group: GroupJob,
    *,
    staging: str,
    candidates: Mapping[str, ShardResult] | None = None,
    near_distance: int | None = None,
) -> tuple[list[ShardResult], list[bool], QualityPieces, dict[float, int] | None]:
    """`pack_works` over the works `prepare_group` held for the group (made again when this
    is another process), with `candidates` (by content key) tried for the shards that had no
    kept result."""
    with _PREPARED_LOCK:
        works = _PREPARED.pop((staging, group.number), None)
    if works is None:
        works = prepare_works(packer, group)
    found = candidates or {}
    works = [
        replace(w, candidate=found[w.key]) if w.candidate is None and w.key in found else w
        for w in works
    ]
    return pack_works(
        packer, works, staging=staging, number=group.number, near_distance=near_distance
    )
