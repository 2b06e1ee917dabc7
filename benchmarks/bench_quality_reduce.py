"""How much memory one streaming find-duplicates task takes, by the images of its bucket range.

    .venv/bin/python benchmarks/bench_quality_reduce.py                  # 250k and 1 M images
    .venv/bin/python benchmarks/bench_quality_reduce.py --images 1500000 # one task's share at 100 M

Writes the quality pieces (`stream_quality.write_quality_pieces`) of N synthetic images (sha256
and a 64-bit difference hash each, one in 20 a byte-identical copy, one in 20 a near copy) as
8 pack groups would, then runs `reduce_quality` over the whole bucket range in a fresh child
process, twice side by side: reading the range at once (`chunk_bytes` past the range's size,
as every task read it before) and a chunk of `CHUNK_BYTES` at a time (what it does now). Prints
each child's peak RSS growth over its start (`ru_maxrss`), bytes per image, seconds, and the
ratio at each size; the groups found must be equal. The near-duplicate distance is 4 (the
near pieces hold each image 5 times).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DISTANCE = 4
GROUPS = 8


def _write(work: Path, n: int) -> None:
    from recordio_core.building.quality import Seen
    from recordio_core.building.stream_quality import write_quality_pieces

    rng = random.Random(n)
    per = -(-n // GROUPS)
    prev: list[Seen] = []
    pieces = []
    for g in range(GROUPS):
        seen = []
        for i in range(g * per, min(n, (g + 1) * per)):
            digest, dhash = hashlib.sha256(str(i).encode()).digest(), rng.getrandbits(64)
            if prev and i % 20 == 0:
                digest, dhash = rng.choice(prev).sha256, rng.choice(prev).dhash
            elif prev and i % 20 == 10:
                dhash = rng.choice(prev).dhash ^ (1 << rng.randrange(64))
            s = Seen(f"class{i % 1000:04d}/{i:09d}.jpg", (float(i % 1000),), "train", digest, dhash)
            seen.append(s)
            if len(prev) < 10_000:
                prev.append(s)
        pieces.append(write_quality_pieces(str(work / "staging"), g, seen, DISTANCE))
    import pickle

    (work / "pieces.pkl").write_bytes(pickle.dumps(pieces))


def _child(work: Path, chunk_bytes: int) -> None:
    import pickle

    from recordio_core.building.stream_quality import bucket_ranges, reduce_quality

    pieces = pickle.loads((work / "pieces.pkl").read_bytes())
    ((exact, near),) = bucket_ranges(pieces, 1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    groups, pairs = reduce_quality(exact, near, DISTANCE, chunk_bytes=chunk_bytes)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    found = sorted(g.paths for g in groups)
    print(
        json.dumps(
            {
                "growth_kb": peak - base,
                "seconds": seconds,
                "groups": len(groups),
                "pairs": len(pairs),
                "digest": hashlib.sha256(repr(found).encode()).hexdigest(),
            }
        )
    )


def _run(work: Path, chunk_bytes: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(work), "--chunk-bytes", str(chunk_bytes)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from recordio_core.building.stream_quality import CHUNK_BYTES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--chunk-bytes", type=int, default=CHUNK_BYTES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(Path(args.child), args.chunk_bytes)
        return 0
    results = {}
    for n in args.images:
        work = Path(tempfile.mkdtemp(prefix="recflow-bench-quality-"))
        try:
            _write(work, n)
            size = sum(p.stat().st_size for p in (work / "staging").rglob("*.tsv"))
            whole = _run(work, 1 << 40)
            chunked = _run(work, CHUNK_BYTES)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if whole["digest"] != chunked["digest"] or whole["groups"] != chunked["groups"]:
            print(f"{n:,} images: the chunked reduction found other groups", file=sys.stderr)
            return 1
        results[n] = {"pieces_bytes": size, "whole": whole, "chunked": chunked}
        print(f"{n:,} images ({size / 2**20:.0f} MiB of quality pieces, 1 task):")
        for name, r in (("whole range", whole), (f"chunks of {CHUNK_BYTES >> 20} MiB", chunked)):
            print(
                f"  {name:18} peak RSS +{r['growth_kb'] / 1024:7.0f} MiB "
                f"({r['growth_kb'] * 1024 / n:6.0f} B/image) {r['seconds']:6.1f} s "
                f"{r['groups']} groups, {r['pairs']} near pairs"
            )
        print(f"  memory chunked / whole: {chunked['growth_kb'] / max(1, whole['growth_kb']):.2f}x")
    print("BENCH_QUALITY_REDUCE " + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
