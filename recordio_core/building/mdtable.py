"""Pieces of the run summary and the dry-run report: the per-class table, byte sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def human_bytes(n: float) -> str:
    """`n` bytes in binary units: "512 B", "1.5 KiB", ... "2.0 TiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def class_table(
    title: str,
    columns: Sequence[str],
    labels: Sequence[str],
    count: Callable[[str, str], int],
    class_name: Callable[[str], str],
) -> list[str]:
    """Lines of a `## title` section with one row per label: the class name, the label and
    `count(column, label)` under each column (splits). No lines without labels."""
    if not labels:
        return []
    lines = [
        "",
        f"## {title}",
        "",
        "| class | label | " + " | ".join(columns) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for label in labels:
        counts = " | ".join(str(count(column, label)) for column in columns)
        lines.append(f"| {class_name(label)} | {label} | {counts} |")
    return lines
