"""Where a dataset's shards are: one `.rec`, a list, a glob, a prefix or a `manifest.json`.

`resolve_shards(source)` turns what a user typed into `Shard`s (a `.rec` URL and, when present,
its `.idx` and `.lst` siblings), in a stable order. `shard_offsets` gives a shard's record
offsets from its `.idx` (sorted, as MXNet's and DALI's readers use them) or by scanning the
`.rec` when there is no index. Manifests are read by `recordio_core.format.manifest`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from recordio_core.format.errors import RecordIOError
from recordio_core.format.framing import iter_records, open_source
from recordio_core.format.idx import read_idx
from recordio_core.format.manifest import MANIFEST_NAME, read_manifest
from recordio_core.storage.fsio import StorageOptions, exists, get_fs, is_local, join_url

_GLOB_CHARS = "*?["
_IR_HEADER_SIZE = 24


@dataclass(frozen=True)
class Shard:
    """One `.rec` file and its optional `.idx` / `.lst` (URLs as given or resolved); a
    manifest also gives its record count, size and sha256."""

    rec: str
    idx: str | None = None
    lst: str | None = None
    records: int | None = None
    bytes: int | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.rec:
            raise ValueError("a shard needs a .rec URL")


def _prefix(url: str) -> str:
    return url[: -len(".rec")] if url.endswith(".rec") else url


def _sibling(rec: str, ext: str, storage_options: StorageOptions) -> str | None:
    url = _prefix(rec) + ext
    return url if exists(url, storage_options) else None


def manifest_shards(
    url: str, split: str | None = None, storage_options: StorageOptions = None
) -> list[Shard]:
    """The shards of one split of a `manifest.json` (paths inside are relative to its folder).

    `split=None` is allowed when the manifest holds exactly one split.
    """
    manifest = read_manifest(url, storage_options)
    splits = manifest.splits
    if split is None:
        if len(splits) != 1:
            raise ValueError(f"{url} holds splits {sorted(splits)}: choose one with split=...")
        split = next(iter(splits))
    if split not in splits:
        raise ValueError(f"{url} has no split {split!r}; it has {sorted(splits)}")
    base = url.rstrip("/").rpartition("/")[0] or "."
    return [
        Shard(
            rec=join_url(base, entry.rec),
            idx=join_url(base, entry.idx),
            lst=join_url(base, entry.lst),
            records=entry.records,
            bytes=entry.bytes,
            sha256=entry.sha256,
        )
        for entry in splits[split].shards
    ]


def manifest_class_names(url: str, storage_options: StorageOptions = None) -> dict[int, str]:
    """Label -> class name (the folder) from a manifest's class map."""
    manifest = read_manifest(url, storage_options)
    return {label: name for name, label in manifest.class_map.items()}


def _glob(pattern: str, storage_options: StorageOptions) -> list[str]:
    fs, path = get_fs(pattern, storage_options)
    found = sorted(p for p in fs.glob(path) if p.endswith(".rec"))
    if is_local(fs):
        return found
    return [fs.unstrip_protocol(p) for p in found]


def _expand(source: str, split: str | None, storage_options: StorageOptions) -> list[Shard]:
    if source.endswith(".json"):
        return manifest_shards(source, split, storage_options)
    if any(c in source for c in _GLOB_CHARS):
        recs = _glob(source, storage_options)
        if not recs:
            raise ValueError(f"no .rec files match {source!r}")
        return [Shard(rec=r) for r in recs]
    if source.endswith(".rec"):
        return [Shard(rec=source)]
    if exists(source + ".rec", storage_options):
        return [Shard(rec=source + ".rec")]
    fs, path = get_fs(source, storage_options)
    if fs.isdir(path):
        manifest = join_url(source, MANIFEST_NAME)
        if exists(manifest, storage_options):
            return manifest_shards(manifest, split, storage_options)
        recs = _glob(join_url(source, "*.rec"), storage_options)
        if recs:
            return [Shard(rec=r) for r in recs]
        raise ValueError(f"{source} is a folder without {MANIFEST_NAME} or .rec files")
    raise ValueError(
        f"cannot read {source!r}: expected a .rec file, a prefix (PREFIX.rec), a glob, "
        f"a folder or a {MANIFEST_NAME}"
    )


def resolve_shards(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    path_imgidx: str | None = None,
    split: str | None = None,
    use_index: bool | None = None,
    storage_options: StorageOptions = None,
) -> list[Shard]:
    """Resolve `source` into shards, in order, with `.idx`/`.lst` siblings found next to each
    `.rec` (`PREFIX.rec` -> `PREFIX.idx`, `PREFIX.lst`).

    `path_imgidx` names the index of a single `.rec` explicitly. `use_index=False` ignores
    indexes; `True` requires one for every shard; `None` uses them when present.
    """
    if isinstance(source, str | os.PathLike):
        source = [source]
    sources = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in source]
    if not sources or not all(isinstance(s, str) and s for s in sources):
        raise ValueError(f"source must be a non-empty URL or list of URLs, got {source!r}")
    shards: list[Shard] = []
    for s in sources:
        shards.extend(_expand(s, split, storage_options))
    if not shards:
        raise ValueError(f"{source!r} holds no shards")
    if path_imgidx:
        if len(shards) != 1:
            raise ValueError(
                f"path_imgidx names one index but {len(shards)} .rec files were given; "
                "give each shard its own PREFIX.idx instead"
            )
        shards = [Shard(shards[0].rec, path_imgidx, shards[0].lst)]
    out: list[Shard] = []
    for sh in shards:
        idx = sh.idx
        if use_index is False:
            idx = None
        elif idx is None and not path_imgidx:
            idx = _sibling(sh.rec, ".idx", storage_options)
        if use_index and idx is None:
            raise ValueError(f"use_index=True but {sh.rec} has no .idx next to it")
        lst = sh.lst or _sibling(sh.rec, ".lst", storage_options)
        out.append(Shard(sh.rec, idx, lst, sh.records, sh.bytes, sh.sha256))
    return out


def scan_offsets(rec: str, storage_options: StorageOptions = None) -> list[tuple[int, int]]:
    """`(key, offset)` of every record of a `.rec` without an index, by reading it through.

    The key is the image header's `id` (what im2rec writes to `.idx`) when every record is
    long enough to hold an image header, else the record's position in the file.
    """
    src = open_source(rec, storage_options)
    try:
        pairs: list[tuple[int, int]] = []
        ids: list[int | None] = []
        for offset, payload in iter_records(src):
            pairs.append((len(pairs), offset))
            ids.append(
                int.from_bytes(payload[8:16], "little") if len(payload) >= _IR_HEADER_SIZE else None
            )
    finally:
        src.close()
    if ids and all(i is not None for i in ids):
        return [(int(i), off) for i, (_, off) in zip(ids, pairs, strict=True)]  # type: ignore[arg-type]
    return pairs


def shard_offsets(
    shard: Shard, storage_options: StorageOptions = None, *, scan: bool = True
) -> list[tuple[int, int]]:
    """`(key, offset)` pairs of a shard sorted by offset: from its `.idx`, or (when `scan`)
    by reading the `.rec` through. Raises `RecordIOError` for an index offset past the end."""
    if shard.idx is None:
        if not scan:
            raise ValueError(f"{shard.rec} has no .idx")
        return scan_offsets(shard.rec, storage_options)
    pairs = sorted(read_idx(shard.idx, storage_options), key=lambda kv: kv[1])
    if pairs:
        fs, path = get_fs(shard.rec, storage_options)
        size = fs.size(path)
        if pairs[-1][1] >= size:
            raise RecordIOError(
                f"{shard.idx}: offset {pairs[-1][1]} is past the end of {shard.rec} ({size} bytes)"
            )
    return pairs


def display_name(url: str) -> str:
    """A short name for messages: the file name of a URL."""
    return posixpath.basename(url.rstrip("/"))
