"""`.lst` files: `index<TAB>label[<TAB>label ...]<TAB>relative/path` per line.

Reading is strict where im2rec.py was silent: a malformed line is a `ListFileError` naming the
file and line, raised before any packing starts. Like MXNet, fields are split on tabs and
stripped of surrounding white space, CRLF line ends are accepted and blank lines are skipped.
Writing uses im2rec.py's exact format (`%d`, labels as `%f`), except for a label `%f` would
change (more than six decimals, e.g. 0.1234567 from a user's `.lst`): it is written with the
fewest digits that read back as the same number, so the `.lst` keeps the label its record holds.

Paths are relative to an image root. `path_outside_root` says when one is not (`..` that
climbs out, an absolute path, a drive letter or a URL); the readers refuse such lines with
`allow_outside_root=False`, which every tool that joins the paths to a root uses by default.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from recordio_core.format.errors import ListFileError
from recordio_core.format.textio import split_lines
from recordio_core.storage.fsio import StorageOptions, read_text, write_bytes_atomic


@dataclass(frozen=True)
class LstEntry:
    """One line of a `.lst`: the record key, its float labels and the image's relative path."""

    index: int
    labels: tuple[float, ...]
    path: str

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or self.index < 0 or self.index >= 1 << 64:
            raise ValueError(f"index must be an int in [0, 2**64), got {self.index!r}")
        if not self.labels:
            raise ValueError(f"entry {self.index} ({self.path!r}) needs at least one label")
        if not self.path:
            raise ValueError(f"entry {self.index} has an empty path")

    @property
    def label(self) -> float:
        """The first label (what im2rec puts in the header without pack_label)."""
        return self.labels[0]


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//|[\\/])")  # s3://, file:/, C:\\ or C:/


def path_outside_root(path: str) -> str | None:
    """Why `path` (from a `.lst`, meant relative to the image root) points outside the root,
    or None when it stays inside: a URL or drive letter, an absolute path, or `..` climbing
    above the root (`a/../b` stays inside)."""
    if ":" not in path and "\\" not in path and ".." not in path and not path.startswith("/"):
        return None  # the common case, decided without normalising
    if _SCHEME.match(path):
        return "is a URL or drive path, not a path relative to the image root"
    norm = path.replace("\\", "/")
    if norm.startswith("/"):
        return "is an absolute path, not a path relative to the image root"
    norm = posixpath.normpath(norm)
    if norm == ".." or norm.startswith("../"):
        return "climbs out of the image root with '..'"
    return None


def format_label(value: float) -> str:
    """A label as im2rec.py writes it (`%f`: "3.000000"), unless that would change its value
    ("0.123457" for 0.1234567): then the shortest decimal that reads back as the same float,
    without an exponent ("0.1234567", "0.0000001")."""
    text = f"{value:f}"
    if float(text) == value:
        return text
    return format(Decimal(repr(float(value))), "f")


def format_lst_line(entry: LstEntry) -> str:
    """One line as im2rec.py writes it (labels with `%f`, see `format_label`)."""
    labels = "".join(format_label(v) + "\t" for v in entry.labels)
    return f"{entry.index}\t{labels}{entry.path}\n"


def format_lst(entries: Iterable[LstEntry]) -> str:
    return "".join(format_lst_line(e) for e in entries)


def parse_lst_line(
    line: str, *, source: str = "<lst>", lineno: int = 1, label_width: int | None = None
) -> LstEntry | None:
    """Parse one line; `None` for a blank line. Raises `ListFileError` naming source and line."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    raw = text.split("\t")
    if len(raw) >= 3 and not raw[-1].strip() and any(f.strip() for f in raw[1:-1]):
        # a trailing tab: MXNet would silently take the last label as the path
        raise ListFileError(source, lineno, f"the path (last column) is empty: {text!r}")
    fields = [f.strip() for f in text.strip().split("\t")]
    if len(fields) < 3:
        raise ListFileError(
            source,
            lineno,
            f"expected 'index<TAB>label[<TAB>label...]<TAB>path' (at least 3 tab-separated "
            f"columns), found {len(fields)}: {text!r}",
        )
    entry = entry_from_fields(fields, source=source, lineno=lineno)
    if label_width is not None and len(entry.labels) != label_width:
        raise ListFileError(
            source,
            lineno,
            f"label_width={label_width} but the line has {len(entry.labels)} label column(s)",
        )
    return entry


# A line exactly as im2rec.py and `format_lst_line` write it: a decimal index, plain decimal
# labels (at most 30 digits each side of the point: always finite) and a path with no tab,
# NUL or white space at either end. `parse_lst` takes such lines without the general checks.
_PLAIN_LINE = re.compile(
    r"([0-9]{1,20})\t((?:-?[0-9]{1,30}(?:\.[0-9]{0,30})?\t)+)([^\t\s\x00](?:[^\t\x00]*[^\t\s\x00])?)"
)


_new_object = object.__new__
_set_field = object.__setattr__
_MAX_INDEX = 1 << 64


def checked_entry(index: int, labels: tuple[float, ...], path: str) -> LstEntry:
    """An `LstEntry` of values already checked as its `__post_init__` would (an index in
    [0, 2**64), at least one label, a non-empty path), as a plain line's match below is.
    ~5x cheaper than the checking constructor, which counts at 100,000 lines."""
    entry = _new_object(LstEntry)
    _set_field(entry, "index", index)
    _set_field(entry, "labels", labels)
    _set_field(entry, "path", path)
    return entry


def plain_entry(line: str, label_width: int | None) -> LstEntry | None:
    """The entry of a plain line (`_PLAIN_LINE`), as `parse_lst_line` would give it, or None
    when the line needs the general parser (which also names what is wrong)."""
    m = _PLAIN_LINE.fullmatch(line)
    if m is None:
        return None
    index_text, label_text, path = m.groups()
    labels = tuple(map(float, label_text[:-1].split("\t")))
    index = int(index_text)
    if (label_width is not None and len(labels) != label_width) or index >= _MAX_INDEX:
        return None
    return checked_entry(index, labels, path)


def entry_from_fields(
    fields: Sequence[str], *, source: str, lineno: int, unit: str = "column", hint: str = ""
) -> LstEntry:
    """Build an entry from `[index, label..., path]` (already split and stripped), raising
    `ListFileError` naming source, line and the bad `unit` ("column"/"field"); `hint` is
    appended to a non-numeric label's message."""
    try:
        index = int(fields[0])
    except ValueError:
        raise ListFileError(source, lineno, f"index {fields[0]!r} is not an integer") from None
    if index < 0 or index >= 1 << 64:
        raise ListFileError(source, lineno, f"index {index} is outside [0, 2**64)")
    labels: list[float] = []
    for col, raw in enumerate(fields[1:-1], start=2):
        try:
            value = float(raw)
        except ValueError:
            raise ListFileError(
                source, lineno, f"label in {unit} {col} ({raw!r}) is not a number{hint}"
            ) from None
        if math.isnan(value) or math.isinf(value):
            raise ListFileError(source, lineno, f"label in {unit} {col} ({raw!r}) is not finite")
        labels.append(value)
    path = fields[-1]
    if not path:
        raise ListFileError(source, lineno, f"the path (last {unit}) is empty")
    if "\0" in path:
        raise ListFileError(source, lineno, f"the path contains a NUL character: {path!r}")
    return LstEntry(index=index, labels=tuple(labels), path=path)


def checked_entries(
    numbered: Iterable[tuple[int, LstEntry]],
    *,
    source: str,
    allow_duplicates: bool = False,
    allow_outside_root: bool = True,
) -> list[LstEntry]:
    """The entries of `(lineno, entry)` pairs, refusing a repeated index (naming both lines)
    unless `allow_duplicates`, and a path outside the image root unless `allow_outside_root`
    (whichever comes first in line order)."""
    numbered = list(numbered)
    entries = [entry for _, entry in numbered]
    fine = (allow_duplicates or len({e.index for e in entries}) == len(entries)) and (
        allow_outside_root or not any(path_outside_root(e.path) for e in entries)
    )
    if fine:  # the common case, checked in bulk; otherwise find the first problem line by line
        return entries
    entries = []
    seen: dict[int, int] = {}
    for lineno, entry in numbered:
        if not allow_outside_root:
            why = path_outside_root(entry.path)
            if why:
                raise ListFileError(
                    source,
                    lineno,
                    f"path {entry.path!r} {why}; such paths are refused unless explicitly "
                    "allowed (allow_outside_root)",
                )
        if not allow_duplicates:
            first = seen.setdefault(entry.index, lineno)
            if first != lineno:
                raise ListFileError(
                    source, lineno, f"duplicate index {entry.index} (first seen on line {first})"
                )
        entries.append(entry)
    return entries


def parse_lst(
    text: str,
    *,
    source: str = "<lst>",
    label_width: int | None = None,
    allow_duplicates: bool = False,
    allow_outside_root: bool = True,
) -> list[LstEntry]:
    """Parse a whole `.lst` text. Duplicate indices are an error naming both lines; with
    `allow_outside_root=False`, so is a path outside the image root (`path_outside_root`)."""
    numbered: list[tuple[int, LstEntry]] = []
    append = numbered.append
    plain = plain_entry
    for lineno, line in enumerate(split_lines(text), start=1):
        entry = plain(line, label_width) or parse_lst_line(
            line, source=source, lineno=lineno, label_width=label_width
        )
        if entry is not None:
            append((lineno, entry))
    return checked_entries(
        numbered,
        source=source,
        allow_duplicates=allow_duplicates,
        allow_outside_root=allow_outside_root,
    )


def read_lst(
    url: str,
    storage_options: StorageOptions = None,
    *,
    label_width: int | None = None,
    allow_duplicates: bool = False,
    allow_outside_root: bool = True,
) -> list[LstEntry]:
    """Read and parse a `.lst` from any fsspec URL (options as for `parse_lst`). A UTF-8
    byte order mark (Windows editors write one) is skipped."""
    try:
        text = read_text(url, storage_options).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ListFileError(url, 0, f"not UTF-8 text ({exc})") from None
    return parse_lst(
        text,
        source=url,
        label_width=label_width,
        allow_duplicates=allow_duplicates,
        allow_outside_root=allow_outside_root,
    )


def write_lst(
    url: str, entries: Sequence[LstEntry], storage_options: StorageOptions = None
) -> None:
    """Write a `.lst` atomically in im2rec.py's format."""
    write_bytes_atomic(url, format_lst(entries).encode("utf-8"), storage_options)
