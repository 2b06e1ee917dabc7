"""`recflow im2rec prefix root [options]`: a drop-in for `python -m mxnet.tools.im2rec`.

Same arguments and files as MXNet's im2rec.py:

- `--list`: walk `root` (`--recursive`, `--exts`), shuffle (seed 100, unless `--no-shuffle`),
  cut into `--chunks` and `--train-ratio`/`--test-ratio` lists, and write
  `prefix[_k][_train|_val|_test].lst` byte-identical to im2rec.py's. `--save-class-map [PATH]`
  (ours) also saves the folder -> label map as JSON (default `prefix.classes.json`).
- otherwise (pack mode): every file in the prefix's folder whose path starts with `prefix` and
  ends with `.lst` is packed into a `.rec` + `.idx` beside it, in list order, whatever
  `--num-thread` is. The `.lst` files are read, never rewritten.

Differences, all on the side of saying more:

- a malformed `.lst` line is an error naming the file and line (im2rec.py skips it);
- a list path outside `root` (`..`, an absolute path, a URL) is such an error too, unless
  `--allow-outside-root` (ours) says it is meant;
- an image that cannot be read or decoded is a *reject* listed in the final summary (im2rec.py
  crashes with one thread and silently skips with several); with `--pass-through` a file that
  is not an image is a reject too, unless `--verify none` (ours) asks for im2rec.py's
  store-anything (e.g. to pack non-image files);
- options are checked before any work: `--quality` is 0-100 for `.jpg` and 0-9 for `.png`
  (default 95 and 9: OpenCV clamps im2rec.py's 95 to 9 for PNG); `--exts` must start with '.'
  and match case-insensitively;
- a progress line goes to stderr and a summary with the rejects to stdout;
- `prefix` and `root` may also be fsspec URLs (`s3://bucket/...`).
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import time
from dataclasses import dataclass
from typing import Any

from recordio_core.building.listing import DEFAULT_EXTS

CLASS_MAP_SUFFIX = ".classes.json"
_AUTO = "\0auto"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "im2rec",
        help="drop-in for MXNet's im2rec.py: make .lst lists (--list) or pack them to .rec/.idx",
        description=(
            "Create an image list (--list) or make a record database by reading from image "
            "lists; the same arguments and files as `python -m mxnet.tools.im2rec`."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("prefix", help="prefix of input/output lst and rec files.")
    parser.add_argument("root", help="path to folder containing images.")
    _add_list_options(parser.add_argument_group("Options for creating image lists"))
    rgroup = parser.add_argument_group("Options for creating database")
    _add_pack_options(rgroup)
    _add_check_options(rgroup)
    parser.set_defaults(func=run)


def _add_list_options(cgroup: Any) -> None:
    """im2rec.py's options for --list (and recflow's --save-class-map)."""
    cgroup.add_argument(
        "--list",
        action="store_true",
        help="create image list(s) by traversing root and write <prefix>.lst; otherwise read "
        "<prefix>*.lst and create <prefix>*.rec/.idx",
    )
    cgroup.add_argument(
        "--exts", nargs="+", default=list(DEFAULT_EXTS), help="acceptable image extensions."
    )
    cgroup.add_argument("--chunks", type=int, default=1, help="number of chunks.")
    cgroup.add_argument(
        "--train-ratio", type=float, default=1.0, help="Ratio of images to use for training."
    )
    cgroup.add_argument(
        "--test-ratio", type=float, default=0.0, help="Ratio of images to use for testing."
    )
    cgroup.add_argument(
        "--recursive",
        action="store_true",
        help="walk subfolders and give each folder holding images its own label; otherwise "
        "only images in root, all with label 0.",
    )
    cgroup.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_false",
        help="keep the walk order instead of shuffling with seed 100.",
    )
    cgroup.add_argument(
        "--save-class-map",
        nargs="?",
        const=_AUTO,
        default=None,
        metavar="PATH",
        help=f"(recflow) also save the folder -> label map as JSON, by default to "
        f"<prefix>{CLASS_MAP_SUFFIX}.",
    )


def _add_pack_options(rgroup: Any) -> None:
    """im2rec.py's options for packing, with recflow's own marked "(recflow)"."""
    rgroup.add_argument(
        "--pass-through",
        action="store_true",
        help="store the image files' bytes untouched (no decode, resize or re-encode).",
    )
    rgroup.add_argument(
        "--resize",
        type=int,
        default=0,
        help="resize the shorter edge to this size (0: keep the original size).",
    )
    rgroup.add_argument(
        "--center-crop", action="store_true", help="crop the center square of each image."
    )
    rgroup.add_argument(
        "--quality",
        type=int,
        default=None,
        help="JPEG quality 0-100 (default 95) or PNG compression 0-9 (default 9).",
    )
    rgroup.add_argument(
        "--num-thread",
        type=int,
        default=1,
        help="worker threads for decoding/encoding; the output order is the list order.",
    )
    rgroup.add_argument(
        "--io-concurrency",
        type=int,
        default=64,
        help="(recflow) requests in flight when root is in an object store (s3://...): images "
        "are fetched many at once, whatever --num-thread is. Ignored for local folders.",
    )
    rgroup.add_argument(
        "--color",
        type=int,
        default=1,
        choices=[-1, 0, 1],
        help="1: colour (3 channels), 0: grayscale, -1: unchanged (keep alpha).",
    )
    rgroup.add_argument(
        "--encoding", type=str, default=".jpg", choices=[".jpg", ".png"], help="image encoding."
    )


def _add_check_options(rgroup: Any) -> None:
    """recflow's options for what is checked and refused while packing."""
    rgroup.add_argument(
        "--verify",
        choices=["none", "header", "decode"],
        default="header",
        help="(recflow) with --pass-through: 'none' stores any bytes like im2rec.py (e.g. "
        "non-image files), 'header' rejects files that are not images, 'decode' also decodes.",
    )
    rgroup.add_argument(
        "--on-decode-warning",
        choices=["keep", "reject"],
        default="keep",
        help="(recflow) a JPEG that decodes only with libjpeg warnings (corrupt but "
        "decodable): 'keep' packs it and lists it as a warning, 'reject' leaves it out.",
    )
    rgroup.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="(recflow) accept list paths outside root ('..', absolute paths, URLs); refused "
        "by default.",
    )
    rgroup.add_argument(
        "--pack-label",
        action="store_true",
        help="also pack all labels of multi-label .lst lines in the record header.",
    )


@dataclass(frozen=True)
class _Checked:
    exts: tuple[str, ...]
    quality: int


def _is_url(path: str) -> bool:
    return "://" in path


def _absolute(path: str) -> str:
    return path if _is_url(path) else os.path.abspath(path)


def check_args(args: argparse.Namespace) -> _Checked:
    """Validate every option before any work; ValueError says what is allowed."""
    from recordio_core.building.listing import normalize_exts

    exts = normalize_exts(args.exts)
    if args.chunks < 1:
        raise ValueError(f"--chunks must be >= 1, got {args.chunks}")
    for name, value in (("--train-ratio", args.train_ratio), ("--test-ratio", args.test_ratio)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if args.resize < 0:
        raise ValueError(f"--resize must be >= 0 (0 keeps the size), got {args.resize}")
    if args.num_thread < 1:
        raise ValueError(f"--num-thread must be >= 1, got {args.num_thread}")
    if not 1 <= args.io_concurrency <= 1024:
        raise ValueError(f"--io-concurrency must be between 1 and 1024, got {args.io_concurrency}")
    if args.color not in (-1, 0, 1):
        raise ValueError(f"--color must be -1, 0 or 1, got {args.color}")
    if args.encoding not in (".jpg", ".png"):
        raise ValueError(f"--encoding must be .jpg or .png, got {args.encoding!r}")
    if args.encoding == ".png":
        quality = 9 if args.quality is None else args.quality
        if not 0 <= quality <= 9:
            raise ValueError(f"--quality is the PNG compression level 0-9 with .png, got {quality}")
    else:
        quality = 95 if args.quality is None else args.quality
        if not 0 <= quality <= 100:
            raise ValueError(f"--quality is the JPEG quality 0-100 with .jpg, got {quality}")
    return _Checked(exts=exts, quality=quality)


def run(args: argparse.Namespace) -> int:
    checked = check_args(args)
    prefix = _absolute(args.prefix)
    root = _absolute(args.root)
    if args.list:
        return make_lists(args, prefix, root, checked)
    return pack_lists(args, prefix, root, checked)


def make_lists(args: argparse.Namespace, prefix: str, root: str, checked: _Checked) -> int:
    from recordio_core.building.listing import format_class_map, list_images, write_class_map
    from recordio_core.building.split import im2rec_split
    from recordio_core.format.lst import write_lst

    started = time.monotonic()
    listing = list_images(root, recursive=args.recursive, exts=checked.exts)
    if args.recursive:  # im2rec.py prints the class map
        sys.stdout.write(format_class_map(listing.class_map))
    for path, reason in listing.skipped:
        print(f"skipped {path!r}: {reason}", file=sys.stderr)
    lists = im2rec_split(
        listing.entries,
        chunks=args.chunks,
        train_ratio=args.train_ratio,
        test_ratio=args.test_ratio,
        shuffle=args.shuffle,
    )
    for split_list in lists:
        url = f"{prefix}{split_list.name}.lst"
        write_lst(url, split_list.entries)
        print(f"wrote {url} ({len(split_list.entries)} images)")
    if args.save_class_map is not None:
        url = f"{prefix}{CLASS_MAP_SUFFIX}" if args.save_class_map == _AUTO else args.save_class_map
        write_class_map(url, listing.class_map)
        print(f"wrote {url} ({len(listing.class_map)} classes)")
    elapsed = time.monotonic() - started
    print(
        f"listed {len(listing.entries)} images in {len(listing.class_map)} folder(s) under "
        f"{root} in {elapsed:.2f}s"
        + (f"; {len(listing.skipped)} skipped" if listing.skipped else "")
    )
    return 0


def find_lists(prefix: str) -> list[str]:
    """im2rec.py's choice of lists: files in the prefix's folder starting with it, ending .lst."""
    if not _is_url(prefix):
        working_dir = prefix if os.path.isdir(prefix) else os.path.dirname(prefix)
        if not os.path.isdir(working_dir):
            raise FileNotFoundError(f"folder {working_dir!r} of prefix {prefix!r} does not exist")
        names = (os.path.join(working_dir, n) for n in os.listdir(working_dir))
        return sorted(
            p for p in names if os.path.isfile(p) and p.startswith(prefix) and p.endswith(".lst")
        )
    from recordio_core.storage.fsio import get_fs

    fs, path = get_fs(prefix)
    working_dir = path if fs.isdir(path) else posixpath.dirname(path)
    infos = fs.ls(working_dir, detail=True)
    names = [i["name"] for i in infos if i.get("type") == "file"]
    return sorted(
        fs.unstrip_protocol(n) for n in names if n.startswith(path) and n.endswith(".lst")
    )


def pack_lists(args: argparse.Namespace, prefix: str, root: str, checked: _Checked) -> int:
    lists = find_lists(prefix)
    if not lists:
        print(f"Did not find any list file with prefix {prefix}", file=sys.stderr)
        return 1
    from recordio_core.building.pack import PackOptions
    from recordio_core.format.lst import read_lst
    from recordio_core.images.image import ImageOptions

    image = ImageOptions(
        resize=args.resize,
        center_crop=args.center_crop,
        color=args.color,
        encoding=args.encoding,
        quality=checked.quality,
        pass_through=args.pass_through,
        verify=args.verify,
    )
    # Read (and so check) every list before packing any of them.
    parsed = [(url, read_lst(url, allow_outside_root=args.allow_outside_root)) for url in lists]
    total_rejects = 0
    for url, entries in parsed:
        label_width = max((len(e.labels) for e in entries), default=1)
        opts = PackOptions(
            image=image,
            label_width=label_width,
            pack_label=args.pack_label,
            num_workers=args.num_thread,
            io_concurrency=args.io_concurrency,
            on_decode_warning=args.on_decode_warning,
        )
        print(f"Creating .rec file from {url} in {url_dir(url)}")
        result = pack_one(entries, root, url[: -len(".lst")], opts, label=posixpath.basename(url))
        total_rejects += len(result.rejects)
    if len(parsed) > 1:
        print(f"packed {len(parsed)} lists; {total_rejects} image(s) rejected in total")
    return 0


def url_dir(url: str) -> str:
    return posixpath.dirname(url) if _is_url(url) else os.path.dirname(url)


def pack_one(entries: list, root: str, out_prefix: str, opts: Any, *, label: str) -> Any:
    """Pack one list to `out_prefix.rec/.idx` without touching `out_prefix.lst`; print a summary."""
    from recordio_core.building.pack import pack_shard
    from recordio_core.building.progress import Progress

    with Progress(total=len(entries), label=label) as bar:
        # A command line may fork: worker processes beat threads by ~12% on 2 cores (GIL).
        result = pack_shard(
            entries, root, out_prefix, opts, progress=bar, write_lst=False, processes=True
        )
    print_summary(result, elapsed=bar.elapsed)
    return result


def print_summary(result: Any, *, elapsed: float) -> None:
    rate = result.records / elapsed if elapsed > 0 else 0.0
    print(
        f"wrote {result.rec} and {result.idx}: {result.records} records, {result.bytes} bytes, "
        f"{elapsed:.2f}s, {rate:.1f} img/s, {len(result.rejects)} rejected"
    )
    for reject in result.rejects:
        print(f"  rejected {reject.index} {reject.path}: {reject.reason}")
    for warning in result.warnings:
        print(f"  warning {warning.index} {warning.path}: {warning.reason}")
    groups = _duplicate_groups(result.digests)
    if groups:
        print(
            f"  {len(groups)} group(s) of byte-identical images "
            f"({sum(len(g) for g in groups)} images; `recflow build` reports them in detail)"
        )


def _duplicate_groups(digests: bytes) -> list[list[int]]:
    from recordio_core.building.quality import exact_groups

    return exact_groups([digests[i : i + 32] for i in range(0, len(digests), 32)])
