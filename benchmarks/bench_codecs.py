"""Per image kind, on one core: our `transform_image` against im2rec.py's own image calls.

    .venv/bin/python benchmarks/bench_codecs.py                 # the bench_im2rec corpus
    .venv/bin/python benchmarks/bench_codecs.py --rounds 3

`bench_im2rec.py` times the whole tools; this looks inside them, in CPU time per image on
one core, with the files already in memory (`--resize 256 --quality 95`, colour):

- **ours**: `recordio_core.images.image.transform_image`, the work a packing worker does per image;
  the time spent inside the codec calls (libjpeg-turbo through simplejpeg, OpenCV's
  imdecode/resize/imencode/cvtColor, Pillow's decode and colour conversion) is counted apart,
  so "Python" is everything of ours around them;
- **im2rec.py's calls**: what `im2rec.py --resize 256 --quality 95` does to each image, run
  in MXNet's venv with its OpenCV: `cv2.imdecode(IMREAD_COLOR)` (its `cv2.imread`),
  the shorter-side `cv2.resize` and `cv2.imencode(.jpg, 95)`; its queues, pickling and
  record writing are left out, so this is the most its per-image work can shrink to.

Kinds: the corpus's small colour JPEGs, large JPEGs (800-2000 px), gray and CMYK JPEGs and
PNGs, plus progressive JPEGs (the first 150 small JPEGs re-saved progressive, cached beside
the corpus). Rounds alternate which side goes first. The last lines put the two together:
our codec calls alone against im2rec.py's calls, i.e. the highest CPU ratio a re-encode
with MXNet's pixels can reach on this corpus however little Python we run.

`--opencv-ab` instead times `transform_image` with OpenCV's JPEG encoder and PNG decoder
against Pillow's (what the code did before 2026-12-03), alternating per image, and counts
outputs that differ (there must be none).

`--candidates [NAME ...]` instead times `bench_im2rec.CANDIDATES` (codec configurations) in
one process, rotating per image which goes first, and compares each output's pixels with
what im2rec.py's image calls make of the same file (README, "Codec paths against MXNet's
pixels").

Measured 2026-12-03 on the 2-core machine (`--rounds 2`, after gray JPEGs took the fast path;
CPU ms per image, ours / im2rec.py's calls): small JPEGs 0.90 / 2.83 (3.14x), large JPEGs
3.71 / 13.35 (3.60x), gray 1.25 / 3.45 (2.76x; 1.83 before), CMYK 4.78 / 8.17 (1.71x), PNG
7.23 / 8.04 (1.11x), progressive 1.72 / 3.63 (2.11x); the corpus 1.68 / 4.49 (2.67x), of which
our codec calls 1.62 ms and our Python 0.06 ms, so the codecs-only ceiling is 2.77x of
im2rec.py's calls. `--opencv-ab` (five rounds in two runs): 1.65-1.98 ms against 1.84-2.19
ms per image (0.89-0.91), 0 of 2,000 outputs differ.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_im2rec import (  # noqa: E402
    CANDIDATES,
    PixelDiff,
    apply_candidate,
    ensure_corpus,
    mxnet_python,
    transform_ab,
)

RESIZE, QUALITY = 256, 95
KINDS = ("jpeg", "large", "gray", "cmyk", "png", "progressive")

# im2rec.py's image work (tools/im2rec.py, image_encode with --resize and --quality), timed
# per kind in MXNet's venv. Input: JSON {kind: [paths]} on stdin; output: {kind: seconds}.
_THEIRS = r"""
import json, sys, time
import cv2, numpy as np
kinds, rounds = json.load(sys.stdin), int(sys.argv[1])
datas = {k: [open(p, "rb").read() for p in ps] for k, ps in kinds.items()}
out = {k: [] for k in kinds}
for _ in range(rounds):
    for k, ds in datas.items():
        t = time.process_time()
        for d in ds:
            img = cv2.imdecode(np.frombuffer(d, np.uint8), 1)
            if img.shape[0] > img.shape[1]:
                newsize = (__RESIZE__, img.shape[0] * __RESIZE__ // img.shape[1])
            else:
                newsize = (img.shape[1] * __RESIZE__ // img.shape[0], __RESIZE__)
            img = cv2.resize(img, newsize)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, __QUALITY__])
        out[k].append(time.process_time() - t)
print(json.dumps({k: min(v) for k, v in out.items()}))
""".replace("__RESIZE__", str(RESIZE)).replace("__QUALITY__", str(QUALITY))


# im2rec.py's re-encode of each file (the calls above), written to stdout as length-prefixed
# JPEG bytes in the order of the JSON list of paths on stdin.
_THEIRS_BYTES = r"""
import json, struct, sys
import cv2, numpy as np
out = sys.stdout.buffer
for path in json.load(sys.stdin):
    img = cv2.imdecode(np.fromfile(path, np.uint8), 1)
    if img.shape[0] > img.shape[1]:
        newsize = (__RESIZE__, img.shape[0] * __RESIZE__ // img.shape[1])
    else:
        newsize = (img.shape[1] * __RESIZE__ // img.shape[0], __RESIZE__)
    img = cv2.resize(img, newsize)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, __QUALITY__])[1].tobytes()
    out.write(struct.pack("<I", len(data)) + data)
""".replace("__RESIZE__", str(RESIZE)).replace("__QUALITY__", str(QUALITY))


def classify(root: Path, paths: list[str]) -> dict[str, list[str]]:
    """The corpus's files by kind (what the header says, not the name)."""
    from PIL import Image

    kinds: dict[str, list[str]] = {k: [] for k in KINDS}
    for rel in paths:
        path = root / rel
        with Image.open(path) as im:
            if im.format == "PNG":
                kind = "png"
            elif im.mode == "L":
                kind = "gray"
            elif im.mode == "CMYK":
                kind = "cmyk"
            else:
                kind = "large" if max(im.size) >= 800 else "jpeg"
        kinds[kind].append(str(path))
    return kinds


def progressive_copies(workdir: Path, jpegs: list[str], n: int = 150) -> list[str]:
    """`n` small JPEGs of the corpus re-saved as progressive JPEGs (q90), made once."""
    from PIL import Image

    out_dir = workdir / "progressive"
    out_dir.mkdir(exist_ok=True)
    out = []
    for i, src in enumerate(jpegs[:n]):
        dst = out_dir / f"p{i:04d}.jpg"
        if not dst.exists():
            with Image.open(src) as im:
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=90, progressive=True)
            dst.write_bytes(buf.getvalue())
        out.append(str(dst))
    return out


class CodecClock:
    """Wraps the codec calls `recordio_core.images.image`'s transform makes and sums their CPU
    time (patched on the modules every caller looks them up on: `image_opencv`, `image_decode`,
    `jpeg`)."""

    def __init__(self) -> None:
        self.spent = 0.0

    def timed(self, fn: Any) -> Any:
        clock = time.process_time

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent += clock() - t

        return wrapper

    def install(self) -> None:
        import types

        from recordio_core.images import image_decode, image_opencv, jpeg

        cv2 = image_opencv._opencv()
        if cv2 is not None:
            proxy = types.SimpleNamespace(**{k: getattr(cv2, k) for k in dir(cv2)})
            for name in ("imdecode", "imencode", "resize", "cvtColor"):
                setattr(proxy, name, self.timed(getattr(cv2, name)))
            image_opencv._opencv = lambda: proxy
        jpeg._strict = self.timed(jpeg._strict)
        image_decode._load = self.timed(image_decode._load)
        image_decode._to_mode = self.timed(image_decode._to_mode)


def ours(kinds: dict[str, list[bytes]], clock: CodecClock) -> dict[str, tuple[float, float]]:
    """{kind: (CPU seconds in transform_image, of which in codec calls)}."""
    from recordio_core.images.image import ImageOptions, transform_image

    opts = ImageOptions(resize=RESIZE, quality=QUALITY)
    out = {}
    for kind, datas in kinds.items():
        clock.spent = 0.0
        t = time.process_time()
        for data in datas:
            transform_image(data, opts)
        out[kind] = (time.process_time() - t, clock.spent)
    return out


def theirs(kinds: dict[str, list[str]]) -> dict[str, float]:
    """{kind: CPU seconds of im2rec.py's image calls}, one round, in MXNet's venv."""
    proc = subprocess.run(
        [mxnet_python(), "-c", _THEIRS, "1"],
        input=json.dumps(kinds),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def opencv_ab(datas: list[bytes], rounds: int) -> None:
    """`bench_im2rec.transform_ab` with OpenCV's JPEG encoder and PNG decoder (the default)
    against Pillow's; the outputs must not differ."""
    from recordio_core.images import image_encode, image_fast, image_opencv

    if image_opencv._opencv() is None:
        raise SystemExit("--opencv-ab needs OpenCV (the `opencv` extra)")
    encode, png = image_encode._encode_jpeg_array, image_fast._fast_png

    def opencv() -> None:
        image_encode._encode_jpeg_array, image_fast._fast_png = encode, png

    def pillow() -> None:
        image_encode._encode_jpeg_array = lambda arr, quality: None
        image_fast._fast_png = lambda *args: None

    transform_ab(datas, rounds, {"OpenCV": opencv, "Pillow": pillow}, opencv)


def im2rec_outputs(paths: list[str]) -> list[bytes]:
    """What im2rec.py's image calls make of each file (`_THEIRS_BYTES`, MXNet's venv)."""
    import struct

    proc = subprocess.run(
        [mxnet_python(), "-c", _THEIRS_BYTES],
        input=json.dumps(paths).encode(),
        capture_output=True,
        check=True,
    )
    out, pos, data = [], 0, proc.stdout
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out


def candidates_ab(paths: list[str], names: list[str], rounds: int) -> None:
    """Each codec candidate (`bench_im2rec.CANDIDATES`) in-process on one core, rotating per
    image which goes first, so machine load falls on all alike: CPU ms per image of
    `transform_image` against the first candidate and against im2rec.py's image calls, and
    (first round) each output's decoded pixels against im2rec.py's, decoded the same way."""
    import math

    import numpy as np

    from recordio_core.images import image_encode, image_fast, jpeg
    from recordio_core.images.image import ImageOptions, decode_array, transform_image

    datas = [Path(p).read_bytes() for p in paths]
    theirs_out = im2rec_outputs(paths)
    their_cpu = theirs({"corpus": paths})["corpus"] / len(paths)
    # what apply_candidate patches
    attrs = [(image_encode, "_encode_jpeg_array"), (image_fast, "_fast_jpeg"), (jpeg, "_strict")]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr in attrs]
    setups = {}
    for name in names:
        restore = apply_candidate(name)
        opts = ImageOptions(resize=RESIZE, quality=QUALITY)  # the candidate's reducing_gap
        setups[name] = (opts, [(owner, attr, getattr(owner, attr)) for owner, attr in attrs])
        restore()
    clock = time.process_time
    spent = {name: [] for name in names}
    stats: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    sizes = dict.fromkeys(names, 0)
    for rnd in range(rounds):
        totals = dict.fromkeys(names, 0.0)
        for i, data in enumerate(datas):
            ref = decode_array(theirs_out[i], iscolor=-1).astype(np.int16) if rnd == 0 else None
            k = i % len(names)
            for name in names[k:] + names[:k]:
                opts, patches = setups[name]
                for owner, attr, value in patches:
                    setattr(owner, attr, value)
                t = clock()
                out = transform_image(data, opts)
                totals[name] += clock() - t
                if ref is not None:
                    mine = decode_array(out, iscolor=-1).astype(np.int16)
                    if mine.shape != ref.shape:
                        sizes[name] += 1
                        continue
                    diff = np.abs(mine - ref)
                    mse = float(np.square(diff, dtype=np.float64).mean())
                    psnr = 10 * math.log10(255**2 / mse) if mse else math.inf
                    stats[name].append((float(diff.mean()), psnr))
        for owner, attr, value in originals:
            setattr(owner, attr, value)
        for name in names:
            spent[name].append(totals[name] / len(datas))
        print(f"round {rnd + 1} done", flush=True)

    base = statistics.median(spent[names[0]])
    print(
        f"\n== codec candidates, one core, in-process, CPU per image of transform_image "
        f"(median of {rounds} rounds) and pixels against im2rec.py's (its image calls "
        f"{their_cpu * 1e3:.2f} ms per image); criterion: mean <= 1.0, worst image <= 3.0"
    )
    print(
        f"{'candidate':36s} {'CPU ms':>7s} {'vs 1st':>6s} {'im2rec.py x':>11s}"
        f" {'mean':>5s} {'worst':>6s} {'image':>6s} {'worst dB':>8s} {'min dB':>6s}  criterion"
    )
    for name in names:
        cpu = statistics.median(spent[name])
        means = [m for m, _ in stats[name]]
        worst_at = max(range(len(means)), key=means.__getitem__)
        diff = PixelDiff(
            len(datas),
            True,
            sizes[name],
            statistics.mean(means),
            means[worst_at],
            worst_at,
            stats[name][worst_at][1],
            min(p for _, p in stats[name]),
        )
        print(
            f"{name:36s} {cpu * 1e3:7.3f} {cpu / base:6.3f} {their_cpu / cpu:10.2f}x"
            f" {diff.mean:5.2f} {diff.worst:6.2f} {'#' + str(worst_at):>6s}"
            f" {diff.worst_psnr:8.1f} {diff.min_psnr:6.1f}  "
            + ("meets" if diff.meets() else "fails"),
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images in the corpus (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the fastest counts")
    ap.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "recflow-bench"),
        help="corpus cache (default: $TMPDIR/recflow-bench, shared with bench_im2rec.py)",
    )
    ap.add_argument(
        "--opencv-ab",
        action="store_true",
        help="compare OpenCV's JPEG encoder and PNG decoder with Pillow's in-process instead",
    )
    ap.add_argument(
        "--candidates",
        nargs="*",
        metavar="NAME",
        help="time bench_im2rec's codec candidates (all when none are named) per image "
        "in-process instead, with their pixels against im2rec.py's",
    )
    args = ap.parse_args(argv)
    if args.candidates is not None:
        from recordio_core.format.lst import read_lst

        unknown = [n for n in args.candidates if n not in CANDIDATES]
        if unknown:
            ap.error(f"unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
        lst = ensure_corpus(Path(args.workdir), args.n, args.seed)
        root = lst.with_suffix("")
        paths = [str(root / e.path) for e in read_lst(str(lst))]
        candidates_ab(paths, args.candidates or list(CANDIDATES), args.rounds)
        return 0
    if args.opencv_ab:
        from recordio_core.format.lst import read_lst

        lst = ensure_corpus(Path(args.workdir), args.n, args.seed)
        root = lst.with_suffix("")
        opencv_ab([(root / e.path).read_bytes() for e in read_lst(str(lst))], args.rounds)
        return 0
    if not Path(mxnet_python()).is_file():
        raise SystemExit(f"MXNet interpreter not found at {mxnet_python()} (make mxnet-venv)")

    from recordio_core.format.lst import read_lst
    from recordio_core.images.image_opencv import _opencv

    if _opencv() is None:
        print("note: OpenCV is not installed here (the `opencv` extra): ours runs Pillow-only")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lst = ensure_corpus(workdir, args.n, args.seed)
    root = lst.with_suffix("")
    paths = classify(root, [e.path for e in read_lst(str(lst))])
    paths["progressive"] = progressive_copies(workdir, paths["jpeg"])
    paths = {k: v for k, v in paths.items() if v}
    datas = {k: [Path(p).read_bytes() for p in v] for k, v in paths.items()}
    clock = CodecClock()
    clock.install()

    best_ours: dict[str, tuple[float, float]] = {}
    best_theirs: dict[str, float] = {}
    for rnd in range(args.rounds):
        for side in ("ours", "theirs") if rnd % 2 == 0 else ("theirs", "ours"):
            if side == "ours":
                for kind, got in ours(datas, clock).items():
                    if kind not in best_ours or got[0] < best_ours[kind][0]:
                        best_ours[kind] = got
            else:
                for kind, got in theirs(paths).items():
                    best_theirs[kind] = min(got, best_theirs.get(kind, got))
        print(f"round {rnd + 1} done", flush=True)

    print(f"\n== CPU ms per image, one core, fastest of {args.rounds} rounds")
    print(
        f"{'kind':12s} {'images':>6s} {'ours':>7s} {'codecs':>7s} {'Python':>7s}"
        f" {'im2rec.py':>9s} {'ratio':>6s} {'codecs-only':>11s}"
    )
    totals = [0.0, 0.0, 0.0, 0]
    for kind in paths:
        n = len(paths[kind])
        total, codecs = best_ours[kind]
        their = best_theirs[kind]
        if kind != "progressive":  # the corpus proper; progressive copies are extra
            totals = [totals[0] + total, totals[1] + codecs, totals[2] + their, totals[3] + n]
        print(
            f"{kind:12s} {n:6d} {total / n * 1e3:7.2f} {codecs / n * 1e3:7.2f}"
            f" {(total - codecs) / n * 1e3:7.2f} {their / n * 1e3:9.2f}"
            f" {their / total:5.2f}x {their / codecs:10.2f}x"
        )
    total, codecs, their, n = totals
    print(
        f"{'corpus':12s} {n:6d} {total / n * 1e3:7.2f} {codecs / n * 1e3:7.2f}"
        f" {(total - codecs) / n * 1e3:7.2f} {their / n * 1e3:9.2f}"
        f" {their / total:5.2f}x {their / codecs:10.2f}x"
    )
    print(
        f"\nOn this corpus our codec calls alone take {codecs / n * 1e3:.2f} ms per image and"
        f" im2rec.py's image calls {their / n * 1e3:.2f} ms: no re-encode with MXNet's pixels"
        f" can use less than 1/{their / codecs:.2f} of im2rec.py's per-image CPU here, before"
        " im2rec.py's own queues and writes (bench_im2rec.py measures the whole tools)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
