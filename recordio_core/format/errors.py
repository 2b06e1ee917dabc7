"""Exceptions raised by recordio_core. Every message names the file (and line or offset)."""

from __future__ import annotations


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
