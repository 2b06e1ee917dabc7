"""Listing images under a root (local or any fsspec URL) the way MXNet's im2rec.py does.

`list_images` returns the same entries, order, labels and indices as im2rec.py's `list_image`:

- non-recursive: the root's own files, sorted by name, all label 0;
- recursive: a top-down walk with sorted folders and sorted files (folders followed through
  symlinks, like `os.walk(followlinks=True)`); each folder that holds an image gets the next
  label in walk order; the **class map** (folder relative to root, `"."` for the root itself ->
  label) is what im2rec.py only prints; here it is kept and can be saved as JSON.

A file is an image when `os.path.splitext(name)[1].lower()` is one of `exts` (compared
case-insensitively, so `.JPG` in `exts` works too, which im2rec.py silently never matches).

Local roots are walked with `os.walk`/`os.listdir` exactly as im2rec.py does (fsspec's local
listing does not follow symlinks); other filesystems (`s3://...`, `memory://...`) are listed with
`recordio_core.storage.treelist` (on S3 the class folders are listed concurrently; elsewhere one
`fs.find`) and put in the same walk order.

Files whose relative path cannot be written to a `.lst` and read back (a tab, newline or
carriage return in the name, white space at either end of the path, a name that is not valid
UTF-8) are left out and reported in `Listing.skipped` with the reason; im2rec.py would write a
line it cannot read back.

`parse_lst_cc` reads a user-written list the way im2rec.cc (the C++ tool) does: white-space
separated `index label [label ...] path`, where the path is the rest of the line.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recordio_core.building.shardkey import info_fingerprint, stat_fingerprint
from recordio_core.format.errors import ListFileError, check_int
from recordio_core.format.lst import LstEntry, checked_entries, entry_from_fields, parse_lst_line
from recordio_core.storage.fsio import StorageOptions, is_local, read_text, write_bytes_atomic
from recordio_core.storage.treelist import listing_filesystem, reduce_tree

DEFAULT_EXTS: tuple[str, ...] = (".jpeg", ".jpg", ".png")

_BAD_PATH_CHARS = ("\t", "\n", "\r")


@dataclass(frozen=True)
class Listing:
    """The images found under a root, as `.lst` entries, and the class map (folder -> label).

    `skipped` holds `(relative path, reason)` for image files that could not be listed.
    `fingerprints` (`list_images(..., fingerprints=True)`) maps each entry's path to its
    `recordio_core.building.shardkey` fingerprint, taken by the listing itself; None when not taken.
    """

    entries: tuple[LstEntry, ...]
    class_map: dict[str, int]
    skipped: tuple[tuple[str, str], ...] = ()
    fingerprints: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        labels = list(self.class_map.values())
        if len(set(labels)) != len(labels):
            raise ValueError(f"class map labels must be unique, got {self.class_map!r}")


def normalize_exts(exts: Iterable[str]) -> tuple[str, ...]:
    """Lower-case and check extensions: each must start with '.', e.g. ('.jpg', '.png')."""
    if isinstance(exts, str):
        raise ValueError(f"exts must be a sequence of extensions like ('.jpg',), got {exts!r}")
    out: list[str] = []
    for ext in exts:
        if not isinstance(ext, str) or len(ext) < 2 or not ext.startswith(".") or "/" in ext:
            raise ValueError(
                f"each extension must start with '.' and name a suffix, e.g. '.jpg'; got {ext!r}"
            )
        low = ext.lower()
        if low not in out:
            out.append(low)
    if not out:
        raise ValueError("exts must name at least one extension, e.g. ('.jpg', '.png')")
    return tuple(out)


def _path_problem(rel: str) -> str | None:
    """Why `rel` cannot round-trip through a `.lst` line, or None if it can."""
    if any(c in rel for c in _BAD_PATH_CHARS):
        return "the path contains a tab, newline or carriage return, which a .lst cannot hold"
    if rel != rel.strip():
        return "the path starts or ends with white space, which .lst readers strip"
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8"
    return None


def _not_a_file(path: str) -> str | None:
    """Why `path` (not a regular file) cannot be an image, or None for a folder."""
    if os.path.isdir(path):
        return None
    if os.path.islink(path):
        return "broken symbolic link (its target does not exist)"
    return "not a regular file (a FIFO, socket or device)"


def _walk_local(
    root: str, recursive: bool, fingerprints: bool = False, top: str = "."
) -> Iterator[tuple[str, str, str | None, str]]:
    """Yield `(folder relative to root, file name, None, fingerprint)` for regular files in
    im2rec.py's order (os.walk top-down, following links, names sorted), and `(folder, name,
    why, "")` for names that are neither a file nor a folder (im2rec.py drops those silently;
    a broken link to an image is an image gone missing). A folder that cannot be read is
    skipped, as os.walk does. `top` (a folder relative to root) walks only that folder's
    part of the tree, in the same order and with the same relative folders.

    `os.scandir` tells files from folders by the directory entry's type, so a regular file
    costs no `stat` here (symbolic links are followed with one) unless `fingerprints` asks for
    its size and mtime ("" when that stat fails).
    """
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise NotADirectoryError(f"image root {root!r} is not a folder")
        raise FileNotFoundError(f"image root {root!r} does not exist")
    todo = [(root if top == "." else os.path.join(root, top), top)]
    while todo:
        path, rel_dir = todo.pop()
        try:
            with os.scandir(path) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError:
            if path == root:
                raise
            continue
        dirs = []
        for entry in found:
            if _is_dir(entry):
                dirs.append(entry.name)
            elif _is_file(entry):
                yield rel_dir, entry.name, None, _stat_fingerprint(entry) if fingerprints else ""
            elif why := _not_a_file(entry.path):
                yield rel_dir, entry.name, why, ""
        if recursive:
            todo.extend(
                (os.path.join(path, d), d if rel_dir == "." else f"{rel_dir}/{d}")
                for d in reversed(dirs)
            )


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _stat_fingerprint(entry: os.DirEntry) -> str:
    try:
        return stat_fingerprint(entry.stat())
    except OSError:
        return ""


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    """Sort key giving os.walk's top-down order: a folder's files, then its sorted subfolders."""
    parts = rel.split("/")
    return (*((1, d) for d in parts[:-1]), (0, parts[-1]))


def _walk_fsspec(fs, root: str, recursive: bool) -> Iterator[tuple[str, str, str | None, str]]:
    """`_walk_local` for fsspec filesystems (fingerprints from the listing's details)."""
    if not fs.isdir(root):
        if fs.exists(root):
            raise NotADirectoryError(f"image root {root!r} is not a folder")
        raise FileNotFoundError(f"image root {root!r} does not exist (or holds no files)")
    base = root.rstrip("/")
    prefix = base + "/" if base else ""

    def named(infos: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
        return [(str(i["name"]), info_fingerprint(i)) for i in infos]

    if recursive:
        found = [item for items in reduce_tree(fs, base, named) for item in items]
    else:
        found = named([i for i in fs.ls(base, detail=True) if i.get("type") == "file"])
    rels: dict[str, str] = {}
    for name, fingerprint in found:
        name = name.rstrip("/")
        if not name.startswith(prefix) or name == base:
            continue
        rel = name[len(prefix) :]
        if rel and "" not in rel.split("/"):
            rels[rel] = fingerprint
    for rel in sorted(rels, key=_walk_key):
        folder, _, fname = rel.rpartition("/")
        yield (folder or "."), fname, None, rels[rel]


def list_images(
    root: str,
    *,
    recursive: bool = False,
    exts: Sequence[str] = DEFAULT_EXTS,
    storage_options: StorageOptions = None,
    fingerprints: bool = False,
) -> Listing:
    """List the images under `root` with im2rec.py's entries, order, labels and indices.

    With `fingerprints`, also each image's fingerprint (`Listing.fingerprints`): from the
    listing's details on an object store (no extra request), one `stat` per file locally. If
    any could not be taken, `Listing.fingerprints` is None and the caller asks for them.
    """
    wanted = normalize_exts(exts)
    fs, path = listing_filesystem(root, storage_options)
    if is_local(fs):
        walk = _walk_local(path, recursive, fingerprints)
    else:
        walk = _walk_fsspec(fs, path, recursive)
    entries: list[LstEntry] = []
    class_map: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    prints: dict[str, str] | None = {} if fingerprints else None
    for rel_dir, fname, not_a_file, fingerprint in walk:
        if posixpath.splitext(fname)[1].lower() not in wanted:
            continue
        rel = fname if rel_dir == "." else posixpath.join(rel_dir, fname)
        problem = not_a_file or _path_problem(rel)
        if problem is not None:
            skipped.append((rel.encode("utf-8", "backslashreplace").decode("utf-8"), problem))
            continue
        label = class_map.setdefault(rel_dir, len(class_map)) if recursive else 0
        entries.append(LstEntry(index=len(entries), labels=(float(label),), path=rel))
        if prints is not None:
            prints[rel] = fingerprint
    if prints is not None and not all(prints.values()):
        prints = None  # a stat failed: the caller takes them again (and sees what is missing)
    if not recursive and entries:
        class_map = {".": 0}
    return Listing(
        entries=tuple(entries), class_map=class_map, skipped=tuple(skipped), fingerprints=prints
    )


def format_class_map(class_map: Mapping[str, int]) -> str:
    """The lines im2rec.py prints for a recursive listing: `folder label`, in label order."""
    return "".join(f"{k} {v}\n" for k, v in sorted(class_map.items(), key=lambda kv: kv[1]))


def _check_class_map(data: object, source: str) -> dict[str, int]:
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a class map must be a JSON object {{folder: label}}")
    out: dict[str, int] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{source}: class map keys must be folder names, got {key!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"{source}: the label of {key!r} must be a non-negative integer, got {value!r}"
            )
        out[key] = value
    if len(set(out.values())) != len(out):
        raise ValueError(f"{source}: class map labels must be unique, got {out!r}")
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def write_class_map(
    url: str, class_map: Mapping[str, int], storage_options: StorageOptions = None
) -> None:
    """Save the class map as a JSON object `{folder: label}` in label order (atomic write)."""
    checked = _check_class_map(dict(class_map), url)
    text = json.dumps(checked, indent=2, ensure_ascii=False) + "\n"
    write_bytes_atomic(url, text.encode("utf-8"), storage_options)


def read_class_map(url: str, storage_options: StorageOptions = None) -> dict[str, int]:
    """Read a class map written by `write_class_map`; malformed content is a ValueError."""
    try:
        data = json.loads(read_text(url, storage_options))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{url}: not a JSON class map ({exc})") from None
    return _check_class_map(data, url)


def parse_lst_cc(
    text: str,
    *,
    source: str = "<lst>",
    label_width: int = 1,
    first_lineno: int = 1,
    allow_duplicates: bool = False,
    allow_outside_root: bool = True,
) -> list[LstEntry]:
    """Parse a list the way im2rec.cc reads it, but strictly.

    A line holding tabs is read as im2rec.py writes it (tab-separated, exactly `label_width`
    labels). Otherwise fields are separated by any white space: `index`, `label_width` labels,
    and the rest of the line (stripped) is the path, so a path may contain spaces. Blank lines
    are skipped; a malformed line is a `ListFileError` (im2rec.cc skips or aborts).
    `first_lineno` numbers the first line of `text` (for a slice of a bigger file). A repeated
    index is an error naming both lines unless `allow_duplicates`; a path outside the image
    root (`recordio_core.format.lst.path_outside_root`) is one unless `allow_outside_root`.
    """
    check_int("label_width", label_width)
    numbered = (
        (lineno, _parse_cc_line(line, source, lineno, label_width))
        for lineno, line in enumerate(text.splitlines(), start=first_lineno)
        if line.strip()
    )
    return checked_entries(
        numbered,
        source=source,
        allow_duplicates=allow_duplicates,
        allow_outside_root=allow_outside_root,
    )


def _parse_cc_line(line: str, source: str, lineno: int, label_width: int) -> LstEntry:
    if "\t" in line:
        entry = parse_lst_line(line, source=source, lineno=lineno, label_width=label_width)
        if entry is None:  # pragma: no cover - blank lines are skipped by the caller
            raise ListFileError(source, lineno, "blank line")
        return entry
    fields = line.split(None, label_width + 1)
    if len(fields) < label_width + 2:
        raise ListFileError(
            source,
            lineno,
            f"expected 'index label{' label' * (label_width - 1)} path' "
            f"(label_width={label_width}), found {len(fields)} field(s): {line!r}",
        )
    return entry_from_fields(
        [*fields[:-1], fields[-1].strip()],
        source=source,
        lineno=lineno,
        unit="field",
        hint=f" (is label_width={label_width} right?)",
    )
