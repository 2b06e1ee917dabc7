"""Packing a streaming build's group of shards: one after the other, each reused when a
result kept for it still holds for its files, else packed, validated, packed again once if
that fails, and kept (`stream_results`); then the group's quality pieces.

No Prefect here: `tasks/stream.py` runs `pack_works` in a child process from the forkserver
(two groups packing at once then never share a GIL), or in a Dask worker itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from recordio_core.building.pack import PackOptions, ShardResult, pack_shard
from recordio_core.building.plan import ShardPlan
from recordio_core.building.quality import NO_DHASH, NO_DIGEST, Seen
from recordio_core.building.stream_quality import QualityPieces, write_quality_pieces
from recordio_core.building.stream_results import save_result, slim
from recordio_core.building.validate import ValidationFailed, validate_shard
from recordio_core.format.lst import LstEntry
from recordio_core.storage.fsio import StorageOptions


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
    candidate: ShardResult | None = None


@dataclass(frozen=True)
class GroupPacker:
    """Everything a group's shards are packed and validated with. `processes`: pack with
    worker processes (`pack_shard`'s), else threads of this process."""

    source: str
    options: PackOptions
    label_width: int = 1
    pack_label: bool = False
    decode: bool = False
    source_options: StorageOptions = None
    storage_options: StorageOptions = None
    processes: bool = False

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


def pack_works(
    packer: GroupPacker,
    works: Sequence[ShardWork],
    *,
    staging: str,
    number: int,
    near_distance: int | None = None,
) -> tuple[list[ShardResult], list[bool], QualityPieces]:
    """Pack (or reuse) every shard of group `number`, in order, then write its quality
    pieces under `staging`; (results without per-image digests, reused, quality pieces)."""
    log = logging.getLogger("recflow")
    results, reused, seen = [], [], []
    for work in works:
        result, was_kept = packer.shard(work, log)
        results.append(slim(result))
        reused.append(was_kept)
        seen += seen_images(work.split, work.entries, result)
    quality = write_quality_pieces(staging, number, seen, near_distance, packer.storage_options)
    return results, reused, quality
