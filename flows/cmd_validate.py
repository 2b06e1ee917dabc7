"""`recflow validate TARGET`: check packed shards record by record.

TARGET is one of:
- a shard prefix: `PREFIX.rec` and `PREFIX.idx` are checked, with `PREFIX.lst` when it exists
  (`PREFIX.rec` itself is accepted too);
- a dataset's `manifest.json`, or the folder holding it: every shard it lists is checked,
  against the sha256 sums and record counts the manifest recorded.

Each `.idx` entry is re-read (offset inside the file and at a record start, framing, header
id = key), the whole `.rec` is walked (records missing from the `.idx`, garbage, truncation),
labels are compared with the `.lst`, counts must agree, and with `--decode` every image must
decode (an image over `--max-pixels`, or over the build's `max_pixels` for a manifest, is a
problem and is not decoded). Exit status: 0 all valid, 1 problems found, 2 bad arguments or
unreadable manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check a packed .rec/.idx(/.lst) or every shard of a manifest.json",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target", metavar="TARGET", help="shard prefix (PREFIX.rec/.idx/.lst) or manifest.json"
    )
    parser.add_argument("--idx", help="index file (default: PREFIX.idx)")
    parser.add_argument("--lst", help="list file (default: PREFIX.lst when it exists)")
    parser.add_argument("--no-lst", action="store_true", help="do not compare with a .lst")
    parser.add_argument(
        "--label-width", type=int, default=None, help="label columns each .lst line must have"
    )
    parser.add_argument(
        "--pack-label", action="store_true", help="records hold all labels (im2rec --pack-label)"
    )
    parser.add_argument("--sha256", help="expected sha256 of the .rec")
    parser.add_argument("--decode", action="store_true", help="also decode every image")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="with --decode on a shard prefix: images over N pixels are problems, not decoded "
        "(default: Pillow's limit, 89478485; 0: no limit); a manifest uses its build's",
    )
    parser.add_argument("--json", action="store_true", help="print the report(s) as JSON")
    parser.set_defaults(func=run)


def _is_manifest(target: str) -> bool:
    from recordio_core.format.manifest import MANIFEST_NAME
    from recordio_core.storage.fsio import exists, join_url

    if target.rstrip("/").endswith(".json"):
        return True
    if target.endswith(".rec"):
        return False
    return exists(join_url(target, MANIFEST_NAME)) and not exists(target + ".rec")


def _max_pixels(value: int | None) -> int | None:
    from recordio_core.images.image import DEFAULT_MAX_PIXELS

    if value is None:
        return DEFAULT_MAX_PIXELS
    if value < 0:
        raise ValueError(f"--max-pixels must be >= 0 (0: no limit), got {value}")
    return value or None


def _shard_reports(args: argparse.Namespace) -> list[Any]:
    from recordio_core.building.validate import validate_shard
    from recordio_core.storage.fsio import exists

    prefix = args.target[: -len(".rec")] if args.target.endswith(".rec") else args.target
    lst = None
    if not args.no_lst:
        lst = args.lst or (prefix + ".lst" if exists(prefix + ".lst") else None)
    return [
        validate_shard(
            prefix + ".rec",
            args.idx or prefix + ".idx",
            lst,
            label_width=args.label_width,
            pack_label=args.pack_label,
            decode=args.decode,
            expected_sha256=args.sha256,
            max_pixels=_max_pixels(args.max_pixels),
        )
    ]


def _manifest_reports(args: argparse.Namespace) -> list[Any]:
    from recordio_core.building.validate import validate_manifest

    for flag in ("idx", "lst", "sha256", "max_pixels"):
        if getattr(args, flag) is not None:
            raise ValueError(
                f"--{flag.replace('_', '-')} applies to a shard prefix, not a manifest"
            )
    return validate_manifest(args.target, decode=args.decode)


def run(args: argparse.Namespace) -> int:
    reports = _manifest_reports(args) if _is_manifest(args.target) else _shard_reports(args)
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for r in reports:
            status = "ok  " if r.ok else "FAIL"
            print(f"{status} {r.rec}: {r.records} records, {r.bytes} bytes, sha256 {r.sha256}")
            for problem in r.problems:
                print(f"     - {problem}")
        bad = sum(not r.ok for r in reports)
        records = sum(r.records for r in reports)
        if bad:
            print(f"{bad} of {len(reports)} shard(s) have problems", file=sys.stderr)
        else:
            print(f"{len(reports)} shard(s), {records} records: all valid")
    return 0 if all(r.ok for r in reports) else 1
