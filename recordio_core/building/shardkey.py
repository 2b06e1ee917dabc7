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
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from recordio_core.format.lst import LstEntry
from recordio_core.storage.fsio import StorageOptions, is_local
from recordio_core.storage.treelist import listing_filesystem, lists_concurrently, reduce_tree

KEY_VERSION = 1
KEY_CHARS = 12  # hex digits of the content key in shard file names (48 bits)
MISSING = "missing"


def _fingerprint(info: Mapping[str, Any]) -> str:
    size = info.get("size")
    for name in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        value = info.get(name)
        if value is not None:
            return f"{size}:{value}"
    return f"{size}:"


def stat_fingerprint(st: os.stat_result) -> str:
    """What `_fingerprint(LocalFileSystem.info(path))` gives (size, then the target's mtime)
    from an `os.stat` of the path (10x cheaper per file than fsspec's info dict)."""
    return f"{st.st_size}:{st.st_mtime}"


def info_fingerprint(info: Mapping[str, Any]) -> str:
    """The fingerprint of a file from its fsspec listing details (`ls(detail=True)`)."""
    return _fingerprint(info)


def _local_fingerprint(path: str) -> str:
    try:
        return stat_fingerprint(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return MISSING


def source_fingerprints(
    root: str, paths: Iterable[str], storage_options: StorageOptions = None
) -> dict[str, str]:
    """`{relative path: fingerprint}` for images under `root`, from as few listings as possible.

    Local files are stat-ed one by one (cheap). On S3 the top-level folders are listed
    concurrently (`recordio_core.storage.treelist`), each folder's listing reduced to the
    fingerprints wanted as it arrives; other filesystems are listed one folder at a time (`walk`).
    One `ls` does when every path sits directly in `root`. Memory holds a folder's listing details
    at a time, not the whole tree's (about 1.2 KB per file otherwise). A path no listing covered is
    looked up alone; a vanished file gets the fingerprint `"missing"`.
    """
    fs, root_path = listing_filesystem(root, storage_options)
    root_path = root_path.rstrip("/")
    wanted = set(paths)
    if not wanted:
        return {}
    if is_local(fs):
        return {rel: _local_fingerprint(posixpath.join(root_path, rel)) for rel in wanted}
    prefix = root_path + "/"
    out: dict[str, str] = {}

    def reduce(infos: Iterable[Mapping[str, Any]]) -> dict[str, str]:
        found = {}
        for info in infos:
            name = str(info.get("name", "")).rstrip("/")
            if name.startswith(prefix) and name[len(prefix) :] in wanted:
                found[name[len(prefix) :]] = _fingerprint(info)
        return found

    def take(infos: Iterable[Mapping[str, Any]]) -> None:
        out.update(reduce(infos))

    try:
        if any("/" in p for p in wanted) and lists_concurrently(fs):
            for found in reduce_tree(fs, root_path, reduce):
                out.update(found)
        elif any("/" in p for p in wanted):
            for _folder, _dirs, files in fs.walk(root_path, detail=True):
                take(files.values())
        else:
            take(fs.ls(root_path, detail=True) or [])
    except FileNotFoundError:
        pass
    for rel in wanted - out.keys():
        try:
            out[rel] = _fingerprint(fs.info(posixpath.join(root_path, rel)))
        except FileNotFoundError:
            out[rel] = MISSING
    return out


def fingerprint_size(fingerprint: str) -> int | None:
    """The size in bytes a fingerprint starts with (`"1234:..."` -> 1234), or None."""
    head = fingerprint.partition(":")[0]
    return int(head) if head.isdigit() else None


def shard_key(
    entries: Sequence[LstEntry],
    *,
    root: str,
    fingerprints: Mapping[str, str],
    params: Mapping[str, Any],
) -> str:
    """Hex sha256 of everything a shard's bytes depend on (see the module docstring): a JSON
    head, then a line `\n<index>\t<labels as repr(float), comma-separated>\t<path>\t<fingerprint>`
    per entry. The lines are hashed as one text (~2x faster than an update per line at
    100,000 entries; the digest is the same)."""
    h = hashlib.sha256()
    head = {"v": KEY_VERSION, "root": root.rstrip("/"), "params": dict(sorted(params.items()))}
    h.update(json.dumps(head, sort_keys=True, default=str).encode("utf-8"))
    fp = fingerprints.get
    lines = [
        f"\n{e.index}\t{','.join(map(repr, map(float, e.labels)))}\t{e.path}\t{fp(e.path, MISSING)}"
        for e in entries
    ]
    h.update("".join(lines).encode())
    return h.hexdigest()
