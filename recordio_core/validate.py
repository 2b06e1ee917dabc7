"""Validate one packed shard: `.rec`, `.idx` and `.lst` must agree, record by record.

`validate_shard` walks the whole `.rec` from its first byte (so records missing from the
`.idx` are found too) and checks:

- framing: every record starts with the magic word, its parts chain correctly, nothing is cut
  short, no garbage between records (after garbage the walk resynchronises on the next record
  start and goes on);
- the `.idx`: well formed, every offset inside the file and at a record start, no duplicate
  keys or offsets, every record indexed, the record's header `id` equals the key;
- the `.lst` (when given): the same keys in the same order as the `.idx`, and each record's
  header labels equal the line's labels (float32; all labels with `pack_label`, else the first);
- counts: `.lst` <-> `.idx` <-> `.rec`;
- the `.rec`'s sha256, against `expected_sha256` when given;
- optionally (`decode`) that every image decodes.

Problems are collected, not raised (at most `MAX_LISTED_PROBLEMS` are listed, then a count),
so one report says everything that is wrong. Memory is bounded by the `.idx`/`.lst` sizes
and one record at a time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from recordio_core.errors import IndexFileError, ListFileError, RecordIOError
from recordio_core.framing import (
    FileSource,
    MmapSource,
    find_record_start,
    open_source,
    read_record_at,
)
from recordio_core.fsio import StorageOptions, get_fs
from recordio_core.idx import read_idx
from recordio_core.image import DEFAULT_MAX_PIXELS, ImageError, verify_image
from recordio_core.lst import LstEntry, read_lst
from recordio_core.recordio import unpack

MAX_LISTED_PROBLEMS = 100
_HASH_BLOCK = 4 << 20  # 4 MiB reads when hashing
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ValidationReport:
    """The outcome for one shard: `records` found by walking the `.rec`, its size and sha256,
    and every problem found (empty when all is well)."""

    rec: str
    records: int
    bytes: int
    sha256: str
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "rec": self.rec,
            "ok": self.ok,
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "problems": list(self.problems),
        }


class _Problems:
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


def _sha256(src: MmapSource | FileSource) -> str:
    sha = hashlib.sha256()
    pos = 0
    while pos < src.size:
        block = src.pread(pos, min(_HASH_BLOCK, src.size - pos))
        if not block:
            break
        sha.update(block)
        pos += len(block)
    return sha.hexdigest()


def _label_problem(header: Any, entry: LstEntry, pack_label: bool) -> str:
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


def validate_shard(
    rec: str,
    idx: str,
    lst: str | None = None,
    *,
    label_width: int | None = 1,
    pack_label: bool = False,
    decode: bool = False,
    expected_sha256: str | None = None,
    storage_options: StorageOptions = None,
    max_pixels: int | None = None,
) -> ValidationReport:
    """Check a shard's `.rec` against its `.idx` and (optional, `None` or "" to skip) `.lst`.

    `label_width`: label columns every `.lst` line must have (`None`: any). `pack_label`: the
    records hold all labels (im2rec's `--pack-label`). With `decode`, an image over
    `max_pixels` is a problem, not decoded, so a hostile record cannot make the validator
    allocate gigabytes (`None`: only Pillow's own limit). Never raises for a bad shard; raises
    `ValueError` only for bad arguments.
    """
    if label_width is not None and (
        isinstance(label_width, bool) or not isinstance(label_width, int) or label_width < 1
    ):
        raise ValueError(f"label_width must be an int >= 1 or None, got {label_width!r}")
    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.lower()
        if not _SHA256_RE.match(expected_sha256):
            raise ValueError(f"expected_sha256 must be 64 hex digits, got {expected_sha256[:80]!r}")
    problems = _Problems()
    try:
        src = open_source(rec, storage_options)
    except FileNotFoundError:
        return ValidationReport(rec, 0, 0, "", (f"{rec}: file not found",))
    except OSError as exc:
        return ValidationReport(rec, 0, 0, "", (f"{rec}: cannot open: {exc}",))
    try:
        return _validate(
            src,
            rec,
            idx,
            lst or None,
            label_width=label_width,
            pack_label=pack_label,
            decode=decode,
            expected_sha256=expected_sha256,
            storage_options=storage_options,
            problems=problems,
            max_pixels=max_pixels,
        )
    finally:
        src.close()


_MAX_IDX_LINE = 42  # "<20-digit key>\t<20-digit offset>\n"


def _read_index(
    idx: str, so: StorageOptions, rec_size: int, problems: _Problems
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


def _read_list(
    lst: str, so: StorageOptions, label_width: int | None, problems: _Problems
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


def _validate(
    src: MmapSource | FileSource,
    rec: str,
    idx: str,
    lst: str | None,
    *,
    label_width: int | None,
    pack_label: bool,
    decode: bool,
    expected_sha256: str | None,
    storage_options: StorageOptions,
    problems: _Problems,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ValidationReport:
    size = src.size
    sha = _sha256(src)
    if expected_sha256 is not None and sha != expected_sha256:
        problems.add(
            f"{rec}: sha256 {sha} is not the expected {expected_sha256} "
            "(the file changed after it was written)"
        )
    pairs = _read_index(idx, storage_options, size, problems)
    entries = _read_list(lst, storage_options, label_width, problems) if lst else None

    # The .idx on its own: duplicate keys or offsets.
    by_offset: dict[int, int] = {}
    if pairs is not None:
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

    # The .lst against the .idx: same keys, same order, same count.
    by_key: dict[int, LstEntry] = {}
    if entries is not None:
        for n, entry in enumerate(entries, start=1):
            if entry.index in by_key:
                problems.add(f"{lst}: duplicate index {entry.index} (entry {n})")
            by_key.setdefault(entry.index, entry)
        if pairs is not None:
            _compare_lists(entries, pairs, lst or "", idx, problems)

    # Walk the .rec from its first byte.
    records = 0
    pending = dict(by_offset)
    pos = 0
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
        _check_record(
            payload,
            pos,
            key,
            rec,
            idx,
            lst,
            by_key,
            pack_label,
            decode,
            pairs,
            problems,
            max_pixels,
        )
        pos = nxt

    # Index entries that did not land on a record start found by the walk.
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
    if pairs is not None and records != len(pairs):
        problems.add(f"{rec} holds {records} record(s) but {idx} lists {len(pairs)}")
    return ValidationReport(rec, records, size, sha, problems.result())


def _compare_lists(
    entries: list[LstEntry],
    pairs: list[tuple[int, int]],
    lst: str,
    idx: str,
    problems: _Problems,
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


def _check_record(
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
    problems: _Problems,
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
            why = _label_problem(header, entry, pack_label)
            if why:
                problems.add(f"{rec}: record {entry.index} at offset {pos} {why}")
    if decode:
        try:
            verify_image(image, max_pixels=max_pixels)
        except ImageError as exc:
            problems.add(f"{rec}: record {header.id} at offset {pos}: image does not decode: {exc}")


def validate_manifest(
    url: str, *, decode: bool = False, storage_options: StorageOptions = None
) -> list[ValidationReport]:
    """Validate every shard a dataset manifest lists (`url`: the `manifest.json` or its folder).

    Each shard is checked with `validate_shard` against the manifest's sha256 and the build's
    `label_width`/`pack_label`; the `.idx`/`.lst` sha256 and the record count the manifest
    states are checked too; `decode` honours the build's `max_pixels`. A manifest that
    cannot be read raises its `ManifestError`.
    """
    from recordio_core.fsio import join_url, read_bytes, url_dirname
    from recordio_core.manifest import MANIFEST_NAME, read_manifest

    manifest = read_manifest(url, storage_options)
    base = url.rstrip("/") or url
    if base.endswith(".json"):
        base = url_dirname(base)  # "" for a bare "manifest.json": paths stay relative
    params = manifest.parameters
    label_width = params.get("label_width", 1)
    pack_label = bool(params.get("pack_label", False))
    max_pixels = params.get("max_pixels", DEFAULT_MAX_PIXELS)
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        max_pixels = DEFAULT_MAX_PIXELS
    reports = []
    for _split, shard in manifest.shards():
        rec, idx = join_url(base, shard.rec), join_url(base, shard.idx)
        lst = join_url(base, shard.lst) if shard.lst else None
        report = validate_shard(
            rec,
            idx,
            lst,
            label_width=label_width if isinstance(label_width, int) else None,
            pack_label=pack_label,
            decode=decode,
            expected_sha256=shard.sha256 or None,
            storage_options=storage_options,
            max_pixels=max_pixels,
        )
        extra = list(report.problems)
        for url_, want in ((idx, shard.idx_sha256), (lst, shard.lst_sha256)):
            if not url_ or not want:
                continue
            try:
                got = hashlib.sha256(read_bytes(url_, storage_options)).hexdigest()
            except FileNotFoundError:
                continue  # already reported by validate_shard
            if got != want:
                extra.append(f"{url_}: sha256 {got} is not the {want} recorded in {MANIFEST_NAME}")
        if report.records != shard.records and report.sha256:
            extra.append(
                f"{rec} holds {report.records} record(s); {MANIFEST_NAME} says {shard.records}"
            )
        reports.append(
            ValidationReport(report.rec, report.records, report.bytes, report.sha256, tuple(extra))
        )
    return reports
