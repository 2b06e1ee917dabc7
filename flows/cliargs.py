"""Small argument helpers shared by the reader-side subcommands (index, merge, inspect)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (for `--storage-options`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"anon\": true}'")
    return value


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """`SOURCE...`, `--split` and `--storage-options`, as the reader understands them."""
    parser.add_argument(
        "source",
        nargs="+",
        metavar="SOURCE",
        help="a .rec, PREFIX, glob ('s3://b/train-*.rec'), folder or manifest.json (any fsspec "
        "URL); several are read in the order given",
    )
    parser.add_argument("--split", help="the split to read from a manifest (train, val, ...)")
    parser.add_argument(
        "--storage-options",
        type=json_object,
        metavar="JSON",
        help='fsspec options, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'',
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
