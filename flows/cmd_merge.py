"""`recflow merge`: concatenate shards into one `.rec` + `.idx` (+ `.lst`).

    recflow merge 'out/train-*.rec' -o out/train-all
    recflow merge s3://bucket/ds/manifest.json --split train -o s3://bucket/ds/train-all

Records are self-delimiting, so merging is a byte copy plus an offset shift in the index. On
S3 the shards are copied server-side into a multipart upload (only pieces under S3's 5 MiB part
minimum pass through this machine). The `.idx` is written last.
"""

from __future__ import annotations

import argparse
from typing import Any

from recordio_flow.flows.cliargs import add_source_options, human_bytes


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="concatenate shards into one .rec + .idx (server-side copy on S3)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="PREFIX", help="write PREFIX.rec/.idx/.lst"
    )
    parser.add_argument(
        "--keys",
        choices=("keep", "renumber"),
        default="keep",
        help="keep record keys (default; repeated keys are an error) or renumber 0..n-1",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recordio_core.building.combine import merge_shards

    out = args.output[: -len(".rec")] if args.output.endswith(".rec") else args.output
    result = merge_shards(
        args.source, out, keys=args.keys, split=args.split, storage_options=args.storage_options
    )
    print(f"wrote {result.rec} ({result.records} records, {human_bytes(result.bytes)})")
    print(f"wrote {result.idx}")
    if result.lst:
        print(f"wrote {result.lst}")
    if result.copied_server_side:
        print(
            f"copied server-side: {human_bytes(result.copied_server_side)}; through this "
            f"machine: {human_bytes(result.copied_through)}"
        )
    return 0
