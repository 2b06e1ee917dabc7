"""A small, thread-safe progress counter for command lines: `label  done/total  rate/s  eta`.

    with Progress(total=len(entries), label="train.lst") as bar:
        pack_shard(..., progress=bar)          # bar(n) adds n done items

On a terminal it redraws one line with `\\r` at most every `interval` seconds; on anything else
(a log file, a pipe, CI) it stays quiet until `close()`, which always prints the final line.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def _format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Counts done items and shows rate; call the instance with an increment."""

    def __init__(
        self,
        total: int | None = None,
        *,
        label: str = "",
        unit: str = "img",
        stream: TextIO | None = None,
        interval: float = 0.2,
        live: bool | None = None,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"total must be >= 0 or None, got {total}")
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        isatty = getattr(self.stream, "isatty", None)
        self.live = live if live is not None else bool(isatty and isatty())
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self._width = 0

    def __call__(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if not self.live or self._closed:
                return
            now = time.monotonic()
            if now - self._last_draw < self.interval and self.done != self.total:
                return
            self._last_draw = now
            self._draw(now)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        """The current status line (no line end)."""
        elapsed = (now if now is not None else time.monotonic()) - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [self.label] if self.label else []
        if self.total:
            pct = 100.0 * self.done / self.total
            width = 24
            filled = min(width, int(width * self.done / self.total))
            parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}%")
            parts.append(f"{self.done}/{self.total}")
        else:
            parts.append(f"{self.done}")
        parts.append(f"{rate:.1f} {self.unit}/s")
        parts.append(_format_seconds(elapsed))
        if self.total and 0 < self.done < self.total and rate > 0:
            parts.append(f"eta {_format_seconds((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        text = self.line(now)
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()

    def close(self) -> None:
        """Print the final line (always) and end it with a newline. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.live:
                self._draw(time.monotonic())
                self.stream.write("\n")
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
