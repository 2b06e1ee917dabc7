"""Records in batches: `_Batch` holds consecutive entries' outcomes (framed records, reject
reasons, facts) in the form the writer takes them, one write per file per batch.

`_batch` builds one where the records are made (worker processes included), `_sent` and
`_received` carry it between processes without its entries, and `_grouped` closes batches at
`_CHUNK_BYTES` of records or `_CHUNK_MAX` entries; `chunk_size` sizes the worker processes'
tasks to about as many bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from recordio_core.building.pack_record import _Facts
from recordio_core.format.lst import LstEntry, format_lst_line

_CHUNK = 8  # images per task at first: amortises the inter-process round trip
_CHUNK_MAX = 512  # images per task at most
_CHUNK_BYTES = 2 << 20  # 2 MiB of records per task, about


@dataclass
class _Batch:
    """Consecutive entries' outcomes in the form the writer takes them: one write per file
    per batch instead of one per record (thousands of small files cost the parent process
    a few microseconds each otherwise). Built where the records are made (worker processes
    included), so only a few large objects cross between processes."""

    entries: Sequence[LstEntry]
    records: bytes  # the framed records of the packed entries, concatenated
    lengths: list[int]  # framed length per entry; 0: not packed (see `reasons`)
    reasons: list[str]  # reject reason per entry, "" when packed
    digests: bytes  # 32 bytes per entry (`_Facts`)
    warnings: list[str]  # decoder warning per entry, ""
    dhashes: list[int]  # per entry (`_Facts`)
    lst: bytes  # the `.lst` lines of the packed entries (empty without `write_lst`)


_Outcome = tuple[bytes | None, str, _Facts]  # (framed record or None, reason, facts)


def _batch(entries: Sequence[LstEntry], outcomes: Sequence[_Outcome], write_lst: bool) -> _Batch:
    records, lengths, reasons, warnings, dhashes, lst = [], [], [], [], [], []
    digests = bytearray()
    for entry, (framed, reason, (digest, warning, dhash)) in zip(entries, outcomes, strict=True):
        digests += digest
        warnings.append(warning)
        dhashes.append(dhash)
        if framed is None:
            lengths.append(0)
            reasons.append(reason)
        else:
            records.append(framed)
            lengths.append(len(framed))
            reasons.append("")
            if write_lst:
                lst.append(format_lst_line(entry))
    return _Batch(
        entries,
        b"".join(records),
        lengths,
        reasons,
        bytes(digests),
        warnings,
        dhashes,
        "".join(lst).encode("utf-8"),
    )


def _sent(batch: _Batch) -> tuple[Any, ...]:
    """A worker's batch without its entries (the parent has them): what crosses processes."""
    return (
        batch.records,
        batch.lengths,
        batch.reasons,
        batch.digests,
        batch.warnings,
        batch.dhashes,
        batch.lst,
    )


def _received(entries: Sequence[LstEntry], sent: tuple[Any, ...]) -> _Batch:
    return _Batch(entries, *sent)


def _grouped(
    items: Iterable[tuple[LstEntry, bytes | None, str, _Facts]], write_lst: bool
) -> Iterator[_Batch]:
    """Batches of consecutive items, closed at `_CHUNK_BYTES` of records or `_CHUNK_MAX`
    entries (whichever comes first), so memory stays bounded and progress keeps moving."""
    entries: list[LstEntry] = []
    outcomes: list[_Outcome] = []
    size = 0
    for entry, framed, reason, facts in items:
        entries.append(entry)
        outcomes.append((framed, reason, facts))
        size += len(framed) if framed is not None else 0
        if size >= _CHUNK_BYTES or len(entries) >= _CHUNK_MAX:
            yield _batch(entries, outcomes, write_lst)
            entries, outcomes, size = [], [], 0
    if entries:
        yield _batch(entries, outcomes, write_lst)


def chunk_size(done_bytes: int, done_images: int) -> int:
    """Images per worker task, from the framed bytes per image seen so far: about
    `_CHUNK_BYTES` of records per task, between `_CHUNK` and `_CHUNK_MAX` images.

    A task costs a round trip between processes (~0.1 ms of pickling and waking up): small
    files (a few KB, pass-through) need hundreds per task to hide it, large photos a few.
    """
    if done_images <= 0:
        return _CHUNK
    per_image = max(1, done_bytes // done_images)
    return max(_CHUNK, min(_CHUNK_MAX, _CHUNK_BYTES // per_image))
