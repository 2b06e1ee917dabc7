"""Read/write speed of our `MXIndexedRecordIO` against MXNet 1.9.1's, in one run.

    .venv/bin/python benchmarks/bench_recordio.py            # 20,000 records, 2-100 KB
    .venv/bin/python benchmarks/bench_recordio.py --records 2000 --rounds 2   # quick look

Writes ~20,000 records of random sizes (2-100 KB, ~50 KB on average) with both libraries and
checks the two `.rec`/`.idx` pairs are byte-identical; then reads the file sequentially
(`read()` until None) and in a random key order (`read_idx(k)`) with both, alternating who goes
first in each round. MXNet runs in a long-lived subprocess under the oracle interpreter
(`$RECFLOW_MXNET_PYTHON`, default `.venv-mxnet/bin/python`) that times its own loops and answers
in JSON, so its import and start-up are not counted. Prints records/s (best and median over the
rounds) and the ratio ours/MXNet. The file is read from the page cache (it was just written):
this measures per-record overhead, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from recordio_core.format.recordio import MXIndexedRecordIO  # noqa: E402

# The MXNet side: same loops, driven by commands on stdin, one JSON answer per line.
MXNET_WORKER = r"""
import json, sys, time
from mxnet import recordio

workdir = sys.argv[1]
spec = json.load(open(workdir + "/spec.json"))
pool = open(workdir + "/pool.bin", "rb").read()
order = spec["order"]

def answer(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

answer(ready=True)
for line in sys.stdin:
    cmd = line.split()
    op = cmd[0]
    if op == "quit":
        break
    if op == "write":
        idx, rec = cmd[1], cmd[2]
        t0 = time.perf_counter()
        w = recordio.MXIndexedRecordIO(idx, rec, "w")
        for key, (start, size) in enumerate(spec["records"]):
            w.write_idx(key, pool[start:start + size])
        w.close()
        answer(op=op, seconds=time.perf_counter() - t0, records=len(spec["records"]))
        continue
    idx, rec = cmd[1], cmd[2]
    r = recordio.MXIndexedRecordIO(idx, rec, "r")
    n = total = 0
    if op == "seq":
        t0 = time.perf_counter()
        read = r.read
        while True:
            buf = read()
            if buf is None:
                break
            n += 1
            total += len(buf)
    else:
        t0 = time.perf_counter()
        read_idx = r.read_idx
        for key in order:
            total += len(read_idx(key))
            n += 1
    dt = time.perf_counter() - t0
    r.close()
    answer(op=op, seconds=dt, records=n, bytes=total)
"""


class MXNetWorker:
    """The MXNet side of the benchmark, in the oracle interpreter."""

    def __init__(self, python: str, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [python, "-c", MXNET_WORKER, str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reply()

    def _reply(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"MXNet worker died (exit code {self.proc.wait()})")
        return json.loads(line)

    def run(self, *cmd: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(cmd) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.run_quit()

    def run_quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def ours_write(spec: dict, pool: bytes, idx: str, rec: str) -> dict:
    t0 = time.perf_counter()
    w = MXIndexedRecordIO(idx, rec, "w")
    for key, (start, size) in enumerate(spec["records"]):
        w.write_idx(key, pool[start : start + size])
    w.close()
    return {"seconds": time.perf_counter() - t0, "records": len(spec["records"])}


def ours_read(op: str, idx: str, rec: str, order: list[int]) -> dict:
    r = MXIndexedRecordIO(idx, rec, "r")
    n = total = 0
    if op == "seq":
        t0 = time.perf_counter()
        read = r.read
        while True:
            buf = read()
            if buf is None:
                break
            n += 1
            total += len(buf)
    else:
        t0 = time.perf_counter()
        read_idx = r.read_idx
        for key in order:
            total += len(read_idx(key))
            n += 1
    dt = time.perf_counter() - t0
    r.close()
    return {"seconds": dt, "records": n, "bytes": total}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--min-kb", type=float, default=2)
    ap.add_argument("--max-kb", type=float, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument(
        "--mxnet-python",
        default=os.environ.get("RECFLOW_MXNET_PYTHON") or str(REPO_ROOT / ".venv-mxnet/bin/python"),
    )
    args = ap.parse_args(argv)

    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="bench-recordio-")
    workdir = Path(args.dir or tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rng = random.Random(args.seed)
        lo, hi = int(args.min_kb * 1024), int(args.max_kb * 1024)
        pool_size = 4 << 20
        pool = rng.randbytes(pool_size + hi)
        records = []
        for _ in range(args.records):
            size = rng.randint(lo, hi)
            records.append((rng.randrange(0, pool_size) & ~3, size))
        order = list(range(args.records))
        random.Random(args.seed + 1).shuffle(order)
        (workdir / "pool.bin").write_bytes(pool)
        spec = {"records": records, "order": order}
        (workdir / "spec.json").write_text(json.dumps(spec))
        avg_kb = sum(s for _, s in records) / len(records) / 1024
        print(
            f"{args.records} records, {args.min_kb:g}-{args.max_kb:g} KB (avg {avg_kb:.1f} KB), "
            f"{args.rounds} rounds; MXNet: {args.mxnet_python}"
        )

        mx = MXNetWorker(args.mxnet_python, workdir)
        ours_idx, ours_rec = str(workdir / "ours.idx"), str(workdir / "ours.rec")
        mx_idx, mx_rec = str(workdir / "mx.idx"), str(workdir / "mx.rec")
        w_ours = ours_write(spec, pool, ours_idx, ours_rec)
        w_mx = mx.run("write", mx_idx, mx_rec)
        same = sha256(Path(ours_rec)) == sha256(Path(mx_rec)) and (
            Path(ours_idx).read_bytes() == Path(mx_idx).read_bytes()
        )
        size_mb = os.path.getsize(ours_rec) / 1e6
        print(f".rec {size_mb:.0f} MB; ours and MXNet's files byte-identical: {same}")
        if not same:
            print("ERROR: the files differ", file=sys.stderr)
            return 1
        os.unlink(mx_rec)
        rates: dict[tuple[str, str], list[float]] = {}
        rates[("write", "ours")] = [w_ours["records"] / w_ours["seconds"]]
        rates[("write", "mxnet")] = [w_mx["records"] / w_mx["seconds"]]

        # warm the page cache and both code paths once
        ours_read("seq", ours_idx, ours_rec, order)
        mx.run("seq", ours_idx, ours_rec)
        for rnd in range(args.rounds):
            for op in ("seq", "rand"):
                runs = [("mxnet", lambda op=op: mx.run(op, ours_idx, ours_rec))]
                runs.append(("ours", lambda op=op: ours_read(op, ours_idx, ours_rec, order)))
                if rnd % 2:
                    runs.reverse()
                for who, fn in runs:
                    res = fn()
                    if res["records"] != args.records:
                        print(f"ERROR: {who} {op} read {res['records']} records", file=sys.stderr)
                        return 1
                    rates.setdefault((op, who), []).append(res["records"] / res["seconds"])
        mx.close()

        print(f"{'':12}{'ours rec/s':>14}{'MXNet rec/s':>14}{'ours/MXNet':>12}")
        for op, label in (("seq", "sequential"), ("rand", "random"), ("write", "write")):
            ours, theirs = rates[(op, "ours")], rates[(op, "mxnet")]
            best = max(ours) / max(theirs)
            print(f"{label + ' best':12}{max(ours):14,.0f}{max(theirs):14,.0f}{best:11.2f}x")
            if len(ours) > 1:
                med_o, med_t = statistics.median(ours), statistics.median(theirs)
                print(f"{label + ' med':12}{med_o:14,.0f}{med_t:14,.0f}{med_o / med_t:11.2f}x")
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
