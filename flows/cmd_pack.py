"""`recflow pack LIST ROOT OUTPUT [key=value ...]`: MXNet's C++ `im2rec` (tools/im2rec.cc).

The seed's `./bin/im2rec image.lst image_root_dir output.bin resize=256 label_width=4` becomes
`recflow pack image.lst image_root_dir output.bin resize=256 label_width=4`. Options and
defaults are im2rec.cc's:

    resize=-1        shorter edge to this size; <= 0 keeps the size
    label_width=1    labels per list line
    pack_label=0     1: store all `label_width` labels after the header (needs label_width > 1;
                     as im2rec.cc does, the header's own label field keeps the first label,
                     where im2rec.py writes 0; readers take the labels after the header)
    nsplit=1 part=0  pack only part `part` of `nsplit` byte-equal parts of the list (dmlc's
                     line-aligned byte split); the output becomes OUTPUT.partNNN
    center_crop=0    1: crop the center square first (as in im2rec.cc, only when resizing)
    quality=95       JPEG quality 0-100; PNG compression 0-9 (a value > 9 becomes 3)
    color=1          1 colour, 0 gray, -1 unchanged
    encoding=.jpg    .jpg or .png
    unchanged=0      1: store the files' bytes untouched (ignores the image options)
    inter_method=1   0 nearest, 1 bilinear, 2 cubic, 3 area, 4 lanczos, 9 auto, 10 random
    num_thread=1     (recflow) worker threads; the output keeps the list order
    io_concurrency=64  (recflow) requests in flight when ROOT is in an object store (s3://)
    verify=header    (recflow) with unchanged=1: none stores any bytes (like im2rec.cc),
                     header rejects files that are not images, decode also decodes them
    allow_outside_root=0  (recflow) 1: accept list paths outside ROOT ('..', absolute, URLs)
    on_decode_warning=keep  (recflow) a JPEG that decodes only with libjpeg warnings (corrupt
                     but decodable): keep packs it and lists it as a warning, reject leaves it out

Differences from im2rec.cc: unknown keys and bad values are errors (im2rec.cc ignores them);
the list is read strictly (a malformed line is an error naming the file and line); a missing
or undecodable image is a reject listed in the summary instead of aborting; the image path is
`ROOT/path` (im2rec.cc concatenates ROOT and path without a separator); and an index is written
beside the output: OUTPUT with its extension replaced by `.idx` (`output.bin` -> `output.idx`),
or `OUTPUT.idx` when OUTPUT has no extension; with nsplit > 1 the part number goes before it
(`output.part003.idx` beside `output.bin.part003`).
"""

from __future__ import annotations

import argparse
import dataclasses
import posixpath
import sys
import uuid
from collections.abc import Sequence
from typing import Any

# im2rec.cc's keys and defaults (num_thread is ours)
DEFAULTS: dict[str, int | str] = {
    "resize": -1,
    "label_width": 1,
    "pack_label": 0,
    "nsplit": 1,
    "part": 0,
    "center_crop": 0,
    "quality": 95,
    "color": 1,
    "encoding": ".jpg",
    "unchanged": 0,
    "inter_method": 1,
    "num_thread": 1,
    "io_concurrency": 64,
    "verify": "header",
    "allow_outside_root": 0,
    "on_decode_warning": "keep",
}
INTER_METHODS = (0, 1, 2, 3, 4, 9, 10)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="pack a .lst into a .rec (+ .idx) like MXNet's C++ im2rec: LIST ROOT OUTPUT k=v...",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("list", metavar="LIST", help="the image list (.lst)")
    parser.add_argument("root", metavar="ROOT", help="folder the list's paths are relative to")
    parser.add_argument("output", metavar="OUTPUT", help="the record file to write")
    parser.add_argument(
        "options", metavar="key=value", nargs="*", help=f"options: {', '.join(DEFAULTS)}"
    )
    parser.set_defaults(func=run)


def parse_options(items: Sequence[str]) -> dict[str, int | str]:
    """`key=value` strings -> options with im2rec.cc's defaults; bad input is a ValueError."""
    opts = dict(DEFAULTS)
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"options are key=value, got {item!r}; known keys: {', '.join(DEFAULTS)}"
            )
        if key not in DEFAULTS:
            raise ValueError(f"unknown option {key!r}; known keys: {', '.join(DEFAULTS)}")
        value = value.strip()
        if key in ("encoding", "verify", "on_decode_warning"):
            opts[key] = value
            continue
        try:
            opts[key] = int(value)
        except ValueError:
            raise ValueError(f"{key} must be an integer, got {value!r}") from None
    return _check(opts)


def _check(opts: dict[str, int | str]) -> dict[str, int | str]:
    def flag(key: str) -> None:
        if opts[key] not in (0, 1):
            raise ValueError(f"{key} must be 0 or 1, got {opts[key]}")

    for key in ("pack_label", "center_crop", "unchanged", "allow_outside_root"):
        flag(key)
    if opts["color"] not in (-1, 0, 1):
        raise ValueError(f"color must be -1, 0 or 1, got {opts['color']}")
    if opts["encoding"] not in (".jpg", ".png"):
        raise ValueError(f"encoding must be .jpg or .png, got {opts['encoding']!r}")
    if opts["verify"] not in ("none", "header", "decode"):
        raise ValueError(f"verify must be none, header or decode, got {opts['verify']!r}")
    if opts["on_decode_warning"] not in ("keep", "reject"):
        raise ValueError(
            f"on_decode_warning must be keep or reject, got {opts['on_decode_warning']!r}"
        )
    if int(opts["label_width"]) < 1:
        raise ValueError(f"label_width must be >= 1, got {opts['label_width']}")
    if opts["pack_label"] and int(opts["label_width"]) <= 1:
        raise ValueError("pack_label=1 can only be used when label_width > 1")
    if int(opts["nsplit"]) < 1:
        raise ValueError(f"nsplit must be >= 1, got {opts['nsplit']}")
    if not 0 <= int(opts["part"]) < int(opts["nsplit"]):
        raise ValueError(f"part must be in [0, nsplit={opts['nsplit']}), got {opts['part']}")
    if opts["inter_method"] not in INTER_METHODS:
        raise ValueError(
            f"inter_method must be one of {', '.join(map(str, INTER_METHODS))}, "
            f"got {opts['inter_method']}"
        )
    if int(opts["num_thread"]) < 1:
        raise ValueError(f"num_thread must be >= 1, got {opts['num_thread']}")
    if not 1 <= int(opts["io_concurrency"]) <= 1024:
        raise ValueError(f"io_concurrency must be between 1 and 1024, got {opts['io_concurrency']}")
    quality = int(opts["quality"])
    if opts["encoding"] == ".png":
        if quality > 9:  # im2rec.cc: "if (encoding == .png && quality > 9) quality = 3"
            opts["quality"] = 3
        elif quality < 0:
            raise ValueError(f"quality is the PNG compression 0-9 with .png, got {quality}")
    elif not 0 <= quality <= 100:
        raise ValueError(f"quality is the JPEG quality 0-100 with .jpg, got {quality}")
    return opts


def output_paths(output: str, nsplit: int, part: int) -> tuple[str, str]:
    """(record file, index file) for OUTPUT: im2rec.cc's `.partNNN` naming plus our `.idx`."""
    from recordio_core.building.plan import nsplit_output_name

    rec = nsplit_output_name(output, nsplit, part)
    head, name = posixpath.split(output)
    stem, ext = posixpath.splitext(name)
    base = posixpath.join(head, stem) if ext else output
    idx = f"{base}.part{part:03d}.idx" if nsplit > 1 else f"{base}.idx"
    if idx == rec:
        raise ValueError(f"OUTPUT {output!r} would be overwritten by its own index; use .rec")
    return rec, idx


def read_part(
    list_url: str, label_width: int, nsplit: int, part: int, *, allow_outside_root: bool = False
) -> list:
    """The entries of `part` of `nsplit` of the list, read like im2rec.cc but strictly."""
    from recordio_core.building.listing import parse_lst_cc
    from recordio_core.building.plan import nsplit_line_range
    from recordio_core.format.errors import ListFileError
    from recordio_core.storage.fsio import read_bytes

    data = read_bytes(list_url)
    begin, end = nsplit_line_range(data, nsplit, part)
    try:
        before = data[:begin].decode("utf-8")
        text = data[begin:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ListFileError(list_url, 0, f"not UTF-8 text ({exc})") from None
    return parse_lst_cc(
        text,
        source=list_url,
        label_width=label_width,
        first_lineno=len(before.splitlines()) + 1,
        allow_outside_root=allow_outside_root,
    )


def run(args: argparse.Namespace) -> int:
    opts = parse_options(args.options)
    from recordio_core.building.pack import PackOptions
    from recordio_core.images.image import ImageOptions

    nsplit, part = int(opts["nsplit"]), int(opts["part"])
    rec_url, idx_url = output_paths(args.output, nsplit, part)
    resize = max(0, int(opts["resize"]))
    unchanged = bool(opts["unchanged"])
    if opts["center_crop"] and not resize and not unchanged:
        print("note: center_crop=1 has no effect without resize (as in im2rec.cc)", file=sys.stderr)
    image = ImageOptions(
        resize=resize,
        center_crop=bool(opts["center_crop"]) and resize > 0,
        color=int(opts["color"]),
        encoding=str(opts["encoding"]),
        quality=int(opts["quality"]),
        pass_through=unchanged,
        inter_method=int(opts["inter_method"]),
        verify=str(opts["verify"]),
    )
    pack_opts = PackOptions(
        image=image,
        label_width=int(opts["label_width"]),
        pack_label=bool(opts["pack_label"]),
        num_workers=int(opts["num_thread"]),
        io_concurrency=int(opts["io_concurrency"]),
        header_label="first",  # im2rec.cc keeps the first label in the header
        on_decode_warning=str(opts["on_decode_warning"]),
    )
    entries = read_part(
        args.list,
        int(opts["label_width"]),
        nsplit,
        part,
        allow_outside_root=bool(opts["allow_outside_root"]),
    )
    what = f"part {part} of {nsplit} of {args.list}" if nsplit > 1 else args.list
    print(f"packing {len(entries)} images from {what} into {rec_url}")
    result = pack_to(entries, args.root, rec_url, idx_url, pack_opts)
    return 0 if result is not None else 1


def pack_to(entries: list, root: str, rec_url: str, idx_url: str, opts: Any) -> Any:
    """Pack `entries` into exactly `rec_url` and `idx_url` (any names), print a summary."""
    from recordio_core.building.pack import pack_shard
    from recordio_core.building.progress import Progress
    from recordio_core.storage.fsio import get_fs, is_local
    from recordio_flow.flows.cmd_im2rec import print_summary

    direct = rec_url.endswith(".rec") and idx_url == rec_url[: -len(".rec")] + ".idx"
    if direct:
        out_prefix = rec_url[: -len(".rec")]
    else:
        head, name = posixpath.split(rec_url)
        out_prefix = posixpath.join(head, f".{name}.recflow-{uuid.uuid4().hex[:12]}")
    with Progress(total=len(entries), label=posixpath.basename(rec_url)) as bar:
        result = pack_shard(entries, root, out_prefix, opts, progress=bar, write_lst=False)
    if not direct:
        fs, _ = get_fs(rec_url)
        for src, dst in ((result.rec, rec_url), (result.idx, idx_url)):
            if is_local(fs):
                import os

                os.replace(get_fs(src)[1], get_fs(dst)[1])
            else:
                fs.mv(get_fs(src)[1], get_fs(dst)[1])
        result = dataclasses.replace(result, rec=rec_url, idx=idx_url)
    print_summary(result, elapsed=bar.elapsed)
    return result
