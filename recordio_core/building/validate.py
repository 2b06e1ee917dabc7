"""Validate one packed shard: `.rec`, `.idx` and `.lst` must agree, record by record.

`validate_shard` follows the whole `.rec` from its first byte (so records missing from the
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
and one record at a time. The checks themselves are in `recordio_core.building.validate_records`;
the common case (a mapped `.rec` of whole records that all agree) is proved in bulk first
(`validate_bulk.records_agree`), and only a shard it does not prove is walked record by record.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from recordio_core.building.validate_bulk import records_agree
from recordio_core.building.validate_records import (
    MAX_LISTED_PROBLEMS,
    Problems,
    index_by_offset,
    list_by_key,
    read_index,
    read_list,
    sha256_of,
    unindexed_problems,
    walk_records,
)
from recordio_core.format.framing import FileSource, MmapSource, open_source
from recordio_core.images.image import DEFAULT_MAX_PIXELS
from recordio_core.storage.fsio import StorageOptions

__all__ = ["MAX_LISTED_PROBLEMS", "ValidationReport", "validate_manifest", "validate_shard"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ValidationFailed(RuntimeError):
    """A shard still fails validation after being packed again."""


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
    problems = Problems()
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
    problems: Problems,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ValidationReport:
    size = src.size
    sha = sha256_of(src)
    if expected_sha256 is not None and sha != expected_sha256:
        problems.add(
            f"{rec}: sha256 {sha} is not the expected {expected_sha256} "
            "(the file changed after it was written)"
        )
    pairs = read_index(idx, storage_options, size, problems)
    entries = read_list(lst, storage_options, label_width, problems) if lst else None
    if (
        not decode
        and not problems.count
        and pairs is not None
        and isinstance(src, MmapSource)
        and records_agree(src, pairs, entries, pack_label=pack_label)
    ):  # also proves what the lookups below would report: no duplicate, the same keys
        return ValidationReport(rec, len(pairs), size, sha, ())
    by_offset = index_by_offset(pairs, idx, problems) if pairs is not None else {}
    by_key = list_by_key(entries, pairs, lst or "", idx, problems) if entries is not None else {}
    pending = dict(by_offset)
    records = walk_records(
        src, rec, idx, lst, pending, by_key, pairs, problems,
        pack_label=pack_label, decode=decode, max_pixels=max_pixels,
    )  # fmt: skip
    unindexed_problems(pending, rec, idx, size, problems)
    if pairs is not None and records != len(pairs):
        problems.add(f"{rec} holds {records} record(s) but {idx} lists {len(pairs)}")
    return ValidationReport(rec, records, size, sha, problems.result())


def validate_manifest(
    url: str, *, decode: bool = False, storage_options: StorageOptions = None
) -> list[ValidationReport]:
    """Validate every shard a dataset manifest lists (`url`: the `manifest.json` or its folder).

    Each shard is checked with `validate_shard` against the manifest's sha256 and the build's
    `label_width`/`pack_label`; the `.idx`/`.lst` sha256 and the record count the manifest
    states are checked too; `decode` honours the build's `max_pixels`. A manifest that
    cannot be read raises its `ManifestError`.
    """
    from recordio_core.format.manifest import MANIFEST_NAME, read_manifest
    from recordio_core.storage.fsio import join_url, read_bytes, url_dirname

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
