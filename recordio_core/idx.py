"""`.idx` files: `key<TAB>offset<NEWLINE>` per record, offsets into the `.rec`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from recordio_core.errors import IndexFileError
from recordio_core.fsio import StorageOptions, read_text, write_bytes_atomic


def format_idx(pairs: Iterable[tuple[int, int]]) -> str:
    return "".join(f"{key}\t{offset}\n" for key, offset in pairs)


def parse_idx(text: str, *, source: str = "<idx>") -> list[tuple[int, int]]:
    """Parse `.idx` text into `(key, offset)` pairs in file order.

    Like MXNet, fields are split on white space; blank lines are skipped. A malformed line is
    an `IndexFileError` naming the file and line.
    """
    pairs: list[tuple[int, int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise IndexFileError(source, lineno, f"expected 'key<TAB>offset', got {line!r}")
        try:
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise IndexFileError(
                source, lineno, f"key and offset must be integers: {line!r}"
            ) from None
        if offset < 0 or offset % 4:
            raise IndexFileError(
                source, lineno, f"offset {offset} is not a non-negative multiple of 4"
            )
        pairs.append((key, offset))
    return pairs


def read_idx(url: str, storage_options: StorageOptions = None) -> list[tuple[int, int]]:
    return parse_idx(read_text(url, storage_options), source=url)


def write_idx(
    url: str, pairs: Sequence[tuple[int, int]], storage_options: StorageOptions = None
) -> None:
    write_bytes_atomic(url, format_idx(pairs).encode("ascii"), storage_options)
