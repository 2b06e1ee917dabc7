"""What the Prefect pipeline costs: `recflow build` vs calling the library's packing directly.

    .venv/bin/python benchmarks/bench_pipeline.py                 # 2,000 and 8,000 images
    .venv/bin/python benchmarks/bench_pipeline.py --sizes 500 2000 --resize 128

For each corpus size N (images in 10 class folders, built once under --workdir, the same corpus
as benchmarks/bench_im2rec.py when benchmarks/corpus.py is there) it times, in fresh processes:

- `library`: `list_images` + the same shard plan + `pack_shard` per shard with the flow's
  concurrency (shards on a thread pool, the same workers per shard, as forkserver processes
  the way the flow's pack task starts them) — packing only;
- `library+validate`: the same plus `validate_shard` of every shard (the flow validates too);
- `recflow build`: the whole command, Prefect's temporary API included (its start and stop);
  the time inside the flow run (listing to manifest) is printed too.

The difference flow - library is split into a fixed part F and a per-image part p from the
two sizes (d(N) = F + p*N). Targets (issue 4): F <= 6 s, p*N <= 3 % of packing time. Peak RSS
of each process (and of the temporary Prefect server) shows memory does not grow with N; the
heap figure (RssAnon) leaves out file pages, which VmHWM counts and the page cache moves.

Measured on the 2-core shared machine, 2026-11-25, `--rounds 3` (fastest of three), with the
`opencv` extra: N=2000: library 3.90 s, recflow build 8.95 s (4.06 s inside the flow run);
N=8000: 13.21 s vs 18.32 s (13.51 s inside). Wall fit: F = 5.02 s, p = 0.7 % of packing time
(vs library+validate: F = 4.87 s, p = 3.5 %); inside the processes: p = 1.0 % (3.8 %). Over
seven runs today the wall-fit p ranged 0.7-6 %: the temporary server's start varies by
+-0.5 s, which is +-4 % of p at these sizes, hence the inside fit. Before the temporary API
started through flows/api_server.py, F was 6.6-6.8 s. Heap (RssAnon): flow process 171 -> 191
MiB, library 112 -> 121 MiB, Prefect server 216 -> 215 MiB (peak RSS); Python objects traced
with tracemalloc at the end of the flow grow 23.3 -> 26.0 MiB (the listing, ~0.45 KB per
image); the rest is the C allocator's high-water mark, which moves run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Peak memory: VmHWM from /proc (resource's ru_maxrss is inherited across exec on Linux, so a
# child started by a big parent would report the parent's peak), and the largest RssAnon seen
# every 50 ms: the process's own heap, without the file pages it maps (libraries, and each
# .rec that validation reads through mmap, which the kernel can drop at any time).
_PEAK = r"""
import os, threading, time
def _status_kb(field, pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0
def _hwm(pid="self"):
    return _status_kb("VmHWM", pid)
def _anon():
    return _status_kb("RssAnon")
def _children(root):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out
_child_peak = {}
_anon_peak = [0]
def _sample():
    me = os.getpid()
    n = 0
    while True:
        _anon_peak[0] = max(_anon_peak[0], _anon())
        if n % 2 == 0:
            for pid in _children(me):
                _child_peak[pid] = max(_child_peak.get(pid, 0), _hwm(pid))
        n += 1
        time.sleep(0.05)
threading.Thread(target=_sample, daemon=True).start()
"""

# Runs `recflow ...` (argv after the script name) in this process and prints its peak RSS and
# the largest peak among its children (the temporary Prefect API server) to stderr as JSON.
_WRAPPER = (
    _PEAK
    + r"""
import json, sys
from recordio_flow.flows import cli
# what `recflow` (recordio_flow.flows.cli:entry) does, with the peaks reported before its quick exit
code = cli.main(sys.argv[1:])
peak = {"rss_kb": _hwm(), "anon_kb": max(_anon_peak[0], _anon()),
        "children_rss_kb": max(_child_peak.values(), default=0)}
print("BENCH " + json.dumps(peak), file=sys.stderr)
cli.exit_now(code)
"""
)

_LIBRARY = (
    _PEAK
    + r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
t0 = time.perf_counter()
from recordio_core.storage.fsio import join_url
from recordio_core.images.image import ImageOptions
from recordio_core.building.listing import list_images
from recordio_core.building.pack import PackOptions, pack_shard
from recordio_core.building.plan import num_shards_for, plan_split
from recordio_core.building.validate import validate_shard
source, output = sys.argv[1], sys.argv[2]
resize, rps, validate = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
entries = list_images(source, recursive=True).entries
plans = plan_split("all", len(entries), num_shards_for(len(entries), records_per_shard=rps))
# the flow's concurrency (flows/build.py, tasks/pack.py): shards on a pool of max(2, CPUs)
# threads, CPUs shared among the shards packed at once, each shard's workers in processes
# forked from a forkserver
cpus = os.cpu_count() or 1
SHARD_CONCURRENCY = max(2, cpus)
workers = max(1, cpus // min(cpus, len(plans)))
opts = PackOptions(image=ImageOptions(resize=resize), num_workers=workers)
def one(plan):
    r = pack_shard(entries[plan.start:plan.stop], source, join_url(output, plan.name), opts,
                   processes=True, start_method="forkserver")
    if validate:
        rep = validate_shard(r.rec, r.idx, r.lst, expected_sha256=r.sha256)
        if not rep.ok:
            raise SystemExit(f"validation failed: {rep.problems}")
    return r.records
with ThreadPoolExecutor(SHARD_CONCURRENCY) as ex:
    n = sum(ex.map(one, plans))
t = time.perf_counter() - t0
print("BENCH " + json.dumps({"seconds": t, "records": n, "shards": len(plans), "rss_kb": _hwm(),
                            "anon_kb": max(_anon_peak[0], _anon())}), file=sys.stderr)
"""
)


def _bench_line(stderr: str) -> dict:
    for line in reversed(stderr.splitlines()):
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"no BENCH line in:\n{stderr[-3000:]}")


def make_corpus(root: Path, n: int) -> None:
    if (root / ".complete").exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    try:
        from corpus import build_corpus  # benchmarks/corpus.py: crops of real photos

        build_corpus(root, n, seed=0, n_classes=10)
    except ImportError:
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for i in range(n):
            w, h = int(rng.integers(400, 500)), int(rng.integers(333, 375))
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            arr = 128 + 80 * np.sin(xx / rng.uniform(5, 60))[..., None] * np.ones(3)
            arr = arr + rng.normal(0, 12, (h, w, 3))
            folder = root / f"class_{i % 10:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
                folder / f"img_{i:05d}.jpg", quality=90
            )
    (root / ".complete").write_text("ok")


def run_library(src: Path, out: Path, resize: int, rps: int, validate: bool, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _LIBRARY,
            str(src),
            str(out),
            str(resize),
            str(rps),
            str(int(validate)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    res = _bench_line(proc.stderr)
    res["wall"] = time.perf_counter() - start
    return res


def run_flow(src: Path, out: Path, resize: int, rps: int, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    args = [str(src), str(out), "--resize", str(resize), "--records-per-shard", str(rps)]
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, "build", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    res = _bench_line(proc.stderr)
    res["wall"] = wall
    text = proc.stdout + proc.stderr
    res["error_lines"] = [ln for ln in text.splitlines() if "ERROR" in ln or "Traceback" in ln]
    found = re.search(r"rejects, ([0-9.]+) s", proc.stdout)
    res["flow_seconds"] = float(found.group(1)) if found else float("nan")
    manifest = json.loads((out / "manifest.json").read_text())
    res["records"] = sum(s["records"] for s in manifest["splits"].values())
    res["shards"] = sum(len(s["shards"]) for s in manifest["splits"].values())
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[2000, 8000], metavar="N")
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--records-per-shard", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1, help="repeat and keep the fastest")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "recflow-bench-pipe"))
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(work / "prefect-home"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)  # the fixed cost measured is the temporary API's

    n1, n2 = args.sizes
    for n in (n1, n2):
        t = time.perf_counter()
        make_corpus(work / f"corpus-{n}", n)
        print(f"corpus {n}: ready ({time.perf_counter() - t:.0f} s)", flush=True)
    # one small warm-up build so the Prefect database exists (first use migrates it, ~10 s)
    warm = work / "warm"
    make_corpus(warm, 20)
    run_flow(warm, work / "warm-out", 0, 100, env)

    rows = {}
    works: dict[int, dict[str, float]] = {}
    for n in (n1, n2):
        src = work / f"corpus-{n}"
        best: dict[str, dict] = {}
        work_min: dict[str, float] = {}  # fastest in-process time per kind, over the rounds
        for _ in range(args.rounds):
            rps = args.records_per_shard
            for name, fn, fargs in (
                ("library", run_library, (src, work / "out-lib", args.resize, rps, False, env)),
                (
                    "library+validate",
                    run_library,
                    (src, work / "out-lib", args.resize, rps, True, env),
                ),
                ("recflow build", run_flow, (src, work / "out-flow", args.resize, rps, env)),
            ):
                res = fn(*fargs)
                if name not in best or res["wall"] < best[name]["wall"]:
                    best[name] = res
                inside = res["flow_seconds"] if "flow_seconds" in res else res["seconds"]
                work_min[name] = min(inside, work_min.get(name, inside))
        rows[n] = best
        works[n] = work_min
        print(f"\nN = {n} (resize {args.resize}, {best['recflow build']['shards']} shards)")
        for name, res in best.items():
            rss = res["rss_kb"] / 1024
            extra = ""
            if "children_rss_kb" in res:
                extra = (
                    f", Prefect server {res['children_rss_kb'] / 1024:.0f} MiB; "
                    f"{res['flow_seconds']:.2f} s inside the flow run"
                )
            print(
                f"  {name:17s} {res['wall']:7.2f} s  {n / res['wall']:6.1f} img/s  "
                f"peak RSS {rss:.0f} MiB (heap {res['anon_kb'] / 1024:.0f} MiB){extra}"
            )
        if best["recflow build"]["error_lines"]:
            print("  ERROR/Traceback lines printed by recflow build:")
            for ln in best["recflow build"]["error_lines"][:10]:
                print("   ", ln)

    print("\nOverhead of recflow build, split as d(N) = F + p*N:")
    for base in ("library", "library+validate"):
        d1 = rows[n1]["recflow build"]["wall"] - rows[n1][base]["wall"]
        d2 = rows[n2]["recflow build"]["wall"] - rows[n2][base]["wall"]
        p = (d2 - d1) / (n2 - n1)
        fixed = d1 - p * n1
        per_image_pack = rows[n2][base]["wall"] / n2
        print(
            f"  vs {base:17s}: F = {fixed:5.2f} s (target <= 6), p = {p * 1000:6.3f} ms/image "
            f"= {100 * p / per_image_pack:5.1f} % of packing time (target <= 3 %)"
        )
    # The wall-time fit carries the noise of the temporary server's start (+-0.5 s here). The
    # per-image part is seen more sharply inside the processes: the flow run (listing to
    # manifest) against the library's own time (imports to last shard), fastest of the rounds.
    print("Inside the processes (no interpreter or server start), d(N) = F + p*N:")
    for base in ("library", "library+validate"):
        d1 = works[n1]["recflow build"] - works[n1][base]
        d2 = works[n2]["recflow build"] - works[n2][base]
        p = (d2 - d1) / (n2 - n1)
        per_image_pack = works[n2][base] / n2
        print(
            f"  vs {base:17s}: F = {d1 - p * n1:5.2f} s, p = {p * 1000:6.3f} ms/image "
            f"= {100 * p / per_image_pack:5.1f} % of packing time (target <= 3 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
