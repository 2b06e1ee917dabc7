"""The checks `validate_shard` makes, one concern each: reading the `.idx` and `.lst` of a
shard defensively, comparing them, walking the `.rec` from its first byte and checking each
record against them. Every check adds what it finds to a `Problems` collector instead of
raising, so one report says everything that is wrong.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from recordio_core.format.errors import IndexFileError, ListFileError, RecordIOError
from recordio_core.format.framing import FileSource, MmapSource, find_record_start, read_record_at
from recordio_core.format.idx import read_idx
from recordio_core.format.lst import LstEntry, read_lst
from recordio_core.format.recordio import unpack
from recordio_core.images.image import DEFAULT_MAX_PIXELS, ImageError, verify_image
from recordio_core.storage.fsio import StorageOptions, get_fs

MAX_LISTED_PROBLEMS = 100
_HASH_BLOCK = 4 << 20  # 4 MiB reads when hashing


class Problems:
    """Problems found so far: the first MAX_LISTED_PROBLEMS listed, the rest counted."""

    def __init__(self) -> None:
        self.listed: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append(text)

    def result(self) -> tuple[str, ...]:
        extra = self.count - len(self.listed)
        if extra > 0:
            return (*self.listed, f"... and {extra} more problem(s) not listed")
        return tuple(self.listed)


def sha256_of(src: MmapSource | FileSource) -> str:
    sha = hashlib.sha256()
    pos = 0
    while pos < src.size:
        block = src.pread(pos, min(_HASH_BLOCK, src.size - pos))
        if not block:
            break
        sha.update(block)
        pos += len(block)
    return sha.hexdigest()


def label_problem(header: Any, entry: LstEntry, pack_label: bool) -> str:
    """Empty if the header's labels are the ones im2rec writes for `entry`, else why not."""
    if pack_label and len(entry.labels) > 1:
        want = np.asarray(entry.labels, dtype=np.float32)
        if header.flag != len(want):
            return f"has {header.flag} label(s) in its header, the .lst line has {len(want)}"
        got = np.asarray(header.label, dtype=np.float32)
        if not np.array_equal(got, want):
            return f"labels {got.tolist()} differ from the .lst's {want.tolist()}"
        return ""
    if header.flag != 0:
        return (
            f"has {header.flag} labels in its header, expected one label "
            "(pack the .lst's labels with pack_label to store several)"
        )
    want1 = np.float32(entry.labels[0])
    if np.float32(header.label) != want1:
        return f"label {float(np.float32(header.label))} differs from the .lst's {float(want1)}"
    return ""


_MAX_IDX_LINE = 42  # "<20-digit key>\t<20-digit offset>\n"


def read_index(
    idx: str, so: StorageOptions, rec_size: int, problems: Problems
) -> list[tuple[int, int]] | None:
    try:
        fs, path = get_fs(idx, so)
        size = fs.size(path)
        # Every record takes at least 8 bytes of the .rec: a bigger index cannot be right,
        # and is not read into memory (hostile or corrupt input).
        limit = (rec_size // 8 + 1) * _MAX_IDX_LINE
        if size is not None and size > limit:
            problems.add(
                f"{idx}: {size} bytes is more than an index of a {rec_size}-byte .rec can "
                f"hold ({limit} bytes at most); not read"
            )
            return None
        return read_idx(idx, so)
    except FileNotFoundError:
        problems.add(f"{idx}: file not found")
    except (IndexFileError, UnicodeDecodeError) as exc:
        problems.add(f"{idx}: unreadable index: {exc}")
    except OSError as exc:
        problems.add(f"{idx}: cannot read: {exc}")
    return None


def read_list(
    lst: str, so: StorageOptions, label_width: int | None, problems: Problems
) -> list[LstEntry] | None:
    try:
        return read_lst(lst, so, label_width=label_width, allow_duplicates=True)
    except FileNotFoundError:
        problems.add(f"{lst}: file not found")
    except ListFileError as exc:
        problems.add(f"{lst}: unreadable list: {exc}")
    except OSError as exc:
        problems.add(f"{lst}: cannot read: {exc}")
    return None


def index_by_offset(pairs: list[tuple[int, int]], idx: str, problems: Problems) -> dict[int, int]:
    """offset -> key of a `.idx`, with its duplicate keys and offsets reported."""
    by_offset: dict[int, int] = {}
    seen_keys: dict[int, int] = {}
    for lineno, (key, offset) in enumerate(pairs, start=1):
        first = seen_keys.setdefault(key, lineno)
        if first != lineno:
            problems.add(f"{idx}:{lineno}: duplicate key {key} (first on line {first})")
        if offset in by_offset:
            problems.add(
                f"{idx}:{lineno}: offset {offset} of key {key} is also the offset of key "
                f"{by_offset[offset]}"
            )
        else:
            by_offset[offset] = key
    return by_offset


def list_by_key(
    entries: list[LstEntry],
    pairs: list[tuple[int, int]] | None,
    lst: str,
    idx: str,
    problems: Problems,
) -> dict[int, LstEntry]:
    """key -> entry of a `.lst`, with its duplicate indices and (given the `.idx`'s pairs) its
    differences from the `.idx` reported."""
    by_key: dict[int, LstEntry] = {}
    for n, entry in enumerate(entries, start=1):
        if entry.index in by_key:
            problems.add(f"{lst}: duplicate index {entry.index} (entry {n})")
        by_key.setdefault(entry.index, entry)
    if pairs is not None:
        compare_lists(entries, pairs, lst, idx, problems)
    return by_key


def compare_lists(
    entries: list[LstEntry],
    pairs: list[tuple[int, int]],
    lst: str,
    idx: str,
    problems: Problems,
) -> None:
    lst_keys = [e.index for e in entries]
    idx_keys = [k for k, _ in pairs]
    if len(lst_keys) != len(idx_keys):
        problems.add(f"{lst} lists {len(lst_keys)} entries but {idx} lists {len(idx_keys)}")
    in_lst, in_idx = set(lst_keys), set(idx_keys)
    for key in sorted(in_idx - in_lst)[:10]:
        problems.add(f"{idx}: key {key} is not in {lst}")
    for key in sorted(in_lst - in_idx)[:10]:
        problems.add(f"{lst}: index {key} is not in {idx}")
    if in_lst == in_idx and lst_keys != idx_keys and len(lst_keys) == len(idx_keys):
        at = next(i for i, (a, b) in enumerate(zip(lst_keys, idx_keys, strict=True)) if a != b)
        problems.add(
            f"{lst} and {idx} list the same keys in a different order (first difference at "
            f"entry {at + 1}: {lst_keys[at]} vs {idx_keys[at]})"
        )


def walk_records(
    src: MmapSource | FileSource,
    rec: str,
    idx: str,
    lst: str | None,
    pending: dict[int, int],
    by_key: dict[int, LstEntry],
    pairs: list[tuple[int, int]] | None,
    problems: Problems,
    *,
    pack_label: bool,
    decode: bool,
    max_pixels: int | None,
) -> int:
    """Walk the `.rec` from its first byte, checking each record; the records found. Offsets
    of `pending` (offset -> key) that a record starts at are taken out of it; after damage the
    walk resumes at the next record start."""
    records = 0
    pos = 0
    size = src.size
    while pos < size:
        try:
            payload, nxt = read_record_at(src, pos)
        except RecordIOError as exc:
            resync = find_record_start(src, pos + 4)
            tail = (
                f"; the walk resumes at the next record start, offset {resync}"
                if resync < size
                else "; no record starts after it"
            )
            problems.add(f"{exc}{tail}")
            pos = resync
            continue
        records += 1
        key = pending.pop(pos, None)
        check_record(
            payload, pos, key, rec, idx, lst, by_key, pack_label, decode, pairs, problems,
            max_pixels,
        )  # fmt: skip
        pos = nxt
    return records


def unindexed_problems(
    pending: dict[int, int], rec: str, idx: str, size: int, problems: Problems
) -> None:
    """Report the `.idx` entries that did not land on a record start found by the walk."""
    for offset, key in sorted(pending.items()):
        if offset >= size:
            problems.add(
                f"{idx}: key {key} points at offset {offset}, past the end of {rec} ({size} bytes)"
            )
        else:
            problems.add(
                f"{idx}: key {key} points at offset {offset}, which is not the start of a "
                f"record in {rec}"
            )


def check_record(
    payload: bytes,
    pos: int,
    key: int | None,
    rec: str,
    idx: str,
    lst: str | None,
    by_key: dict[int, LstEntry],
    pack_label: bool,
    decode: bool,
    pairs: list[tuple[int, int]] | None,
    problems: Problems,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> None:
    try:
        header, image = unpack(payload)
    except RecordIOError as exc:
        problems.add(f"{rec}: record at offset {pos}: {exc}")
        return
    if key is None:
        if pairs is not None:
            problems.add(f"{rec}: record at offset {pos} (id {header.id}) is not in {idx}")
    elif header.id != key:
        problems.add(
            f"{rec}: record at offset {pos} has id {header.id} but {idx} gives it key {key}"
        )
    if lst is not None and by_key:
        entry = by_key.get(header.id if key is None else key)
        if entry is not None:
            why = label_problem(header, entry, pack_label)
            if why:
                problems.add(f"{rec}: record {entry.index} at offset {pos} {why}")
    if decode:
        try:
            verify_image(image, max_pixels=max_pixels)
        except ImageError as exc:
            problems.add(f"{rec}: record {header.id} at offset {pos}: image does not decode: {exc}")
