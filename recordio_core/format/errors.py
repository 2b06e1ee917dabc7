"""Exceptions raised by recordio_core. Every message names the file (and line or offset).
Also `check_int`, the one up-front check of an integer option, so every "must be an integer
>= N" error reads the same and a bool (an `int` to Python, never a count) is refused."""

from __future__ import annotations

from typing import Any


class RecordIOError(ValueError):
    """A `.rec`/`.idx` file is malformed; the message names the file and byte offset."""


class ListFileError(ValueError):
    """A `.lst` file is malformed; the message names the file and line number."""

    def __init__(self, source: str, lineno: int, problem: str) -> None:
        self.source = source
        self.lineno = lineno
        self.problem = problem
        super().__init__(f"{source}:{lineno}: {problem}")


class IndexFileError(ValueError):
    """An `.idx` file is malformed; the message names the file and line number."""

    def __init__(self, source: str, lineno: int, problem: str) -> None:
        self.source = source
        self.lineno = lineno
        self.problem = problem
        super().__init__(f"{source}:{lineno}: {problem}")


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """`value` when it is an integer (not a bool) of at least `minimum`; else a ValueError
    that names the option, the bound and what was given."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
