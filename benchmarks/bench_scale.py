"""Does the `build-dataset` flow scale? 100 M listed entries, and 1.28 M real files, on 2 cores.

    .venv/bin/python benchmarks/bench_scale.py                         # both parts, full size
    .venv/bin/python benchmarks/bench_scale.py --part synthetic        # 100 M entries, dry run
    .venv/bin/python benchmarks/bench_scale.py --part synthetic --full # 2 M entries, packed
    .venv/bin/python benchmarks/bench_scale.py --part files            # 1,281,167 files
    .venv/bin/python benchmarks/bench_scale.py --part files --lst      # ... from a .lst
    .venv/bin/python benchmarks/bench_scale.py --entries 200000 --no-streaming --files 20000

**synthetic**: the flow itself (`recordio_flow.flows.build.build_dataset`), called in a child
process (this script with `--child`) on `synth://n{N}-f{F}/` (benchmarks/synthfs.py: N tiny
JPEGs in folders of F, none of them held in memory) with `streaming=True, dry_run=True,
pass_through=True, train_ratio=0.9, test_ratio=0.05`: listed, split and planned end to end,
nothing packed. `--full` packs for real instead (`dry_run=False`, default N 2,000,000; the
output is deleted afterwards). `--no-streaming` runs the in-memory path (feasible up to ~2 M
entries). The child runs the flow on a temporary Prefect API it starts itself
(`flows/local_api.py`, as `recflow build` does; PREFECT_HOME under --workdir,
PREFECT_LOGGING_LEVEL=WARNING) and prints: peak RSS of the flow process (`ru_maxrss`) and its
growth per million entries over the RSS just before the flow call, the largest peak of its
children (the API server, task worker processes), wall seconds of the flow call (and of the
whole child, the API's start included), CPU seconds (flow process + reaped children), and the
task runs recorded for the flow run and its subflow runs (read back with the Prefect client
once the server's recorder has caught up). The child's PYTHONPATH carries an `fsspec.specs`
entry point for synth:// (`synth_env`), so task processes the flow starts know it too.

**files**: makes (once, cached in --workdir) N small unique JPEGs (~2.3 KB, bench_passthrough's
`make_files`, here in 1000 class folders), warms the page cache (`cat` of every file) and the
Prefect database (a 200-file build), then times per round, in fresh processes, alternating the
order, each after an `os.sync()` (no run waits for the last one's writes), what a user runs
to get a packed dataset from the folder:

- `recflow build ROOT OUT --pass-through --streaming` (the whole command: temporary API start,
  listing, split, pack, validate, manifest); `--no-streaming` too with --compare-memory-path;
- the library path: `recflow im2rec PREFIX ROOT --list --recursive` (the walk and the `.lst`)
  followed by `recflow im2rec PREFIX ROOT --pass-through --num-thread T` (the pack); the sum of
  both commands' wall times is what is compared.

With `--lst` both start from a user's `.lst` instead: the one `recflow im2rec --list
--recursive` writes for ROOT (shuffled indexes; made once, cached in --workdir), packed by
`recflow build ROOT OUT --pass-through --streaming --lst L` against `recflow im2rec PREFIX ROOT
--pass-through` of it (copied in as PREFIX.lst).

Peak RSS comes from bench_pipeline's wrapper (VmHWM of the command's own process, and the
largest among its children, e.g. the Prefect API server). The ratio flow / library is the
target (<= 1.3). Both parts print a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import bench_passthrough  # noqa: E402
from bench_im2rec import count_records  # noqa: E402
from bench_passthrough import IMAGENET, _ours, make_files, run_build, run_cat  # noqa: E402
from bench_pipeline import _PEAK  # noqa: E402

FULL_ENTRIES = 2_000_000
FILE_CLASSES = 1000
MIB = 1024.0  # ru_maxrss and VmHWM are in KiB


def _prefect_env(work: Path, quiet: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # a temporary API, started by the command or the child
    env.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    if quiet:
        env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    return env


def synth_env(work: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with synth:// known to every Python process started with it (the flow's task
    processes too, which import nothing of this script): an `fsspec.specs` entry point, which
    fsspec reads as it is imported, from a dist-info folder under --workdir on PYTHONPATH."""
    site = work / "synth-entry-point"
    info = site / "recflow_bench_synthfs-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: recflow-bench-synthfs\nVersion: 0\n"
    )
    (info / "entry_points.txt").write_text("[fsspec.specs]\nsynth = synthfs:SynthFileSystem\n")
    path = [str(HERE), str(site), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


def has_streaming() -> bool:
    """Whether build_dataset takes `streaming` (asked in a child: this process stays small)."""
    code = (
        "import inspect; from recordio_flow.flows.build import build_dataset; "
        "print('streaming' in inspect.signature(build_dataset.fn).parameters)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().endswith("True")


# ---------------------------------------------------------------- synthetic: the child side


def _vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _flow_run_ids(client: Any, root: Any) -> list[Any]:
    """The flow run and its subflow runs, at any depth."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    ids, todo = [root], [root]
    while todo:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=todo)
            )
        )
        todo = [r.id for r in runs if r.id not in ids]
        ids.extend(todo)
    return ids


def _count_task_runs(client: Any, ids: list[Any]) -> int:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    total, page = 0, 200  # the API returns at most 200 per call
    while True:
        got = len(client.read_task_runs(flow_run_filter=flt, limit=page, offset=total))
        total += got
        if got < page:
            return total


def task_runs_of(flow_run_id: Any) -> tuple[int, int]:
    """`(task runs, flow runs)` recorded for the run, once two reads a second apart agree
    (the server records task runs from events, in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=30)
    last, deadline = -1, time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            ids = _flow_run_ids(client, flow_run_id)
            count = _count_task_runs(client, ids)
            if count == last or time.monotonic() > deadline:
                return count, len(ids)
            last = count
            time.sleep(1.5)


_SUMMARY_KEYS = ("images_listed", "records", "classes", "shards", "listing_tasks", "pack_groups")


def _counts_of(summary: dict[str, Any]) -> dict[str, int]:
    """The summary's counts (a streaming dry run's `task_runs` is what a real build would make)."""
    keys = (*_SUMMARY_KEYS, "task_runs")
    return {k: summary[k] for k in keys if type(summary.get(k)) is int}


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def _run_flow(params: dict[str, Any], streaming: bool) -> dict[str, Any]:
    """Call build_dataset (on the API `child` started) and measure it."""
    import inspect

    from recordio_flow.flows.build import build_dataset
    from recordio_flow.flows.runner import run_flow_quietly

    if "streaming" in inspect.signature(build_dataset.fn).parameters:
        params = {**params, "streaming": streaming}
    elif streaming:
        raise SystemExit("build_dataset has no `streaming` parameter yet: use --no-streaming")
    base_kb, cpu0, t0 = _vm_rss_kb(), _cpu(resource.RUSAGE_SELF), time.perf_counter()
    flow = functools.partial(build_dataset, return_state=True)
    ok, state = run_flow_quietly(flow, params, heartbeats=False)
    flow_wall, flow_cpu = time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - cpu0
    if not ok or not state.is_completed():
        raise SystemExit(f"the flow failed: {state}")
    summary = state.result()
    task_runs, flow_runs = task_runs_of(state.state_details.flow_run_id)
    return {
        "summary": _counts_of(summary),
        "base_rss_kb": base_kb,
        "flow_wall": flow_wall,
        "flow_cpu": flow_cpu,
        "task_runs": task_runs,
        "flow_runs": flow_runs,
    }


def child(config: str) -> int:
    """`--child JSON`: run the flow once and print one `SCALE {...}` line on stdout."""
    cfg = json.loads(config)
    peak: dict[str, Any] = {}
    exec(_PEAK, peak)  # bench_pipeline's sampler: VmHWM of this process's children
    t0 = time.perf_counter()
    import synthfs  # noqa: F401  (registers synth:// here; other processes: synth_env)

    from recordio_flow.flows.local_api import prefect_api
    from recordio_flow.flows.runner import wait_for_api

    with prefect_api() as api:
        wait_for_api(api)
        ready = time.perf_counter() - t0
        res = _run_flow(cfg["params"], cfg["streaming"])
        children_hwm = max(peak["_child_peak"].values(), default=0)
    res.update(
        startup=ready,
        rss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        vmhwm_kb=peak["_hwm"](),
        children_rss_kb=max(children_hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        cpu=_cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN),
    )
    print("SCALE " + json.dumps(res), flush=True)
    return 0


# ---------------------------------------------------------------- synthetic: the parent side


def run_synthetic(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n = args.entries or (FULL_ENTRIES if args.full else 100_000_000)
    out = work / f"out-synth-n{n}"
    shutil.rmtree(out, ignore_errors=True)
    params = {
        "source": f"synth://n{n}-f{args.per_folder}/",
        "output": str(out),
        "dry_run": not args.full,
        "pass_through": True,
        "train_ratio": 0.9,
        "test_ratio": 0.05,
    }
    if args.records_per_shard:
        params["records_per_shard"] = args.records_per_shard
    cfg = json.dumps({"params": params, "streaming": args.streaming})
    log = work / f"synthetic-n{n}.log"
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", cfg],
            cwd=REPO,
            env=synth_env(work, _prefect_env(work, quiet=True)),
            stdout=subprocess.PIPE,
            stderr=f,
            text=True,
        )
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SCALE ")]
    if proc.returncode or not lines:
        raise SystemExit(f"child failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    res = json.loads(lines[-1][6:])
    res.update(entries=n, per_folder=args.per_folder, wall=wall, mode=_mode(args))
    return res


def _mode(args: argparse.Namespace) -> str:
    stream = "streaming" if args.streaming else "in-memory"
    return f"{stream}, {'packed' if args.full else 'dry run'}"


def _summary_text(counts: dict[str, int]) -> str:
    text = ", ".join(f"{k} {counts[k]:,}" for k in _SUMMARY_KEYS if k in counts)
    if "task_runs" in counts:
        text += f"; a real build: {counts['task_runs']:,} task runs"
    return text


def print_synthetic(res: dict[str, Any]) -> None:
    millions = res["entries"] / 1e6
    base = res["base_rss_kb"] / MIB
    growth = (res["rss_kb"] / MIB - base) / millions
    rows = [
        ("entries", f"{res['entries']:,} in folders of {res['per_folder']:,} ({res['mode']})"),
        ("the flow's summary", _summary_text(res["summary"])),
        ("flow process peak RSS", f"{res['rss_kb'] / MIB:.0f} MiB"),
        ("  per million entries", f"{res['rss_kb'] / MIB / millions:.1f} MiB"),
        (
            "  growth over pre-flow RSS, /M",
            f"{growth:.1f} MiB (from {base:.0f} MiB)",
        ),
        ("largest child peak RSS (API, workers)", f"{res['children_rss_kb'] / MIB:.0f} MiB"),
        ("task runs (flow runs)", f"{res['task_runs']} ({res['flow_runs']})"),
        ("wall, flow call", f"{res['flow_wall']:.1f} s ({res['flow_wall'] / millions:.2f} s/M)"),
        ("wall, start (imports, API)", f"{res['startup']:.1f} s"),
        ("wall, whole child process", f"{res['wall']:.1f} s (with counting, API stop)"),
        ("CPU, flow call / all", f"{res['flow_cpu']:.1f} s / {res['cpu']:.1f} s"),
    ]
    print(f"\n== synthetic: build-dataset on synth:// ({os.cpu_count()} cores)")
    for name, value in rows:
        print(f"  {name:38s} {value}")


# ---------------------------------------------------------------- files


def make_class_files(work: Path, n: int) -> Path:
    """N unique small JPEGs in FILE_CLASSES folders (bench_passthrough's maker), cached."""
    root = work / f"files-{n}-c{FILE_CLASSES}"
    t0 = time.perf_counter()
    with mock.patch.object(bench_passthrough, "CLASSES", FILE_CLASSES):
        make_files(root, n)
    print(f"files ready in {time.perf_counter() - t0:.1f} s: {root}", flush=True)
    return root


def run_library(root: Path, work: Path, env: dict[str, str], threads: int) -> dict[str, Any]:
    """`recflow im2rec --list --recursive`, then `--pass-through`: a user's two commands."""
    out = work / "out-im2rec"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    prefix = str(out / "data")
    listed = _ours(["im2rec", prefix, str(root), "--list", "--recursive"], work / "list.log", env)
    pack_args = ["im2rec", prefix, str(root), "--pass-through", "--num-thread", str(threads)]
    packed = _ours(pack_args, work / "im2rec.log", env)
    records = count_records(Path(prefix + ".idx"))
    shutil.rmtree(out, ignore_errors=True)  # GBs at full size, like the build's output
    return {
        "wall": listed["wall"] + packed["wall"],
        "list_wall": listed["wall"],
        "rss_kb": max(listed["rss_kb"], packed["rss_kb"]),
        "children_rss_kb": max(listed["children_rss_kb"], packed["children_rss_kb"]),
        "records": records,
    }


def make_lst(root: Path, work: Path, env: dict[str, str]) -> Path:
    """The `.lst` `recflow im2rec --list --recursive` writes for `root` (shuffled indexes, as
    im2rec.py's), made once and cached: where `--lst` runs start from."""
    lst = work / f"{root.name}-im2rec.lst"
    if not lst.exists():
        prefix = work / f"{root.name}-listing"
        _ours(["im2rec", str(prefix), str(root), "--list", "--recursive"], work / "lst.log", env)
        os.replace(f"{prefix}.lst", lst)
    return lst


def run_library_from_lst(
    root: Path, work: Path, env: dict[str, str], threads: int, lst: Path
) -> dict[str, Any]:
    """`recflow im2rec --pass-through` of a user's `.lst` (copied in as PREFIX.lst)."""
    out = work / "out-im2rec"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    prefix = str(out / "data")
    shutil.copyfile(lst, prefix + ".lst")
    pack_args = ["im2rec", prefix, str(root), "--pass-through", "--num-thread", str(threads)]
    packed = _ours(pack_args, work / "im2rec.log", env)
    packed["records"] = count_records(Path(prefix + ".idx"))
    shutil.rmtree(out, ignore_errors=True)
    return packed


def run_flow_command(
    root: Path, work: Path, env: dict[str, str], flag: str, lst: Path | None = None
) -> dict[str, Any]:
    out = work / "out-build"
    shutil.rmtree(out, ignore_errors=True)
    args = ["build", str(root), str(out), "--pass-through", *([flag] if flag else [])]
    args += ["--lst", str(lst)] if lst is not None else []
    res = _ours(args, work / "build.log", env)
    manifest = json.loads((out / "manifest.json").read_text())
    res["records"] = sum(s["records"] for s in manifest["splits"].values())
    shutil.rmtree(out, ignore_errors=True)
    return res


def run_files(args: argparse.Namespace, work: Path, streaming: bool) -> dict[str, Any]:
    root = make_class_files(work, args.files)
    env = _prefect_env(work, quiet=False)
    run_cat(root, work)  # warm-ups: the page cache, the Prefect database, bytecode caches
    run_build(make_class_files(work, 200), work, env)
    lst = make_lst(root, work, env) if args.lst else None
    flow = "recflow build --streaming" if streaming else "recflow build"
    flow += " --lst" if lst is not None else ""
    runs = {
        flow: lambda: run_flow_command(root, work, env, "--streaming" if streaming else "", lst)
    }
    if args.compare_memory_path:
        runs["recflow build --no-streaming"] = lambda: run_flow_command(
            root, work, env, "--no-streaming" if streaming else "", lst
        )
    if lst is None:
        library = "recflow im2rec --list + pack"
        runs[library] = lambda: run_library(root, work, env, args.num_thread)
    else:
        library = "recflow im2rec pack of the .lst"
        runs[library] = lambda: run_library_from_lst(root, work, env, args.num_thread, lst)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for rnd in range(args.rounds):
        print(f"\nround {rnd + 1} ({args.files:,} files, {os.cpu_count()} cores)", flush=True)
        for name in list(runs) if rnd % 2 == 0 else list(reversed(runs)):
            os.sync()  # the last run's writes reach the disk first, not during this one
            res = runs[name]()
            results[name].append(res)
            print(
                f"  {name:32s} {res['wall']:8.1f} s {args.files / res['wall']:8.0f} img/s  "
                f"peak RSS {res['rss_kb'] / MIB:5.0f} MiB "
                f"(children {res['children_rss_kb'] / MIB:.0f})"
                f"  {res['records']} records",
                flush=True,
            )
    return {"files": args.files, "flow": flow, "library": library, "runs": results}


def print_files(res: dict[str, Any]) -> None:
    best = {name: min(r["wall"] for r in rs) for name, rs in res["runs"].items()}
    library = best[res["library"]]
    print(f"\n== files: {res['files']:,} files, fastest of rounds")
    for name, wall in best.items():
        print(f"  {name:32s} {wall:8.1f} s  {wall / library:5.2f}x the library")
    ratio = best[res["flow"]] / library
    res["ratio"] = ratio
    print(f"  {res['flow']} / library: {ratio:.2f}x (target <= 1.3)")
    if res["files"] != IMAGENET:
        minutes = library * IMAGENET / res["files"] / 60
        print(f"  (at {IMAGENET:,} files, if linear: the library {minutes:.1f} min)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("synthetic", "files", "both"), default="both")
    ap.add_argument("--entries", type=int, default=None, help="default 100 M (2 M with --full)")
    ap.add_argument("--per-folder", type=int, default=10_000)
    ap.add_argument(
        "--records-per-shard",
        type=int,
        default=None,
        help="synthetic: images per shard (default: the flow's, 64 MiB of these tiny files); "
        "e.g. 200 at 10 M entries plans the 50,000 shards 100 M photos would make",
    )
    ap.add_argument("--full", action="store_true", help="synthetic: pack for real, not a dry run")
    ap.add_argument(
        "--streaming", action=argparse.BooleanOptionalAction, default=True, help="synthetic"
    )
    ap.add_argument("--files", type=int, default=IMAGENET)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--lst",
        action="store_true",
        help="files: both start from the .lst im2rec --list writes (made once): "
        "recflow build --lst against recflow im2rec's packing of it",
    )
    ap.add_argument("--num-thread", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--compare-memory-path", action="store_true")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "recflow-scale"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    if args.part in ("synthetic", "both"):
        report["synthetic"] = run_synthetic(args, work)
        print_synthetic(report["synthetic"])
    if args.part in ("files", "both"):
        streaming = has_streaming()
        if not streaming:
            print("note: build-dataset has no `streaming` yet: recflow build runs without it")
        report["files"] = run_files(args, work, streaming)
        print_files(report["files"])
    print("BENCH_SCALE " + json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
