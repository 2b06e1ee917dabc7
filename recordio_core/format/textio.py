"""Text-file helpers shared by the `.lst` and `.idx` readers."""

from __future__ import annotations


def split_lines(text: str) -> list[str]:
    """Lines as Python's universal-newline reading (MXNet's `readline`) sees them.

    `\\r\\n`, `\\r` and `\\n` end a line; nothing else does (unlike `str.splitlines`, which
    also splits on form feeds and Unicode separators and would shift line numbers).
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
