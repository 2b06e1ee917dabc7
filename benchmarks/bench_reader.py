"""Reader speed: `recordio_core.reading.reader` vs MXNet 1.9.1's `mx.io.ImageRecordIter`, one run.

Both read the same `.rec` (JPEG photos-like images), decode, resize the shorter side to 224,
centre-crop 224x224, and batch as float32 NCHW, with the same number of threads. Also prints
the raw record read rate (framing only, no decode) of both.

    .venv/bin/python benchmarks/bench_reader.py                       # 2000 images 500x375
    .venv/bin/python benchmarks/bench_reader.py --images 500 --threads 2 --repeat 3

MXNet runs under `$RECFLOW_MXNET_PYTHON` (default `.venv-mxnet/bin/python`); without it only
our numbers are printed. The two run alternately `--repeat` times (so both see the same
machine load), each round a warm-up epoch (which also brings the file into the page cache) and
a timed one; the best round counts. CPU time per image is printed too: other load hardly
changes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from recordio_core.format.framing import iter_records, open_source  # noqa: E402
from recordio_core.format.recordio import IRHeader, MXIndexedRecordIO, pack_img  # noqa: E402
from recordio_core.reading.reader import ImageRecordReader  # noqa: E402

MX_SCRIPT = r"""
import json, sys, time
import mxnet as mx
from mxnet import recordio
rec, threads, batch, repeat, resize, crop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
it = mx.io.ImageRecordIter(path_imgrec=rec, data_shape=(3, crop, crop), batch_size=batch,
                           resize=resize, preprocess_threads=threads, round_batch=False)
best = cpu = None
for epoch in range(repeat + 1):
    it.reset()
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for b in it:
        b.data[0].wait_to_read()
        n += batch - b.pad
    dt, dc = time.perf_counter() - t, time.process_time() - c
    if epoch and (best is None or dt < best):
        best, cpu = dt, dc
raw_best = None
for _ in range(max(repeat, 1)):
    r = recordio.MXRecordIO(rec, "r")
    t = time.perf_counter()
    m = nbytes = 0
    while True:
        s = r.read()
        if s is None:
            break
        m += 1
        nbytes += len(s)
    dt = time.perf_counter() - t
    r.close()
    raw_best = dt if raw_best is None else min(raw_best, dt)
print(json.dumps({"seconds": best, "cpu": cpu, "images": n, "raw_seconds": raw_best,
                  "raw_records": m, "raw_bytes": nbytes}))
"""


def photo_like(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth shapes plus grain: JPEG sizes and decode times near those of real photos."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(2, 12), rng.uniform(2, 12), rng.uniform(0, 6.3)
        img[..., c] = 128 + 70 * np.sin(xx / w * fx + ph) * np.cos(yy / h * fy)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_rec(path: Path, n: int, width: int, height: int) -> None:
    if path.exists() and path.with_suffix(".idx").exists():
        return
    rng = np.random.default_rng(0)
    bases = [photo_like(height, width, rng) for _ in range(16)]
    tmp = path.with_suffix(".tmp.rec")
    w = MXIndexedRecordIO(str(path.with_suffix(".tmp.idx")), str(tmp), "w")
    for i in range(n):
        img = np.roll(bases[i % 16], shift=i * 7, axis=1)
        if i % 3 == 1:  # some portrait images
            img = np.ascontiguousarray(img.transpose(1, 0, 2))
        w.write_idx(i, pack_img(IRHeader(0, float(i % 10), i, 0), img, quality=90))
    w.close()
    os.replace(path.with_suffix(".tmp.idx"), path.with_suffix(".idx"))
    os.replace(tmp, path)


def bench_ours(
    rec: str, threads: int, batch: int, repeat: int, resize: int, crop: int
) -> dict[str, Any]:
    best = cpu = None
    n = 0
    with ImageRecordReader(
        rec,
        data_shape=(3, crop, crop),
        batch_size=batch,
        resize=resize,
        preprocess_threads=threads,
        round_batch=False,
        use_index=False,
    ) as reader:
        for epoch in range(repeat + 1):
            t, c = time.perf_counter(), time.process_time()
            n = sum(len(b.label) for b in reader)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            if epoch and (best is None or dt < best):
                best, cpu = dt, dc
    raw_best = None
    m = nbytes = 0
    for _ in range(max(repeat, 1)):
        src = open_source(rec)
        t = time.perf_counter()
        m = nbytes = 0
        for _, payload in iter_records(src):
            m += 1
            nbytes += len(payload)
        dt = time.perf_counter() - t
        src.close()
        raw_best = dt if raw_best is None else min(raw_best, dt)
    return {
        "seconds": best,
        "cpu": cpu,
        "images": n,
        "raw_seconds": raw_best,
        "raw_records": m,
        "raw_bytes": nbytes,
    }


def _best(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """Best (lowest) times of two rounds, field by field."""
    if a is None:
        return b
    out = dict(b)
    if a["seconds"] < b["seconds"]:
        out["seconds"], out["cpu"] = a["seconds"], a["cpu"]
    out["raw_seconds"] = min(a["raw_seconds"], b["raw_seconds"])
    return out


def bench_mxnet(rec: str, threads: int, batch: int, repeat: int, resize: int, crop: int):
    python = os.environ.get("RECFLOW_MXNET_PYTHON") or str(REPO / ".venv-mxnet" / "bin" / "python")
    if not Path(python).is_file():
        print(f"(MXNet interpreter {python} not found: skipping MXNet)")
        return None
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MXNET_CPU_WORKER_NTHREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [
            python,
            "-c",
            MX_SCRIPT,
            rec,
            str(threads),
            str(batch),
            str(repeat),
            str(resize),
            str(crop),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit("MXNet run failed")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # MXNet 1.9.1 caps its decode threads (omp_get_num_procs() / 2 - 1, at least 1) and logs it
    used = re.search(r"use (\d+) threads for decoding", proc.stderr)
    out["decode_threads"] = int(used.group(1)) if used else None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resize", type=int, default=224)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--data", default="/tmp/recflow-bench-reader", help="where the .rec goes")
    args = p.parse_args()

    folder = Path(args.data)
    folder.mkdir(parents=True, exist_ok=True)
    rec = folder / f"bench-{args.images}-{args.width}x{args.height}.rec"
    make_rec(rec, args.images, args.width, args.height)
    size_mb = rec.stat().st_size / 1e6
    print(
        f"{rec}: {args.images} JPEGs {args.width}x{args.height} (and portrait), "
        f"{size_mb:.1f} MB; decode + resize {args.resize} + crop {args.crop} + batch "
        f"{args.batch_size}, {args.threads} threads, best of {args.repeat}"
    )
    settings = (str(rec), args.threads, args.batch_size, 1, args.resize, args.crop)
    ours: dict[str, Any] | None = None
    theirs: dict[str, Any] | None = None
    for _ in range(args.repeat):  # alternate, so both see the same machine load
        mx_round = bench_mxnet(*settings)
        if mx_round is not None:
            theirs = _best(theirs, mx_round)
        ours = _best(ours, bench_ours(*settings))
    assert ours is not None
    rows = [("recordio_core.reading.reader", ours)]
    if theirs:
        rows.append(("mx.io.ImageRecordIter", theirs))
    if theirs and theirs.get("decode_threads") not in (None, args.threads):
        print(
            f"  (MXNet asked for {args.threads} threads decoded with "
            f"{theirs['decode_threads']}: it caps them at omp_get_num_procs()/2 - 1, min 1)"
        )
    for name, r in rows:
        print(
            f"  {name:24s} {r['images'] / r['seconds']:8.1f} img/s "
            f"({1000 * r['cpu'] / r['images']:.2f} ms CPU/img)   "
            f"raw read {r['raw_records'] / r['raw_seconds']:9.0f} rec/s "
            f"{r['raw_bytes'] / r['raw_seconds'] / 1e6:7.1f} MB/s"
        )
    if theirs:
        ratio = (ours["images"] / ours["seconds"]) / (theirs["images"] / theirs["seconds"])
        raw = (ours["raw_records"] / ours["raw_seconds"]) / (
            theirs["raw_records"] / theirs["raw_seconds"]
        )
        print(f"  ratio ours/MXNet: pipeline {ratio:.2f}x (target >= 1.0x), raw read {raw:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
