"""Data quality: byte-identical duplicates (and leakage across splits), near-duplicates, and the
`dedupe="drop"` plan. Pure functions over what packing already learnt; no Prefect here.

- **Duplicates**: every source file's bytes are hashed (sha256) while packing, where they are in
  memory anyway (`recordio_core.building.pack`). `duplicate_groups` puts byte-identical files
  together: one `DuplicateGroup` per content, with every path, its labels and its split. A group
  whose splits differ is *leakage* (the same picture in train and val/test); one whose labels differ
  is the same picture in two classes.
- **Near-duplicates**: the same picture re-encoded or resized has different bytes but nearly
  the same difference hash (`recordio_core.images.dhash`); `near_duplicate_groups` links hashes
  within a Hamming distance (multi-index hashing: no all-pairs comparison) and reports the groups
  that are not simply byte-identical copies.
- **dedupe="drop"**: a shard's content must be fixed before it is packed (its content key, and
  so its file names and cache entry, depend on exactly which entries it holds), so duplicates
  are found *before* planning, by a pre-pass (`hash_sources`) that reads only the files whose
  size equals another file's size (byte-identical files have equal sizes; sizes come free with
  the listing's fingerprints). `plan_dedupe` then keeps, per content, the first path in sorted
  order and drops the others from their splits (recorded as rejects "duplicate of PATH"). The
  split is computed before dropping, so no other entry moves: shards whose entries did not
  change keep their content keys and bytes, and the report still says which split each copy
  would have landed in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recordio_core.building.split import SplitList
from recordio_core.format.lst import LstEntry
from recordio_core.images.dhash import near_groups
from recordio_core.storage.fsio import StorageOptions, get_fs, is_local, join_url

NO_DIGEST = bytes(32)
NO_DHASH = -1
DEDUPE_MODES = ("none", "drop")
HASH_WORKERS = 8  # concurrent reads in the dedupe pre-pass (I/O-bound on object stores)


def _label_value(labels: Sequence[float]) -> float | list[float]:
    return float(labels[0]) if len(labels) == 1 else [float(v) for v in labels]


@dataclass(frozen=True)
class Seen:
    """One listed image as the quality report sees it."""

    path: str
    labels: tuple[float, ...]
    split: str
    sha256: bytes = NO_DIGEST
    dhash: int = NO_DHASH


class _Group:
    """What both kinds of group say: do their images span splits, do they disagree on labels."""

    splits: tuple[str, ...]
    labels: tuple[Any, ...]

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1

    @property
    def label_conflict(self) -> bool:
        return len({repr(v) for v in self.labels}) > 1


@dataclass(frozen=True)
class DuplicateGroup(_Group):
    """Byte-identical files: paths sorted, with each path's labels and split."""

    sha256: str
    paths: tuple[str, ...]
    labels: tuple[Any, ...]
    splits: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "paths": list(self.paths),
            "labels": list(self.labels),
            "splits": list(self.splits),
        }


@dataclass(frozen=True)
class NearDuplicateGroup(_Group):
    """Images whose difference hashes are linked within the distance: paths sorted."""

    paths: tuple[str, ...]
    labels: tuple[Any, ...]
    splits: tuple[str, ...]
    dhashes: tuple[str, ...]  # 16 hex digits each

    def to_dict(self) -> dict[str, Any]:
        return {
            "paths": list(self.paths),
            "labels": list(self.labels),
            "splits": list(self.splits),
            "dhashes": list(self.dhashes),
        }


def exact_groups(digests: Sequence[bytes]) -> list[list[int]]:
    """Indexes of equal digests (groups of >= 2, `NO_DIGEST` never grouped), each ascending,
    the list ordered by first index. Sorts 8-byte prefixes, so 1 M digests take ~0.3 s."""
    n = len(digests)
    if n < 2:
        return []
    prefix = np.frombuffer(b"".join(d[:8].ljust(8, b"\0") for d in digests), dtype=">u8")
    order = np.argsort(prefix, kind="stable")
    sp = prefix[order]
    same = np.flatnonzero(sp[1:] == sp[:-1])
    if not len(same):
        return []
    candidates = np.unique(np.concatenate([same, same + 1]))
    by_digest: dict[bytes, list[int]] = defaultdict(list)
    for pos in candidates.tolist():
        i = int(order[pos])
        if digests[i] != NO_DIGEST:
            by_digest[digests[i]].append(i)
    groups = [sorted(g) for g in by_digest.values() if len(g) > 1]
    return sorted(groups, key=lambda g: g[0])


def _order(seen: Sequence[Seen], members: Iterable[int]) -> list[int]:
    return sorted(members, key=lambda i: (seen[i].path, i))


def duplicate_groups(seen: Sequence[Seen]) -> list[DuplicateGroup]:
    """One group per content held by more than one listed image, ordered by first path."""
    out = []
    for members in exact_groups([s.sha256 for s in seen]):
        ordered = _order(seen, members)
        out.append(
            DuplicateGroup(
                sha256=seen[ordered[0]].sha256.hex(),
                paths=tuple(seen[i].path for i in ordered),
                labels=tuple(_label_value(seen[i].labels) for i in ordered),
                splits=tuple(seen[i].split for i in ordered),
            )
        )
    return sorted(out, key=lambda g: g.paths)


def near_duplicate_groups(seen: Sequence[Seen], distance: int) -> list[NearDuplicateGroup]:
    """Groups of images whose difference hashes are linked within `distance` bits, except
    groups of byte-identical copies only (those are `duplicate_groups`)."""
    hashed = [i for i, s in enumerate(seen) if s.dhash != NO_DHASH]
    hashes = np.array([seen[i].dhash for i in hashed], dtype=np.uint64)
    members = ([hashed[k] for k in group] for group in near_groups(hashes, distance))
    return near_duplicate_groups_of(seen, members)


def near_duplicate_groups_of(
    seen: Sequence[Seen], components: Iterable[Iterable[int]]
) -> list[NearDuplicateGroup]:
    """The groups of `components` (indexes into `seen`, each a linked set of images), except
    groups of byte-identical copies only (those are `duplicate_groups`), ordered by paths."""
    out = []
    for members in components:
        ordered = _order(seen, members)
        if len({seen[i].sha256 for i in ordered}) == 1 and seen[ordered[0]].sha256 != NO_DIGEST:
            continue
        out.append(
            NearDuplicateGroup(
                paths=tuple(seen[i].path for i in ordered),
                labels=tuple(_label_value(seen[i].labels) for i in ordered),
                splits=tuple(seen[i].split for i in ordered),
                dhashes=tuple(f"{seen[i].dhash:016x}" for i in ordered),
            )
        )
    return sorted(out, key=lambda g: g.paths)


@dataclass(frozen=True)
class QualityReport:
    """What the manifest's `warnings`, `duplicates` and `near_duplicates` say, and the counts
    the run summary shows."""

    warnings: tuple[tuple[str, str], ...] = ()  # (path, libjpeg's message)
    duplicates: tuple[DuplicateGroup, ...] = ()
    near_duplicates: tuple[NearDuplicateGroup, ...] = ()
    near_distance: int | None = None

    def summary(self) -> dict[str, Any]:
        dup, near = self.duplicates, self.near_duplicates
        return {
            "warnings": len(self.warnings),
            "duplicate_groups": len(dup),
            "duplicate_files": sum(len(g.paths) for g in dup),
            "duplicate_groups_cross_split": sum(g.cross_split for g in dup),
            "duplicate_groups_label_conflict": sum(g.label_conflict for g in dup),
            "near_duplicate_groups": len(near),
            "near_duplicate_groups_cross_split": sum(g.cross_split for g in near),
            "near_duplicate_groups_label_conflict": sum(g.label_conflict for g in near),
        }


def quality_report(
    seen: Sequence[Seen],
    warnings: Iterable[tuple[str, str]],
    near_distance: int | None,
    *,
    duplicates: Sequence[DuplicateGroup] | None = None,
) -> QualityReport:
    """The report for every listed image. `duplicates`: groups found before packing (the
    dedupe pre-pass), used instead of grouping `seen`'s digests (dropped copies were never
    packed, so their digests are not in `seen`)."""
    dups = duplicate_groups(seen) if duplicates is None else list(duplicates)
    near = near_duplicate_groups(seen, near_distance) if near_distance is not None else []
    return QualityReport(
        warnings=tuple(sorted(warnings)),
        duplicates=tuple(dups),
        near_duplicates=tuple(near),
        near_distance=near_distance,
    )


# --------------------------------------------------------------------------- dedupe="drop"


def sizes_from_fingerprints(fingerprints: Mapping[str, str]) -> dict[str, int]:
    """`{path: size}` from `recordio_core.building.shardkey` fingerprints ("size:etag-or-mtime");
    paths whose size is unknown are left out."""
    out = {}
    for path, fp in fingerprints.items():
        head = fp.partition(":")[0]
        if head.isdigit():
            out[path] = int(head)
    return out


def same_size_paths(sizes: Mapping[str, int], paths: Iterable[str]) -> list[str]:
    """The paths (sorted, each once) that might have a byte-identical twin: those whose size
    is unknown or shared with another listed path."""
    listed = list(paths)
    count: dict[int, int] = defaultdict(int)
    for p in listed:  # a path listed twice (a .lst can) is its own twin
        if p in sizes:
            count[sizes[p]] += 1
    return sorted({p for p in listed if p not in sizes or count[sizes[p]] > 1})


def hash_sources(
    root: str,
    paths: Sequence[str],
    storage_options: StorageOptions = None,
    *,
    workers: int = HASH_WORKERS,
    read: Callable[[str], bytes] | None = None,
) -> dict[str, bytes]:
    """`{path: sha256 digest}` of the files `paths` under `root`, read concurrently. A file
    that is gone or unreadable gets no digest (packing rejects it); other errors raise."""
    fs, root_path = get_fs(root, storage_options)
    local = is_local(fs)

    def default_read(rel: str) -> bytes:
        if local:
            with open(join_url(root_path, rel), "rb") as f:
                return f.read()
        return fs.cat_file(join_url(root_path, rel))

    reader = read or default_read

    def one(rel: str) -> tuple[str, bytes | None]:
        try:
            return rel, hashlib.sha256(reader(rel)).digest()
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
            return rel, None

    if not paths:
        return {}
    with ThreadPoolExecutor(max(1, min(workers, len(paths)))) as pool:
        return {rel: d for rel, d in pool.map(one, paths) if d is not None}


@dataclass(frozen=True)
class DedupePlan:
    """The splits without the dropped copies, what was dropped, and the groups found."""

    splits: tuple[SplitList, ...]
    dropped: tuple[tuple[LstEntry, str], ...] = ()  # (entry, the path kept instead)
    groups: tuple[DuplicateGroup, ...] = field(default_factory=tuple)


def plan_dedupe(splits: Sequence[SplitList], digests: Mapping[str, bytes]) -> DedupePlan:
    """Keep one entry per content, the first in (path, index) order; drop the others from
    their splits (every other entry stays where it was, in its order)."""
    seen = [
        Seen(e.path, tuple(e.labels), _split_name(s), digests.get(e.path, NO_DIGEST))
        for s in splits
        for e in s.entries
    ]
    entries = [e for s in splits for e in s.entries]
    drop: dict[int, str] = {}  # id of a dropped LstEntry object -> path kept
    for members in exact_groups([s.sha256 for s in seen]):
        ordered = sorted(members, key=lambda i: (entries[i].path, entries[i].index))
        kept = entries[ordered[0]].path
        for i in ordered[1:]:
            drop[id(entries[i])] = kept
    if not drop:
        return DedupePlan(tuple(splits), (), tuple(duplicate_groups(seen)))
    new_splits = []
    dropped = []
    for s in splits:
        keep = []
        for e in s.entries:
            if id(e) in drop:
                dropped.append((e, drop[id(e)]))
            else:
                keep.append(e)
        new_splits.append(SplitList(s.name, s.split, s.chunk, tuple(keep)))
    dropped.sort(key=lambda d: (d[0].path, d[0].index))
    return DedupePlan(tuple(new_splits), tuple(dropped), tuple(duplicate_groups(seen)))


def _split_name(split: SplitList) -> str:
    return split.split if split.chunk is None else f"{split.chunk}_{split.split}"
