"""Shuffled reading from S3 at real latency: block shuffle at 40 ms vs a sequential read at 0 ms.

A moto S3 server on loopback sits behind `tests/latency_proxy.py`, which delays the first byte
of every response (40 ms, an object store's time to first byte; 0 ms for the baseline). The
script packs its own datasets (photo-like JPEGs, 4 shards each, `.rec` + `.idx`), uploads them
straight to moto, and prints side by side in one run:

- a sequential epoch at 0 ms and a shuffled epoch (`shuffle_mode="block"`, the default for
  remote shards) at 40 ms: time, images/s, requests and the most requests in flight, and the
  ratio (target: shuffled at 40 ms <= 1.5x sequential at 0 ms);
- the peak Python heap (tracemalloc) during a shuffled epoch at two dataset sizes, which
  must not grow with the dataset (it is bounded by `shuffle_buffer` records plus
  `prefetch_blocks + 1` blocks);
- with `--global`, also the global permutation at 40 ms (one ranged GET per record: slow).

    .venv/bin/python benchmarks/bench_s3_read.py                    # 1800 and 5400 records
    .venv/bin/python benchmarks/bench_s3_read.py --records 1800 --big 7200 --repeat 3 --global

Both timed modes decode, resize (shorter side 128) and centre-crop 112x112 with the same
threads; they alternate for `--repeat` rounds (so both see the same machine load) and the
best epoch of each counts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_reader import photo_like  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402

from recordio_core.format.recordio import IRHeader, MXIndexedRecordIO, pack_img  # noqa: E402
from recordio_core.reading.reader import ImageRecordReader  # noqa: E402

MB = 1 << 20
SHARDS = 4


def make_dataset(folder: Path, n: int) -> int:
    """`SHARDS` shards of `n` records in all (170x128 JPEGs, as `--resize 128` leaves photos);
    returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bases = [photo_like(128, 170, rng) for _ in range(16)]
    total = 0
    for s in range(SHARDS):
        prefix = folder / f"train-{s:05d}-of-{SHARDS:05d}"
        w = MXIndexedRecordIO(str(prefix) + ".idx", str(prefix) + ".rec", "w")
        for i in range(s * n // SHARDS, (s + 1) * n // SHARDS):
            img = np.roll(bases[i % 16], shift=i * 7, axis=1)
            w.write_idx(i, pack_img(IRHeader(0, float(i % 10), i, 0), img, quality=90))
        w.close()
        total += os.path.getsize(str(prefix) + ".rec")
    return total


def start_moto() -> tuple[subprocess.Popen[bytes], str, int]:
    """A moto server in its own process (so neither its CPU nor its memory is counted here)."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ[k] = v
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc, "127.0.0.1", port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start within 30 s")


def upload(folder: Path, endpoint: str, bucket: str, prefix: str) -> None:
    """Put the shards straight into moto (not through the proxy)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
    fs.put(str(folder) + "/", f"{bucket}/{prefix}/", recursive=True)


def epoch(reader: ImageRecordReader, n_epoch: int) -> tuple[float, int]:
    t = time.perf_counter()
    n = sum(len(b.label) - b.pad for b in reader.epoch(n_epoch))
    return time.perf_counter() - t, n


def open_reader(url: str, proxy: LatencyProxy, threads: int, **kw: Any) -> ImageRecordReader:
    so = {"endpoint_url": proxy.url, "key": "testing", "secret": "testing"}
    return ImageRecordReader(
        url,
        storage_options=so,
        data_shape=(3, 112, 112),
        batch_size=64,
        resize=128,
        preprocess_threads=threads,
        round_batch=False,
        **kw,
    )


def timed(
    modes: list[tuple[float, dict[str, Any]]],
    url: str,
    proxy: LatencyProxy,
    repeat: int,
    threads: int,
) -> list[dict[str, Any]]:
    """Time an epoch of each `(latency, reader options)` in turn, `repeat` rounds (so all see
    the same machine load); the best epoch of each counts, with its proxy counters."""
    readers = [open_reader(url, proxy, threads, **kw) for _, kw in modes]
    results: list[dict[str, Any]] = [{} for _ in modes]
    try:
        for e in range(repeat):
            for (latency, _), reader, res in zip(modes, readers, results, strict=True):
                proxy.latency = latency
                proxy.reset_stats()
                dt, images = epoch(reader, e)
                if not res or dt < res["seconds"]:
                    res.update(seconds=dt, images=images, **proxy.stats())
        for (_, kw), reader, res in zip(modes, readers, results, strict=True):
            res["mode"] = reader.shuffle_mode if kw.get("shuffle") else "sequential"
            res["blocks"] = len(reader.blocks) if reader.blocks is not None else None
    finally:
        for reader in readers:
            reader.close()
    return results


def peak_memory(url: str, proxy: LatencyProxy, threads: int) -> tuple[int, int]:
    """Peak traced heap above the start of a shuffled epoch at 40 ms, and the records read."""
    proxy.latency = 0.040
    with open_reader(url, proxy, threads, shuffle=True) as reader:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        _, n = epoch(reader, 0)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    return peak, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1800, help="records of the timed dataset")
    ap.add_argument("--big", type=int, default=5400, help="records of the larger dataset")
    ap.add_argument("--repeat", type=int, default=3, help="timed epochs per mode (best counts)")
    ap.add_argument("--threads", type=int, default=2, help="preprocess_threads")
    ap.add_argument("--latency", type=float, default=0.040, help="seconds before first byte")
    ap.add_argument("--global", dest="with_global", action="store_true",
                    help="also time the global permutation at the latency (slow)")  # fmt: skip
    args = ap.parse_args(argv)
    # the proxy drops pooled connections when it stops; asyncio would log each one
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    server, host, port = start_moto()
    endpoint = f"http://{host}:{port}"
    bucket = "bench-read"
    sizes = {}
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        with tempfile.TemporaryDirectory(prefix="bench-s3-read-") as tmp:
            for i, n in enumerate((args.records, args.big)):
                t = time.perf_counter()
                sizes[n] = make_dataset(Path(tmp) / f"ds{i}", n)
                upload(Path(tmp) / f"ds{i}", endpoint, bucket, f"ds{i}")
                print(
                    f"packed and uploaded {n} records ({sizes[n] / MB:.1f} MB) "
                    f"in {time.perf_counter() - t:.1f} s",
                    flush=True,
                )
            small = f"s3://{bucket}/ds0/*.rec"
            big = f"s3://{bucket}/ds1/*.rec"
            with LatencyProxy(host, port, latency=0.0) as proxy:
                modes = [(0.0, {}), (args.latency, {"shuffle": True})]
                names = ["sequential", "shuffled"]
                rows = list(
                    zip(
                        names,
                        [lat for lat, _ in modes],
                        timed(modes, small, proxy, args.repeat, args.threads),
                        strict=True,
                    )
                )
                if args.with_global:
                    glob = (args.latency, {"shuffle": True, "shuffle_mode": "global"})
                    rows += [("shuffled", args.latency, timed([glob], small, proxy, 1, 2)[0])]
                mem = {n: peak_memory(url, proxy, args.threads) for n, url in
                       ((args.records, small), (args.big, big))}  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)

    print()
    print(f"{'read':<12}{'mode':<12}{'latency':>9}{'seconds':>9}{'img/s':>8}"
          f"{'requests':>10}{'blocks':>8}{'in flight':>11}")  # fmt: skip
    for name, lat, r in rows:
        print(
            f"{name:<12}{r['mode']:<12}{lat * 1000:>7.0f}ms{r['seconds']:>9.2f}"
            f"{r['images'] / r['seconds']:>8.0f}{r['requests']:>10}"
            f"{r['blocks'] if r['blocks'] is not None else '-':>8}{r['max_in_flight']:>11}"
        )
    seq, shuf = rows[0][2]["seconds"], rows[1][2]["seconds"]
    ratio = shuf / seq
    print(
        f"\nshuffled at {args.latency * 1000:.0f} ms / sequential at 0 ms: {ratio:.2f}x "
        f"(target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})"
    )
    print("\npeak traced heap during a shuffled epoch at 40 ms (block mode, defaults):")
    for n, (peak, got) in mem.items():
        print(f"  {n:>6} records ({sizes[n] / MB:6.1f} MB of shards): {peak / MB:6.1f} MB "
              f"({got} records read)")  # fmt: skip
    (p_small, _), (p_big, _) = mem[args.records], mem[args.big]
    print(
        f"  ratio big/small: {p_big / p_small:.2f} for a dataset "
        f"{sizes[args.big] / sizes[args.records]:.1f}x larger"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
