"""Content keys for shards: what a shard's bytes depend on, hashed.

A shard's bytes are a function of its entries (index, labels, path, in order), of the image
files they name, and of the parameters that change bytes (resize, quality, encoding, color,
center_crop, pass_through, inter_method, label_width, pack_label, ...) — never of worker
counts or where the work ran. `shard_key` hashes exactly those, so equal keys mean equal
bytes. Images are represented by a cheap fingerprint (size plus ETag or modification time from
one listing), so an image replaced in place changes the key without reading any pixels.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from recordio_core.fsio import StorageOptions, get_fs
from recordio_core.lst import LstEntry

KEY_VERSION = 1
MISSING = "missing"


def _fingerprint(info: Mapping[str, Any]) -> str:
    size = info.get("size")
    for name in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        value = info.get(name)
        if value is not None:
            return f"{size}:{value}"
    return f"{size}:"


def source_fingerprints(
    root: str, paths: Iterable[str], storage_options: StorageOptions = None
) -> dict[str, str]:
    """`{relative path: fingerprint}` for images under `root`, from as few listings as possible.

    One `find` (or `ls` when every path sits directly in `root`) covers the common case; a path
    it did not cover is looked up alone; a vanished file gets the fingerprint `"missing"`.
    """
    fs, root_path = get_fs(root, storage_options)
    root_path = root_path.rstrip("/")
    wanted = {p: posixpath.join(root_path, p) for p in paths}
    if not wanted:
        return {}
    nested = any("/" in p for p in wanted)
    try:
        listing = fs.find(root_path, detail=True) if nested else fs.ls(root_path, detail=True) or []
    except FileNotFoundError:
        listing = {}
    if isinstance(listing, list):
        listing = {item["name"]: item for item in listing}
    by_name = {name.rstrip("/"): info for name, info in listing.items()}
    out: dict[str, str] = {}
    for rel, full in wanted.items():
        info = by_name.get(full)
        if info is None:
            try:
                info = fs.info(full)
            except FileNotFoundError:
                out[rel] = MISSING
                continue
        out[rel] = _fingerprint(info)
    return out


def shard_key(
    entries: Sequence[LstEntry],
    *,
    root: str,
    fingerprints: Mapping[str, str],
    params: Mapping[str, Any],
) -> str:
    """Hex sha256 of everything a shard's bytes depend on (see the module docstring)."""
    h = hashlib.sha256()
    head = {"v": KEY_VERSION, "root": root.rstrip("/"), "params": dict(sorted(params.items()))}
    h.update(json.dumps(head, sort_keys=True, default=str).encode("utf-8"))
    for e in entries:
        labels = ",".join(repr(float(v)) for v in e.labels)
        fp = fingerprints.get(e.path, MISSING)
        h.update(f"\n{e.index}\t{labels}\t{e.path}\t{fp}".encode())
    return h.hexdigest()
