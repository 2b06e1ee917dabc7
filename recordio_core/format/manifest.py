"""The dataset manifest: `OUTPUT/manifest.json`, written last, the mark of a complete dataset.

A manifest says what a dataset holds and how it was made:

```json
{
  "format": "recordio-flow/manifest", "version": 1,
  "parameters": {...every build parameter...},
  "class_map": {"cats": 0, "dogs": 1},
  "splits": {"train": {"records": 90, "shards": [
      {"rec": "train/train-00000-of-00001.1a2b3c4d5e6f.rec", "idx": "...", "lst": "...",
       "records": 90, "bytes": 123456, "sha256": "...", "idx_sha256": "...", "lst_sha256": "..."}
  ]}},
  "rejects": [{"path": "cats/broken.jpg", "reason": "cannot decode: ...", "index": 7}],
  "warnings": [{"path": "dogs/scrambled.jpg", "reason": "Corrupt JPEG data: ..."}],
  "duplicates": [{"sha256": "...", "paths": ["cats/a.jpg", "dogs/a copy.jpeg"],
                  "labels": [0.0, 1.0], "splits": ["train", "val"]}],
  "near_duplicates": [{"paths": [...], "labels": [...], "splits": [...], "dhashes": [...]}],
  "tools": {"recordio-flow": "0.1.0", "python": "3.11.7", ...}
}
```

`warnings` lists the JPEGs that decoded only with libjpeg warnings (corrupt but decodable),
`duplicates` the groups of byte-identical source files and `near_duplicates` the groups of
look-alikes by difference hash (`recordio_core.building.quality`); manifests written before these
existed read as having none.

Shard paths are relative to the folder holding the manifest. The document carries no clock
time, run id or host, so rebuilding the same inputs with the same parameters writes the same
bytes. Readers check `format` and `version` and get a precise error for anything malformed.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from recordio_core.storage.fsio import (
    StorageOptions,
    join_url,
    read_bytes,
    write_bytes_atomic,
)

MANIFEST_NAME = "manifest.json"
CLASS_MAP_NAME = "class_map.json"
REJECTS_NAME = "rejects.jsonl"
MANIFEST_FORMAT = "recordio-flow/manifest"
MANIFEST_VERSION = 1

# distributions whose versions a manifest records (when installed)
TOOL_DISTRIBUTIONS = ("recordio-flow", "prefect", "pillow", "numpy", "fsspec", "s3fs")


class ManifestError(ValueError):
    """A manifest that cannot be read: names the source and what is wrong."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class ShardEntry:
    """One packed shard; `rec`/`idx`/`lst` are relative to the manifest's folder."""

    rec: str
    idx: str
    lst: str
    records: int
    bytes: int
    sha256: str
    idx_sha256: str = ""
    lst_sha256: str = ""

    def __post_init__(self) -> None:
        for name in ("rec", "idx", "lst"):
            _check_relative(getattr(self, name), name)
        if self.records < 0 or self.bytes < 0:
            raise ValueError(f"shard {self.rec}: records and bytes must be >= 0")
        if len(self.sha256) != 64:
            raise ValueError(f"shard {self.rec}: sha256 must be 64 hex digits")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rec": self.rec,
            "idx": self.idx,
            "lst": self.lst,
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "idx_sha256": self.idx_sha256,
            "lst_sha256": self.lst_sha256,
        }


@dataclass(frozen=True)
class SplitEntry:
    """A split (`train`, `val`, `test`, `all`, or an im2rec chunk such as `0_train`)."""

    shards: tuple[ShardEntry, ...]

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "shards": [s.to_dict() for s in self.shards]}


@dataclass(frozen=True)
class RejectEntry:
    """An image left out of the dataset, and why."""

    path: str
    reason: str
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        return out


@dataclass(frozen=True)
class WarningEntry:
    """An image that decoded only with decoder warnings (packed unless also a reject)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class Manifest:
    parameters: Mapping[str, Any]
    class_map: Mapping[str, int]
    splits: Mapping[str, SplitEntry]
    rejects: tuple[RejectEntry, ...] = ()
    tools: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[WarningEntry, ...] = ()
    duplicates: tuple[Mapping[str, Any], ...] = ()  # DuplicateGroup.to_dict() each
    near_duplicates: tuple[Mapping[str, Any], ...] = ()  # NearDuplicateGroup.to_dict() each

    @property
    def records(self) -> int:
        return sum(s.records for s in self.splits.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.splits.values())

    def shards(self) -> list[tuple[str, ShardEntry]]:
        """`(split name, shard)` for every shard, in manifest order."""
        return [(name, shard) for name, split in self.splits.items() for shard in split.shards]

    def files(self) -> list[str]:
        """Every data file the manifest references (relative paths)."""
        return [p for _, s in self.shards() for p in (s.rec, s.idx, s.lst)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "parameters": dict(self.parameters),
            "class_map": dict(self.class_map),
            "splits": {name: split.to_dict() for name, split in self.splits.items()},
            "rejects": [r.to_dict() for r in self.rejects],
            "warnings": [w.to_dict() for w in self.warnings],
            "duplicates": [dict(g) for g in self.duplicates],
            "near_duplicates": [dict(g) for g in self.near_duplicates],
            "tools": dict(self.tools),
        }

    def to_json(self) -> bytes:
        """Deterministic JSON (insertion order kept, 2-space indent, trailing newline)."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")


def _check_relative(path: str, what: str) -> None:
    if not isinstance(path, str) or not path:
        raise ValueError(f"{what} path must be a non-empty string")
    if path.startswith("/") or "://" in path or any(p == ".." for p in path.split("/")):
        raise ValueError(f"{what} path {path!r} must be relative to the manifest's folder")


def relative_path(base: str, url: str) -> str:
    """`url` relative to the folder URL `base` (both as the user spelled them)."""
    prefix = base.rstrip("/") + "/"
    if not url.startswith(prefix):
        raise ValueError(f"{url!r} is not inside {base!r}")
    return url[len(prefix) :]


def tool_versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Versions of the installed tools that shape a dataset's bytes (sorted by name)."""
    out = {"python": platform.python_version()}
    for dist in TOOL_DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    out.update(extra or {})
    return dict(sorted(out.items()))


def manifest_url(output: str) -> str:
    return join_url(output, MANIFEST_NAME)


def write_manifest(output: str, manifest: Manifest, storage_options: StorageOptions = None) -> str:
    """Write `OUTPUT/manifest.json` atomically; returns its URL."""
    url = manifest_url(output)
    write_bytes_atomic(url, manifest.to_json(), storage_options)
    return url


def write_rejects(
    url: str, rejects: Iterable[RejectEntry], storage_options: StorageOptions = None
) -> None:
    """Write rejects as JSON Lines (one object per reject), atomically."""
    lines = [json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rejects]
    write_bytes_atomic(url, "".join(lines).encode("utf-8"), storage_options)


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    if key not in obj:
        raise ManifestError(source, f"missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(source, f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def parse_manifest(data: bytes | str | Mapping[str, Any], source: str = "<manifest>") -> Manifest:
    """Parse and check a manifest document (bytes, text or an already-decoded dict)."""
    doc = _document(data, source)
    parameters = _require(doc, "parameters", dict, source)
    class_map = _require(doc, "class_map", dict, source)
    for name, label in class_map.items():
        if not isinstance(label, int) or isinstance(label, bool):
            raise ManifestError(source, f"class_map[{name!r}] is not an integer")
    splits = {
        name: _parse_split(split, f"{source} split {name!r}")
        for name, split in _require(doc, "splits", dict, source).items()
    }
    rejects = _parse_rejects(doc, source)
    warnings = _parse_warnings(doc, source)
    groups = {}
    for key in ("duplicates", "near_duplicates"):
        items = _optional_list(doc, key, source)
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or not isinstance(item.get("paths"), list):
                raise ManifestError(f"{source} {key} {i}", "is not an object with 'paths'")
        groups[key] = tuple(dict(item) for item in items)
    tools = _require(doc, "tools", dict, source)
    return Manifest(
        parameters=parameters,
        class_map=class_map,
        splits=splits,
        rejects=tuple(rejects),
        tools={str(k): str(v) for k, v in tools.items()},
        warnings=tuple(warnings),
        duplicates=groups["duplicates"],
        near_duplicates=groups["near_duplicates"],
    )


def _document(data: bytes | str | Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """The decoded JSON object, of this format and version."""
    if isinstance(data, bytes | str):
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(source, f"not JSON ({exc})") from None
    else:
        doc = data
    if not isinstance(doc, Mapping):
        raise ManifestError(source, "the document is not a JSON object")
    if doc.get("format") != MANIFEST_FORMAT:
        raise ManifestError(source, f"format is {doc.get('format')!r}, not {MANIFEST_FORMAT!r}")
    if doc.get("version") != MANIFEST_VERSION:
        raise ManifestError(source, f"version {doc.get('version')!r} is not supported (expected 1)")
    return doc


def _parse_split(split: Any, where: str) -> SplitEntry:
    if not isinstance(split, Mapping):
        raise ManifestError(where, "is not an object")
    shards = [
        _parse_shard(shard, f"{where} shard {i}")
        for i, shard in enumerate(_require(split, "shards", list, where))
    ]
    entry = SplitEntry(shards=tuple(shards))
    records = _require(split, "records", int, where)
    if records != entry.records:
        raise ManifestError(where, f"records is {records} but its shards hold {entry.records}")
    return entry


def _parse_shard(shard: Any, here: str) -> ShardEntry:
    if not isinstance(shard, Mapping):
        raise ManifestError(here, "is not an object")
    try:
        return ShardEntry(
            rec=_require(shard, "rec", str, here),
            idx=_require(shard, "idx", str, here),
            lst=_require(shard, "lst", str, here),
            records=_require(shard, "records", int, here),
            bytes=_require(shard, "bytes", int, here),
            sha256=_require(shard, "sha256", str, here),
            idx_sha256=str(shard.get("idx_sha256", "")),
            lst_sha256=str(shard.get("lst_sha256", "")),
        )
    except ValueError as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(here, str(exc)) from None


def _parse_rejects(doc: Mapping[str, Any], source: str) -> list[RejectEntry]:
    rejects = []
    for i, rej in enumerate(_require(doc, "rejects", list, source)):
        here = f"{source} reject {i}"
        if not isinstance(rej, Mapping):
            raise ManifestError(here, "is not an object")
        index = rej.get("index")
        rejects.append(
            RejectEntry(
                path=_require(rej, "path", str, here),
                reason=_require(rej, "reason", str, here),
                index=index if isinstance(index, int) else None,
            )
        )
    return rejects


def _parse_warnings(doc: Mapping[str, Any], source: str) -> list[WarningEntry]:
    warnings = []
    for i, item in enumerate(_optional_list(doc, "warnings", source)):
        here = f"{source} warning {i}"
        if not isinstance(item, Mapping):
            raise ManifestError(here, "is not an object")
        warnings.append(
            WarningEntry(
                path=_require(item, "path", str, here), reason=_require(item, "reason", str, here)
            )
        )
    return warnings


def _optional_list(doc: Mapping[str, Any], key: str, source: str) -> list[Any]:
    """`doc[key]` when present (a list), else [] (manifests from before the key existed)."""
    if key not in doc:
        return []
    return _require(doc, key, list, source)


def read_manifest(url: str, storage_options: StorageOptions = None) -> Manifest:
    """Read a manifest from its URL, or from a dataset folder holding `manifest.json`."""
    if not url.rstrip("/").endswith(".json"):
        url = manifest_url(url)
    return parse_manifest(read_bytes(url, storage_options), source=url)
