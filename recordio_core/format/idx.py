"""`.idx` files: `key<TAB>offset<NEWLINE>` per record, offsets into the `.rec`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from recordio_core.format.errors import IndexFileError
from recordio_core.format.textio import split_lines
from recordio_core.storage.fsio import StorageOptions, read_text, write_bytes_atomic


def format_idx(pairs: Iterable[tuple[Any, int]]) -> str:
    """`.idx` text as MXNet writes it: `str(key)<TAB>offset<NEWLINE>` per record."""
    return "".join(f"{key!s}\t{offset}\n" for key, offset in pairs)


def parse_idx(
    text: str, *, source: str = "<idx>", key_type: Callable[[str], Any] = int
) -> list[tuple[Any, int]]:
    """Parse `.idx` text into `(key, offset)` pairs in file order.

    Like MXNet, a line is stripped and split on its tab (a line without a tab is split on
    white space, as the C++ readers do); the key is `key_type(first field)`, so string keys
    work too. Blank lines are skipped. A malformed line is an `IndexFileError` naming the file
    and line.
    """
    pairs: list[tuple[Any, int]] = []
    for lineno, line in enumerate(split_lines(text), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        fields = stripped.split("\t") if "\t" in stripped else stripped.split()
        if len(fields) != 2:
            raise IndexFileError(
                source, lineno, f"expected 'key<TAB>offset', found {len(fields)} field(s): {line!r}"
            )
        raw_key, raw_offset = fields[0].strip(), fields[1].strip()
        try:
            key = key_type(raw_key)
        except (TypeError, ValueError):
            name = getattr(key_type, "__name__", repr(key_type))
            raise IndexFileError(source, lineno, f"key {raw_key!r} is not a valid {name}") from None
        try:
            offset = int(raw_offset)
        except ValueError:
            raise IndexFileError(
                source, lineno, f"offset {raw_offset!r} is not an integer"
            ) from None
        if offset < 0 or offset % 4:
            raise IndexFileError(
                source, lineno, f"offset {offset} is not a non-negative multiple of 4"
            )
        pairs.append((key, offset))
    return pairs


def read_idx(
    url: str, storage_options: StorageOptions = None, *, key_type: Callable[[str], Any] = int
) -> list[tuple[Any, int]]:
    """Read and parse an `.idx` from any fsspec URL."""
    try:
        text = read_text(url, storage_options)
    except UnicodeDecodeError as exc:
        raise IndexFileError(url, 0, f"not UTF-8 text ({exc})") from None
    return parse_idx(text, source=url, key_type=key_type)


def write_idx(
    url: str, pairs: Sequence[tuple[Any, int]], storage_options: StorageOptions = None
) -> None:
    """Write an `.idx` atomically."""
    write_bytes_atomic(url, format_idx(pairs).encode("utf-8"), storage_options)
