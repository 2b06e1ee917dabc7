"""`recflow inspect`: counts, label histogram, image sizes and a contact sheet per class.

    recflow inspect out/manifest.json --split train            # writes inspect-train.png
    recflow inspect data/train --sheet train.png --per-class 10
    recflow inspect 's3://b/ds/train-*.rec' --json --no-sheet

Image sizes come from the encoded files' headers (nothing is decoded except the sheet's
samples). Class names come from the manifest's class map when SOURCE is a manifest.
"""

from __future__ import annotations

import argparse
import json
import posixpath
from typing import Any

from recordio_flow.flows.cliargs import add_source_options, human_bytes

_BAR = 30


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarise a dataset: counts, label and size histograms, contact sheet PNG",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(parser)
    parser.add_argument(
        "--sheet", metavar="PNG", help="contact sheet path (default inspect-NAME.png here)"
    )
    parser.add_argument("--no-sheet", action="store_true", help="do not write a contact sheet")
    parser.add_argument("--per-class", type=int, default=8, help="thumbnails per class (8)")
    parser.add_argument("--thumb", type=int, default=64, help="thumbnail size in pixels (64)")
    parser.add_argument("--max-records", type=int, help="stop after this many records")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def _default_sheet(source: str, split: str | None) -> str:
    if split:
        return f"inspect-{split}.png"
    name = posixpath.basename(source.rstrip("/")) or "dataset"
    for ext in (".json", ".rec"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "dataset"
    return f"inspect-{name}.png"


def run(args: argparse.Namespace) -> int:
    from recordio_core.reading.inspect import inspect_dataset

    source = args.source[0] if len(args.source) == 1 else args.source
    sheet = None if args.no_sheet else (args.sheet or _default_sheet(args.source[0], args.split))
    report = inspect_dataset(
        source,
        split=args.split,
        max_records=args.max_records,
        sheet=sheet,
        per_class=args.per_class,
        thumb=args.thumb,
        storage_options=args.storage_options,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    head = f"dataset: {report.source}" + (f" (split {args.split})" if args.split else "")
    print(head)
    more = "" if report.complete else f" (stopped after --max-records {args.max_records})"
    print(
        f"shards: {report.shards}   records: {report.records}{more}   "
        f"payload: {human_bytes(report.bytes)}"
    )
    top = max(report.labels.values(), default=1)
    print(f"labels ({len(report.labels)} distinct):")
    shown = list(report.labels.items())[:40]
    for key, count in shown:
        name = report.class_names.get(key, "")
        bar = "#" * max(1, round(_BAR * count / top))
        print(f"  {key:>10} {name[:20]:20} {count:8d}  {bar}")
    if len(report.labels) > len(shown):
        print(f"  ... and {len(report.labels) - len(shown)} more")
    buckets = ", ".join(f"{k}: {v}" for k, v in report.size_buckets.items())
    print(f"image sizes by shorter side: {buckets or '-'}")
    common = ", ".join(f"{k} ({v})" for k, v in list(report.sizes.items())[:8])
    print(f"most common sizes: {common or '-'}   distinct sizes: {len(report.sizes)}")
    print("formats: " + (", ".join(f"{k} {v}" for k, v in report.formats.items()) or "-"))
    if report.undecodable:
        print(f"undecodable records: {report.undecodable}")
    if report.sheet:
        print(f"contact sheet: {report.sheet}")
    return 0
