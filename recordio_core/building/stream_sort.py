"""Sorted piece files, the streaming build's on-storage form of a listing: lines sorted by a
16-hex key, bucketed by the key's top bits.

- `LineSorter`: an external sort of such lines, stable, held in memory up to `SPILL_BYTES`
  then in sorted runs on local disk (at most `MAX_RUNS`, then merged into one).
- `write_sorted_piece`: sorted lines to a file on any fsspec URL (written atomically), with
  the count and start offset of each bucket, so a reader fetches just the buckets it needs.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import tempfile
from collections.abc import Iterator
from operator import itemgetter
from typing import Any

import numpy as np

from recordio_core.storage.fsio import StorageOptions, atomic_write

BUCKET_BITS = 12
SPILL_BYTES = 16 << 20  # a part's lines held in memory before a sorted run goes to local disk
MAX_RUNS = 32  # sorted runs on disk before they are merged into one
_LINE_OVERHEAD = 60  # bytes a line costs in memory beyond its characters (a str object)
_KEY = itemgetter(slice(0, 16))


class LineSorter:
    """Lines sorted by their first 16 characters, stable: held in memory up to `spill_bytes`,
    then sorted runs on local disk merged as they are read (`heapq.merge` keeps ties in run
    order, and runs are in arrival order)."""

    def __init__(self, spill_bytes: int = SPILL_BYTES, max_runs: int = MAX_RUNS) -> None:
        self.spill_bytes = spill_bytes
        self.max_runs = max_runs
        self.lines: list[str] = []
        self.held = 0
        self.peak = 0
        self.runs: list[str] = []

    def add(self, line: str) -> None:
        size = len(line) + _LINE_OVERHEAD
        if self.lines and self.held + size > self.spill_bytes:
            self._spill()  # before the line: never more than spill_bytes held
        self.lines.append(line)
        self.held += size
        self.peak = max(self.peak, self.held)

    def _spill(self) -> None:
        self.lines.sort(key=_KEY)
        self.runs.append(_write_run(self.lines))
        self.lines, self.held = [], 0
        if len(self.runs) >= self.max_runs:
            merged = _write_run(self._merged())
            self.close()
            self.runs = [merged]

    def _merged(self) -> Iterator[str]:
        files = [open(run, encoding="utf-8", newline="\n") for run in self.runs]  # noqa: SIM115
        try:
            yield from heapq.merge(*files, key=_KEY)
        finally:
            for f in files:
                f.close()

    def sorted_lines(self) -> Iterator[str]:
        """Every line added, sorted (stable); the sorter is empty afterwards."""
        if not self.runs:
            self.lines.sort(key=_KEY)
            lines, self.lines, self.held = self.lines, [], 0
            yield from lines
            return
        if self.lines:
            self._spill()
        try:
            yield from self._merged()
        finally:
            self.close()

    def close(self) -> None:
        for run in self.runs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(run)
        self.runs = []


def _write_run(lines: Any) -> str:
    fd, path = tempfile.mkstemp(prefix="recflow-run-", suffix=".tsv")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(lines)
    return path


def write_sorted_piece(
    url: str, lines: Iterator[str], storage_options: StorageOptions = None, bits: int = BUCKET_BITS
) -> tuple[np.ndarray, np.ndarray]:
    """Write lines sorted by their 16-hex key to `url`; (lines per bucket, the byte offset
    where each bucket starts, one more: the size). A bucket is the key's top `bits` bits."""
    buckets = 1 << bits
    counts = np.zeros(buckets, dtype=np.int64)
    ends = np.zeros(buckets, dtype=np.int64)  # offset after each bucket's last line
    shift = 16 - bits
    pos = 0
    buf: list[bytes] = []
    held = 0
    with atomic_write(url, storage_options) as f:
        for line in lines:
            data = line.encode("utf-8")
            bucket = int(line[:4], 16) >> shift
            counts[bucket] += 1
            pos += len(data)
            ends[bucket] = pos
            buf.append(data)
            held += len(data)
            if held >= 1 << 20:
                f.write(b"".join(buf))
                buf, held = [], 0
        f.write(b"".join(buf))
    # a bucket starts where the last non-empty bucket before it ended
    offsets = np.zeros(buckets + 1, dtype=np.int64)
    offsets[1:] = np.maximum.accumulate(ends)
    return counts, offsets
