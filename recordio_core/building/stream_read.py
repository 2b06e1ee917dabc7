"""Reading a group's records back from the pieces a streaming listing wrote
(`recordio_core.building.stream_list`): the byte ranges of its buckets from every piece,
merged into hash order (ties in listing order: part, then position), each part's offsets
added, then cut into the group's shards. The result is, shard by shard, the entries and
fingerprints the in-memory build would have planned."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

from recordio_core.building.plan import ShardPlan
from recordio_core.building.stream_plan import GroupJob, PieceRange
from recordio_core.format.lst import LstEntry
from recordio_core.storage.fsio import StorageOptions, get_fs


@dataclass(frozen=True)
class PlannedShard:
    """One shard of a group: its plan, its entries, and their fingerprints by path ("" when
    the listing could not take one)."""

    plan: ShardPlan
    entries: tuple[LstEntry, ...]
    fingerprints: dict[str, str]


def read_ranges(
    pieces: Sequence[PieceRange], storage_options: StorageOptions, what: str = "piece"
) -> list[bytes]:
    """The bytes of each range (one concurrent `cat_ranges` where the filesystem has it).

    Raises ValueError naming the file when a range comes back shorter than asked: the
    listing's `what` (piece, index piece, size piece, ...) changed or was cut short."""
    if not pieces:
        return []
    fs, _ = get_fs(pieces[0].url, storage_options)
    paths = [get_fs(p.url, storage_options)[1] for p in pieces]
    datas = list(
        fs.cat_ranges(paths, [p.start for p in pieces], [p.stop for p in pieces], on_error="raise")
    )
    for piece, data in zip(pieces, datas, strict=True):
        if len(data) != piece.stop - piece.start:
            raise ValueError(
                f"{piece.url}: expected {piece.stop - piece.start} bytes at {piece.start}, "
                f"got {len(data)} (the listing's {what} changed or was cut short)"
            )
    return datas


def _parse(data: bytes, piece: PieceRange) -> list[tuple[str, LstEntry, str]]:
    out = []
    index_offset, label_offset = piece.index_offset, piece.label_offset
    for line in data.decode("utf-8").split("\n"):
        if not line:
            continue
        key, index, labels, path, fp = line.split("\t")
        values = [float(x) for x in labels.split(",")]
        if label_offset:
            values[0] += label_offset
        out.append((key, LstEntry(int(index) + index_offset, tuple(values), path), fp))
    return out


def read_group(group: GroupJob, storage_options: StorageOptions = None) -> list[PlannedShard]:
    """The group's shards with their entries, read from its pieces."""
    rows: list[tuple[str, LstEntry, str]] = []
    datas = read_ranges(group.pieces, storage_options)
    for piece, data in zip(group.pieces, datas, strict=True):
        rows += _parse(data, piece)
    rows.sort(key=itemgetter(0))  # stable: parts in order, each already sorted
    if group.drops:  # `dedupe="drop"`: the copies, by index (unique in a listing)
        dropped = {
            int(line.partition("\t")[2])
            for data in read_ranges(group.drops, storage_options, "drop piece")
            for line in data.decode("utf-8").split("\n")
            if line
        }
        rows = [row for row in rows if row[1].index not in dropped]
    out = []
    for plan in group.shards:
        lo, hi = plan.start - group.first, plan.stop - group.first
        if lo < 0 or hi > len(rows):
            raise ValueError(
                f"{group.label}: shard {plan.name} needs records {plan.start}..{plan.stop} "
                f"but the pieces hold {group.first}..{group.first + len(rows)}"
            )
        part = rows[lo:hi]
        out.append(
            PlannedShard(
                plan,
                tuple(entry for _, entry, _ in part),
                {entry.path: fp for _, entry, fp in part},
            )
        )
    return out
