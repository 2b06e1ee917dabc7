"""`recflow index`: write `.idx` files, or one combined `.idx` over many shards for DALI.

    recflow index data/train.rec                       # scan train.rec, write train.idx
    recflow index 'out/train-*.rec' -o train-all.idx   # one index through all shards (DALI)

NVIDIA DALI's `fn.readers.mxnet(path=[...], index_path=[...])` takes many `.rec` files but
exactly one index whose offsets count through their concatenation; pass the `.rec` files in the
order this command prints (also written with `--list-out`). Keys are the records' own keys
(`--keys renumber` numbers them 0..n-1 when shards repeat keys; DALI ignores keys).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from recordio_flow.flows.cliargs import add_source_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "index",
        help="write missing .idx files, or one combined .idx over many shards (for DALI)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(parser)
    parser.add_argument(
        "-o", "--output", metavar="IDX", help="write one combined index here (DALI)"
    )
    parser.add_argument(
        "--keys",
        choices=("keep", "renumber"),
        default="keep",
        help="keep record keys (default; repeated keys are an error) or renumber 0..n-1",
    )
    parser.add_argument(
        "--list-out", metavar="FILE", help="with -o: also write the .rec files in order, one a line"
    )
    parser.add_argument(
        "--force", action="store_true", help="without -o: rescan shards that already have an .idx"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recordio_core.building.combine import write_combined_index
    from recordio_core.format.idx import write_idx
    from recordio_core.reading.sources import resolve_shards, scan_offsets
    from recordio_core.storage.fsio import write_bytes_atomic

    so = args.storage_options
    if args.output:
        combined = write_combined_index(
            args.source, args.output, keys=args.keys, split=args.split, storage_options=so
        )
        print(
            f"wrote {args.output}: {len(combined.pairs)} records in {len(combined.recs)} "
            f"shards ({combined.total_bytes} bytes); give DALI the .rec files in this order:"
        )
        for rec in combined.recs:
            print(f"  {rec}")
        if args.list_out:
            text = "".join(r + "\n" for r in combined.recs)
            write_bytes_atomic(args.list_out, text.encode("utf-8"), so)
        print(
            "  fn.readers.mxnet(path="
            + json.dumps(list(combined.recs))
            + f", index_path=[{json.dumps(args.output)}])"
        )
        return 0
    if args.list_out or args.keys != "keep":
        raise ValueError("--list-out and --keys apply to a combined index: add -o IDX")
    shards = resolve_shards(args.source, split=args.split, storage_options=so)
    for shard in shards:
        if shard.idx and not args.force:
            print(f"{shard.idx}: exists (use --force to rebuild)")
            continue
        pairs = scan_offsets(shard.rec, so)
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            pairs = [(i, off) for i, (_, off) in enumerate(pairs)]
            note = " (header ids repeat: keys are record numbers)"
        else:
            note = ""
        idx = (
            shard.rec[: -len(".rec")] + ".idx" if shard.rec.endswith(".rec") else shard.rec + ".idx"
        )
        write_idx(idx, pairs, so)
        print(f"{idx}: {len(pairs)} records{note}")
    return 0
