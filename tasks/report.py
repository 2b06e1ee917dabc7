"""What a build reports: the summary dict, its markdown, and the shard table (no Prefect here;
the flow publishes them as artifacts). Nothing here ever sees storage options."""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recordio_core.building.mdtable import class_table, human_bytes
from recordio_core.building.quality import QualityReport
from recordio_core.format.lst import LstEntry
from recordio_core.format.manifest import Manifest, RejectEntry
from recordio_core.reading.inspect import SheetPick

MAX_REJECTS_SHOWN = 20
SHEET_PER_CLASS = 4  # images per class on the summary's contact sheet
SHEET_MAX_CLASSES = 12


@dataclass
class ShardOutcome:
    """One shard of a finished build, as the reports show it."""

    split: str
    name: str
    rec: str
    records: int
    bytes: int
    sha256: str
    rejects: int
    cached: bool
    labels: Counter = field(default_factory=Counter)  # first label ("%g") -> records


def label_key(value: float) -> str:
    return f"{value:g}"


def sheet_picks(
    shards: Iterable[tuple[str, str, Iterable[LstEntry], Iterable[int]]],
    per_class: int = SHEET_PER_CLASS,
    max_classes: int = SHEET_MAX_CLASSES,
) -> list[SheetPick]:
    """Which records go on the summary's contact sheet: the first `per_class` packed records
    of each of the first `max_classes` classes (by first label; labels that are not whole
    numbers have no class). `shards` holds `(rec url, idx url, entries, rejected indices)`."""
    picked: dict[int, list[SheetPick]] = {}
    for rec, idx, entries, rejected in shards:
        skip = set(rejected)
        for e in entries:
            first = float(e.labels[0]) if e.labels else None
            if e.index in skip or first is None or not first.is_integer():
                continue
            cls = int(first)
            if cls not in picked and len(picked) >= max_classes:
                continue
            group = picked.setdefault(cls, [])
            if len(group) < per_class:
                group.append(SheetPick(cls=cls, rec=rec, idx=idx, key=e.index))
    return [p for cls in sorted(picked) for p in picked[cls]]


def artifact_key(prefix: str, output: str) -> str:
    """A valid artifact key (lower-case letters, digits, dashes) naming this dataset."""
    slug = re.sub(r"[^a-z0-9]+", "-", output.lower()).strip("-")
    key = f"{prefix}-{slug}" if slug else prefix
    return key[:100].rstrip("-")


def build_summary(
    *,
    output: str,
    manifest_url: str,
    manifest: Manifest,
    outcomes: Sequence[ShardOutcome],
    seconds: float,
    listed: int,
    quality: QualityReport | None = None,
    split_labels: Mapping[str, Counter] | None = None,
) -> dict[str, Any]:
    """The flow's return value: small, JSON-able, with no secrets. `quality` holds the data
    quality counts (`QualityReport.summary()`: decoder warnings, duplicate groups, how many
    cross splits or carry different labels, near-duplicate groups). Records per label and
    split come from the outcomes' `labels`, or from `split_labels` when given (a streaming
    build counts them per group of shards)."""
    splits: dict[str, Any] = {}
    for name, split in manifest.splits.items():
        labels: Counter = Counter()
        if split_labels is not None:
            labels.update(split_labels.get(name, {}))
        for o in outcomes if split_labels is None else ():
            if o.split == name:
                labels.update(o.labels)
        splits[name] = {
            "records": split.records,
            "shards": len(split.shards),
            "bytes": split.bytes,
            "labels": {k: labels[k] for k in sorted(labels, key=float)},
        }
    packed = sum(o.records for o in outcomes if not o.cached)
    return {
        "output": output,
        "manifest": manifest_url,
        "images_listed": listed,
        "records": manifest.records,
        "bytes": manifest.bytes,
        "rejects": len(manifest.rejects),
        "shards": len(outcomes),
        "shards_packed": sum(1 for o in outcomes if not o.cached),
        "shards_cached": sum(1 for o in outcomes if o.cached),
        "images_packed": packed,
        "seconds": round(seconds, 3),
        "images_per_second": round(listed / seconds, 1) if seconds > 0 else 0.0,
        "label_width": int(manifest.parameters.get("label_width", 1)),
        "labels_in_header": bool(manifest.parameters.get("pack_label", False)),
        "splits": splits,
        "quality": (quality or QualityReport()).summary(),
    }


def labels_line(summary: Mapping[str, Any]) -> str:
    """How the labels are stored, in words (empty for one label per image)."""
    width = int(summary.get("label_width", 1))
    if width <= 1:
        return ""
    if summary.get("labels_in_header"):
        return (
            f"**Labels:** {width} per image, all in each record's header (pack_label), so "
            f"MXNet's `ImageRecordIter(label_width={width})` reads them without the .lst."
        )
    return (
        f"**Labels:** {width} per image; the record headers hold only the first "
        "(pack_label=false), all of them are in each shard's .lst (pass it as path_imglist)."
    )


def summary_markdown(
    summary: Mapping[str, Any],
    class_map: Mapping[str, int],
    rejects: Sequence[RejectEntry],
    quality: QualityReport | None = None,
    sheet_png: bytes | None = None,
) -> str:
    """The run summary artifact; `sheet_png` (a contact sheet) is embedded as a data: URL."""
    names = {label: folder for folder, label in class_map.items()}
    split_names = list(summary["splits"])
    lines = [
        f"# Dataset `{summary['output']}`",
        "",
        f"**{summary['records']}** records in {summary['shards']} shards, "
        f"{human_bytes(summary['bytes'])}; **{summary['rejects']}** rejects; "
        f"{summary['seconds']:.1f} s ({summary['images_per_second']:.0f} img/s); "
        f"{summary['shards_packed']} shards packed now, {summary['shards_cached']} reused.",
        "",
    ]
    if labels_line(summary):
        lines += [labels_line(summary), ""]
    lines += [
        "| split | records | shards | size |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, s in summary["splits"].items():
        lines.append(f"| {name} | {s['records']} | {s['shards']} | {human_bytes(s['bytes'])} |")
    labels = sorted(
        {k for s in summary["splits"].values() for k in s["labels"]}, key=lambda k: float(k)
    )

    def class_name(label: str) -> str:
        value = float(label)
        return names.get(int(value), "") if value.is_integer() else ""

    lines += class_table(
        "Records per class",
        split_names,
        labels,
        lambda split, label: summary["splits"][split]["labels"].get(label, 0),
        class_name,
    )
    if rejects:
        lines += ["", f"## Rejects ({len(rejects)})", ""]
        for r in rejects[:MAX_REJECTS_SHOWN]:
            lines.append(f"- `{r.path}`: {r.reason}")
        if len(rejects) > MAX_REJECTS_SHOWN:
            lines.append(f"- ... and {len(rejects) - MAX_REJECTS_SHOWN} more (rejects.jsonl)")
    if quality is not None:
        lines += quality_markdown(quality)
    if sheet_png:
        data = base64.b64encode(sheet_png).decode("ascii")
        lines += [
            "",
            f"## Samples (first {SHEET_PER_CLASS} per class)",
            "",
            f"![contact sheet](data:image/png;base64,{data})",
        ]
    lines += ["", f"Manifest: `{summary['manifest']}`", ""]
    return "\n".join(lines)


def quality_text(counts: Mapping[str, Any]) -> str:
    """One line: the data quality counts of a summary."""
    return (
        f"{counts['warnings']} corrupt-but-decodable images; "
        f"{counts['duplicate_groups']} duplicate groups ({counts['duplicate_files']} files, "
        f"{counts['duplicate_groups_cross_split']} across splits, "
        f"{counts['duplicate_groups_label_conflict']} with different labels); "
        f"{counts['near_duplicate_groups']} near-duplicate groups "
        f"({counts['near_duplicate_groups_cross_split']} across splits, "
        f"{counts['near_duplicate_groups_label_conflict']} with different labels)"
    )


def quality_markdown(quality: QualityReport) -> list[str]:
    """The "Data quality" section of the summary artifact."""
    lines = ["", "## Data quality", "", quality_text(quality.summary()) + "."]
    if quality.warnings:
        lines += ["", f"### Decoder warnings ({len(quality.warnings)})", ""]
        for path, reason in quality.warnings[:MAX_REJECTS_SHOWN]:
            lines.append(f"- `{path}`: {reason}")
    for title, groups in (
        ("Duplicates", quality.duplicates),
        ("Near-duplicates", quality.near_duplicates),
    ):
        if not groups:
            continue
        lines += ["", f"### {title} ({len(groups)} groups)", ""]
        for g in groups[:MAX_REJECTS_SHOWN]:
            flags = [
                f
                for f, on in (
                    ("across splits", g.cross_split),
                    ("different labels", g.label_conflict),
                )
                if on
            ]
            members = ", ".join(f"`{p}` ({s})" for p, s in zip(g.paths, g.splits, strict=True))
            lines.append(f"- {members}" + (f" — **{', '.join(flags)}**" if flags else ""))
        if len(groups) > MAX_REJECTS_SHOWN:
            lines.append(f"- ... and {len(groups) - MAX_REJECTS_SHOWN} more (manifest.json)")
    return lines


def shard_table(outcomes: Sequence[ShardOutcome]) -> list[dict[str, Any]]:
    return [
        {
            "split": o.split,
            "shard": o.name,
            "records": o.records,
            "bytes": o.bytes,
            "rejects": o.rejects,
            "sha256": o.sha256[:16],
            "status": "reused" if o.cached else "packed",
            "rec": o.rec,
        }
        for o in outcomes
    ]
