"""Markdown for the per-class tables of the run summary and the dry-run report."""

from __future__ import annotations

from collections.abc import Callable, Sequence


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
