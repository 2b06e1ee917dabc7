"""build-dataset with `streaming=True` (issue 19) on the shared Prefect test server: the same
files, bytes and manifest as the in-memory build; switching between the two; resuming shard by
shard after a failure or a damaged shard; a dry run; Dask (a LocalCluster, and real worker
processes with one killed); the task runs a streaming build makes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from imagetree import DEFAULT_BROKEN, DEFAULT_TREE, make_image_tree
from latency_proxy import LatencyProxy
from pipeline_fixtures import (
    prefect_harness,  # noqa: F401  (the shared server fixture)
    read_tree,
    subprocess_env,
)
from test_dask_cluster import Processes, wait_for

from recordio_core.building.stream_quality import quality_tasks_for
from recordio_core.building.validate import validate_manifest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

KW: dict[str, Any] = {"train_ratio": 0.6, "test_ratio": 0.2, "records_per_shard": 3, "resize": 24}
ALL: dict[str, Any] = {"records_per_shard": 4, "resize": 20}  # one split: "all"


def build(source: Path | str, output: Path | str, **kw: Any) -> dict[str, Any]:
    from recordio_flow.flows.build import build_dataset

    return build_dataset(source=str(source), output=str(output), **kw)


def build_state(source: Path | str, output: Path | str, **kw: Any) -> Any:
    from recordio_flow.flows.build import build_dataset

    return build_dataset(source=str(source), output=str(output), return_state=True, **kw)


def dataset_files(out: Path) -> dict[str, bytes]:
    """Every file of the dataset but the manifest and the `.recflow` bookkeeping."""
    return {
        k: v
        for k, v in read_tree(out).items()
        if k != "manifest.json" and not k.startswith(".recflow")
    }


def shard_files(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in read_tree(out).items() if k.endswith((".rec", ".idx", ".lst"))}


def manifest_doc(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def kept_results(out: Path) -> list[Path]:
    return sorted((out / ".recflow" / "results").glob("*.json"))


def no_staging_left(out: Path) -> bool:
    listing = out / ".recflow" / "listing"
    return not listing.exists() or not any(listing.iterdir())


def task_runs(flow_run_id: Any) -> list[Any]:
    """The flow run's task runs, once the server has them all: task runs are recorded from
    events, a moment after they ran, so read until the write-manifest run (the last) is there
    and the count holds still."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    seen: list[Any] = []
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=flt, limit=200)
            if len(runs) == len(seen) and task_kinds(runs)["commit_dataset"]:
                return runs
            seen = runs
            time.sleep(0.5)
    return seen


def task_kinds(runs: list[Any]) -> Counter:
    """Task runs per task function (`list_part_task`, `pack_group_task`, ...: the task key)."""
    return Counter(run.task_key.rsplit("-", 1)[0] for run in runs)


@dataclass(frozen=True)
class Built:
    out: Path
    summary: dict[str, Any]
    flow_run_id: Any = None


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream-flow") / "src"
    make_image_tree(root, {**DEFAULT_TREE, **DEFAULT_BROKEN})
    return root


@pytest.fixture(scope="module")
def clean(source: Path, prefect_harness: str) -> Built:  # noqa: F811
    """The in-memory build of `KW` (read only by the tests)."""
    out = source.parent / "clean"
    return Built(out, build(source, out, **KW))


@pytest.fixture(scope="module")
def streamed(source: Path, prefect_harness: str) -> Built:  # noqa: F811
    """The streaming build of `KW` (read only by the tests)."""
    out = source.parent / "streamed"
    state = build_state(source, out, streaming=True, **KW)
    return Built(out, state.result(), state.state_details.flow_run_id)


@pytest.fixture(scope="module")
def clean_all(source: Path, prefect_harness: str) -> Built:  # noqa: F811
    """The in-memory build of `ALL` (read only by the tests)."""
    out = source.parent / "clean-all"
    return Built(out, build(source, out, **ALL))


# --------------------------------------------------------------------------- the same dataset
def test_streaming_writes_the_in_memory_build_byte_for_byte(clean: Built, streamed: Built) -> None:
    a, b = clean.summary, streamed.summary
    assert b["shards"] == a["shards"] >= 10 and b["shards_packed"] == b["shards"]
    assert dataset_files(streamed.out) == dataset_files(clean.out)  # shards, rejects, class map
    assert len(shard_files(streamed.out)) == 3 * a["shards"]
    ma, mb = manifest_doc(clean.out), manifest_doc(streamed.out)
    assert {k: v for k, v in mb.items() if k not in ("parameters", "tools")} == {
        k: v for k, v in ma.items() if k not in ("parameters", "tools")
    }
    assert mb["parameters"]["streaming"] is True and ma["parameters"]["streaming"] is False
    for key in ("records", "rejects", "images_listed", "bytes", "splits", "quality"):
        assert b[key] == a[key], key
    assert set(b["splits"]) == {"train", "val", "test"}
    assert sum(b["splits"]["train"]["labels"].values()) == b["splits"]["train"]["records"]
    assert b["streaming"]["groups"] >= 3
    assert no_staging_left(streamed.out)
    assert len(kept_results(streamed.out)) == b["shards"]
    assert not [p for p in read_tree(streamed.out) if ".tmp-" in p]


def test_switching_streaming_on_reuses_the_in_memory_shards(source: Path, tmp_path: Path) -> None:
    """Regression: an in-memory build keeps no results under .recflow/results, so the first
    streaming build into its output packed every shard again."""
    out = tmp_path / "switch"
    kw = {**KW, "resize": 22}  # parameters no other build of this session used
    first = build(source, out, **kw)
    files = shard_files(out)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in files}
    shards = manifest_doc(out)["splits"]
    summary = build(source, out, streaming=True, **kw)
    assert summary["shards_cached"] == summary["shards"] == first["shards"]
    assert manifest_doc(out)["splits"] == shards
    assert shard_files(out) == files
    assert {p: os.stat(out / p).st_mtime_ns for p in files} == mtimes


def test_a_copied_streaming_output_is_reused_where_it_now_is(
    source: Path, streamed: Built, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(streamed.out, out)  # its kept results name the original's files
    summary = build(source, out, streaming=True, **KW)
    assert summary["shards_cached"] == summary["shards"] == streamed.summary["shards"]
    assert shard_files(out) == shard_files(streamed.out)
    for kept in kept_results(out):  # and now name the files here
        assert json.loads(kept.read_text())["rec"].startswith(str(out) + "/")


def test_switching_streaming_off_keeps_the_shard_files(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "back"
    kw = {**ALL, "resize": 18}  # parameters no other build of this session used
    build(source, out, streaming=True, **kw)
    files = shard_files(out)
    summary = build(source, out, **kw)
    assert shard_files(out) == files  # same names, same bytes
    assert summary["shards"] == len(files) // 3
    assert manifest_doc(out)["parameters"]["streaming"] is False


def test_switching_streaming_off_after_an_in_memory_build_elsewhere(
    source: Path, clean: Built, streamed: Built, tmp_path: Path
) -> None:
    """Regression: pack-shard's cache key is the content key, without OUTPUT: a shard packed
    in memory into another folder was taken from the cache with that folder's file names,
    and the manifest failed ('<other>/...rec' is not inside '<output>')."""
    out = tmp_path / "back"
    shutil.copytree(streamed.out, out)  # a streaming build's output, as it left it
    state = build_state(source, out, **KW)
    assert state.is_completed(), state.message
    assert shard_files(out) == shard_files(clean.out)


# --------------------------------------------------------------------------- resume
def test_a_failed_group_resumes_shard_by_shard(
    source: Path, clean_all: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recordio_core.building.stream_pack as stream_pack

    monkeypatch.setattr("recordio_flow.flows.build_stream.MAX_PACK_GROUPS", 1)
    # the group packs in this process (not in a child of its own), so the patch reaches it
    monkeypatch.setattr("recordio_flow.tasks.stream._shareable", lambda *urls: False)
    real = stream_pack.pack_shard
    calls: list[str] = []

    def third_fails(entries: Any, source: str, prefix: str, *args: Any, **kw: Any) -> Any:
        calls.append(prefix)
        if len(calls) == 3:
            raise ValueError(f"injected: a bad input while packing {prefix}")
        return real(entries, source, prefix, *args, **kw)

    monkeypatch.setattr(stream_pack, "pack_shard", third_fails)
    out = tmp_path / "out"
    state = build_state(source, out, streaming=True, **ALL)
    assert state.is_failed() and "injected" in str(state.result(raise_on_failure=False))
    assert len(calls) == 3  # not retried: a ValueError is no transient error
    assert not (out / "manifest.json").exists()
    assert len(kept_results(out)) == 2 and len(shard_files(out)) == 6
    assert no_staging_left(out)

    monkeypatch.setattr(stream_pack, "pack_shard", real)
    state = build_state(source, out, streaming=True, **ALL)
    summary = state.result()
    assert summary["streaming"]["groups"] == 1
    assert summary["shards_cached"] == 2 and summary["shards_packed"] == summary["shards"] - 2
    assert shard_files(out) == shard_files(clean_all.out)
    assert dataset_files(out) == dataset_files(clean_all.out)
    assert no_staging_left(out)


def test_a_rerun_reuses_every_kept_shard_and_packs_a_damaged_one_again(
    source: Path, clean_all: Built, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = build(source, out, streaming=True, **ALL)
    before = read_tree(out)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in shard_files(out)}
    again = build(source, out, streaming=True, **ALL)
    assert again["shards_cached"] == again["shards"] == first["shards"]
    assert again["shards_packed"] == 0 and again["images_packed"] == 0
    assert read_tree(out) == before  # every byte, manifest and kept results included
    assert {p: os.stat(out / p).st_mtime_ns for p in shard_files(out)} == mtimes

    rec = sorted(out.glob("all/*.rec"))[1]
    rec.write_bytes(rec.read_bytes()[:-100])  # cut short behind the build's back
    summary = build(source, out, streaming=True, **ALL)
    assert summary["shards_packed"] == 1 and summary["shards_cached"] == first["shards"] - 1
    assert shard_files(out) == shard_files(clean_all.out)
    assert {k: v for k, v in manifest_doc(out).items() if k not in ("parameters", "tools")} == {
        k: v for k, v in manifest_doc(clean_all.out).items() if k not in ("parameters", "tools")
    }
    reports = validate_manifest(str(out / "manifest.json"))
    assert reports and all(not r.problems for r in reports)


# --------------------------------------------------------------------------- dry run
def test_a_streaming_dry_run_writes_nothing_and_plans_the_build(
    source: Path, streamed: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"  # where the dry run's local staging goes
    temp.mkdir()
    (temp / "keep").write_bytes(b"")  # not empty (test_a_dry_run_leaves_an_empty_...)
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    out = tmp_path / "dry"
    dry = build(source, out, streaming=True, dry_run=True, **KW)
    assert not out.exists()
    assert [p.name for p in temp.iterdir()] == ["keep"]  # its staging removed
    real = streamed.summary
    assert dry["dry_run"] is True and dry["streaming"] is True
    assert dry["shards"] == real["shards"]
    assert dry["pack_groups"] == real["streaming"]["groups"]
    assert dry["images_listed"] == real["images_listed"]
    assert dry["skipped"] == 0 and dry["classes"] == len(manifest_doc(streamed.out)["class_map"])
    assert {k: v["shards"] for k, v in dry["splits"].items()} == {
        k: v["shards"] for k, v in real["splits"].items()
    }
    kinds = task_kinds(task_runs(streamed.flow_run_id))
    assert dry["listing_tasks"] == kinds["list_part_task"]
    assert dry["task_runs"] >= sum(kinds.values())  # at most: fewer duplicate runs
    duplicate_runs = quality_tasks_for(dry["images_listed"] - dry["skipped"])
    assert dry["task_runs"] == dry["listing_tasks"] + dry["pack_groups"] + duplicate_runs + 1


def test_a_dry_run_leaves_an_empty_temporary_folder_alone(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a local dry run stages under the temporary folder and removed the
    staging folder's parent when empty: once, the temporary folder itself. Its own staging
    folder (`recflow-listing/<run>`) is gone afterwards."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    build(source, tmp_path / "dry", streaming=True, dry_run=True, **ALL)
    assert temp.is_dir()
    assert not [p for p in temp.rglob("*") if p.is_file()]


# --------------------------------------------------------------------------- task runs
def test_task_runs_of_a_streaming_build(streamed: Built) -> None:
    runs = task_runs(streamed.flow_run_id)
    kinds = task_kinds(runs)
    groups = streamed.summary["streaming"]["groups"]
    top = [p for p in streamed.out.parent.joinpath("src").iterdir() if p.is_dir()]
    assert kinds["list_part_task"] == len(top)  # one part per top-level folder, here
    assert kinds["pack_group_task"] == groups
    # one per bucket range holding images, a range per 500k images
    assert kinds["quality_task"] == quality_tasks_for(streamed.summary["records"]) == 1
    assert kinds["commit_dataset"] == 1  # write-manifest
    assert sum(kinds.values()) == kinds["list_part_task"] + groups + kinds["quality_task"] + 1
    assert not {"pack_shard_task", "validate_shard_task", "list_images"} & set(kinds)
    assert all(run.state.is_completed() for run in runs)


def test_a_streaming_build_publishes_its_summary_with_a_contact_sheet(streamed: Built) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from recordio_flow.tasks.report import artifact_key

    key = artifact_key("dataset", str(streamed.out))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    (artifact,) = [a for a in found if a.flow_run_id == streamed.flow_run_id]
    assert f"**{streamed.summary['records']}** records" in artifact.data
    assert "## Samples (first 4 per class)" in artifact.data
    assert "![contact sheet](data:image/png;base64," in artifact.data
    assert f"## Rejects ({streamed.summary['rejects']})" in artifact.data


# --------------------------------------------------------------------------- Dask
def test_streaming_on_a_dask_cluster(
    source: Path,
    clean: Built,
    prefect_harness: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)  # the workers report here
    out = tmp_path / "dask"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        summary = build(source, out, streaming=True, dask_address=cluster.scheduler_address, **KW)
        with distributed.Client(cluster) as client:
            ran = client.run(lambda: "recordio_flow.tasks.stream" in __import__("sys").modules)
    assert any(ran.values())  # the listing and pack tasks ran in the worker processes
    assert summary["shards"] == clean.summary["shards"]
    assert dataset_files(out) == dataset_files(clean.out)
    assert manifest_doc(out)["parameters"]["dask_address"].startswith("tcp://")
    assert no_staging_left(out)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def test_a_streaming_build_survives_a_killed_dask_worker(
    s3_server: Any, processes: Processes, tmp_path: Path
) -> None:
    """tests/test_dask_cluster.py's scenario with `--streaming`: a worker SIGKILLed while it
    packs; Dask reruns its group on the other worker, which reuses the shards kept."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    from pipeline_fixtures import image_tree

    bucket = s3_server.make_bucket()
    image_tree(tmp_path / "imgs", classes=3, per_class=6)
    fs = s3_server.fs()
    fs.put(str(tmp_path / "imgs") + "/", f"{bucket}/images/", recursive=True)
    src, out = f"s3://{bucket}/images", f"s3://{bucket}/dask"
    so = {"endpoint_url": s3_server.endpoint_url}

    sched_file = tmp_path / "scheduler.json"
    env = subprocess_env()
    processes.start(
        "scheduler",
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
        + ["--scheduler-file", str(sched_file)],
        env,
    )
    address = wait_for(
        "the scheduler",
        lambda: sched_file.exists() and json.loads(sched_file.read_text() or "{}").get("address"),
        60,
        processes,
    )
    up = urlsplit(s3_server.endpoint_url)
    with LatencyProxy(up.hostname, up.port, latency=0.08) as proxy:
        worker_env = dict(env, FSSPEC_S3_ENDPOINT_URL=proxy.url)
        workers = [
            processes.start(
                f"worker{i}",
                [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny"]
                + ["--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}"]
                + ["--death-timeout", "60"],
                worker_env,
            )
            for i in range(2)
        ]
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            pids = client.run(os.getpid)
            build_proc = processes.start(
                "build",
                [str(BIN / "recflow"), "build", src, out, "--records-per-shard", "3"]
                + ["--resize", "16", "--streaming", "--dask-address", address],
                env,
            )

            def busy_worker() -> str | None:
                """A worker running a pack task once the first shard is in S3."""
                if not [p for p in fs.find(f"{bucket}/dask") if p.endswith(".rec")]:
                    return None
                running = client.processing()
                return next((w for w, keys in running.items() if keys), None)

            victim = wait_for("a shard and a busy worker", busy_worker, 90, processes)
            if build_proc.poll() is not None:
                pytest.fail(f"the build ended before a worker was killed\n{processes.tail()}")
            os.kill(pids[victim], signal.SIGKILL)
            next(w for w in workers if w.pid == pids[victim]).wait(timeout=10)
            wait_for("the build", lambda: build_proc.poll() is not None, 120, processes)
            assert build_proc.returncode == 0, processes.tail()
            assert len(client.scheduler_info()["workers"]) == 1

    reports = validate_manifest(f"{out}/manifest.json", storage_options=so)
    assert len(reports) == 6 and all(not r.problems for r in reports)
    clean = f"s3://{bucket}/clean"
    build(src, clean, storage_options=so, records_per_shard=3, resize=16)

    def s3_shards(prefix: str) -> dict[str, bytes]:
        root = prefix.removeprefix("s3://")
        return {
            p.removeprefix(root): fs.cat_file(p)
            for p in fs.find(root)
            if p.endswith((".rec", ".idx", ".lst"))
        }

    got = s3_shards(out)
    assert len(got) == 18 and got == s3_shards(clean)
    assert not fs.find(f"{bucket}/dask/.recflow/listing")


# --------------------------------------------------------------------------- odd sources
def test_a_folder_name_that_is_not_utf8_is_skipped_as_in_memory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_image_tree(src, {k: v for k, v in DEFAULT_TREE.items() if k.startswith(("cats/", "zz/"))})
    odd = os.path.join(os.fsencode(src), b"caf\xe9")  # a Latin-1 folder name
    os.mkdir(odd)
    shutil.copy(src / "cats" / "c1.jpg", os.fsdecode(os.path.join(odd, b"x.jpg")))
    a = build(src, tmp_path / "mem", **ALL)
    b = build(src, tmp_path / "str", streaming=True, **ALL)
    assert dataset_files(tmp_path / "str") == dataset_files(tmp_path / "mem")
    assert b["rejects"] == a["rejects"] == 1 and b["records"] == a["records"]


def test_a_source_without_images_fails_as_in_memory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "empty" / "deeper").mkdir(parents=True)
    (src / "notes.txt").write_text("no images")
    mem = build_state(src, tmp_path / "mem", **ALL)
    streamed = build_state(src, tmp_path / "str", streaming=True, **ALL)
    assert mem.is_failed() and streamed.is_failed()
    assert str(streamed.result(raise_on_failure=False)) == str(mem.result(raise_on_failure=False))
    assert not (tmp_path / "str" / "manifest.json").exists()
    assert no_staging_left(tmp_path / "str")


@pytest.mark.parametrize("where", ["source", "output"])
def test_streaming_takes_memory_urls_as_the_in_memory_build_does(
    source: Path, tmp_path: Path, where: str
) -> None:
    """Regression: list-part lists in a forkserver child, whose memory:// filesystem is
    its own (empty): a memory:// source failed (FileNotFoundError), a memory:// output lost
    the pieces the child wrote."""
    import fsspec

    fs = fsspec.filesystem("memory")
    base = f"/stream-{os.getpid()}-{tmp_path.name}"
    src: str = str(source)
    if where == "source":
        for rel, data in read_tree(source).items():
            fs.pipe(f"{base}/src/{rel}", data)
        src = f"memory://{base}/src"
    try:
        if where == "source":  # the in-memory build takes a memory:// source and output
            assert build(src, f"memory://{base}/mem", **ALL)["records"] > 0
        state = build_state(src, f"memory://{base}/str", streaming=True, **ALL)
        assert state.is_completed(), state.message
    finally:
        fs.rm(base, recursive=True)


# --------------------------------------------------------------------------- a .lst source
def user_lst(source: Path, path: Path, extra: str = "") -> Path:
    """A `.lst` of the source's images as a user writes one: shuffled indexes, two labels
    (the second with more decimals than `%f` keeps), CRLF line ends, one path twice."""
    import random

    from recordio_core.building.listing import list_images
    from recordio_core.format.lst import LstEntry, format_lst

    entries = list(list_images(str(source), recursive=True).entries)
    entries.append(entries[0])
    keys = list(range(100, 100 + len(entries)))
    random.Random(4).shuffle(keys)
    text = format_lst(
        LstEntry(k, (e.label, e.label / 7), e.path) for k, e in zip(keys, entries, strict=True)
    )
    path.write_bytes((text + extra).replace("\n", "\r\n").encode())
    return path


def test_a_lst_source_streams_to_the_in_memory_build_byte_for_byte(
    source: Path, tmp_path: Path
) -> None:
    lst = user_lst(source, tmp_path / "user.lst")
    kw = {**KW, "lst": str(lst), "label_width": 2}
    a = build(source, tmp_path / "mem", **kw)
    state = build_state(source, tmp_path / "str", streaming=True, **kw)
    b = state.result()
    assert dataset_files(tmp_path / "str") == dataset_files(tmp_path / "mem")
    ma, mb = manifest_doc(tmp_path / "mem"), manifest_doc(tmp_path / "str")
    assert {k: v for k, v in mb.items() if k not in ("parameters", "tools")} == {
        k: v for k, v in ma.items() if k not in ("parameters", "tools")
    }
    for key in ("records", "rejects", "images_listed", "bytes", "splits", "quality", "shards"):
        assert b[key] == a[key], key
    assert b["quality"]["duplicate_groups"] >= 1  # the path listed twice
    assert no_staging_left(tmp_path / "str")
    kinds = task_kinds(task_runs(state.state_details.flow_run_id))
    assert kinds["list_lst_part_task"] >= 1 and kinds["check_indexes_task"] == 1
    assert not kinds["list_part_task"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("100\t0.000000\t0.000000\tcats/again.jpg\n", "duplicate index 100 (first seen on line"),
        ("7\t1.000000\tcats/one-label.jpg\n", "label_width=2 but the line has 1"),
        (
            "100\t0.000000\t0.000000\tcats/again.jpg\n900\t0.000000\t0.000000\t../up.jpg\n",
            "duplicate index 100 (first seen on line",
        ),  # the repeat comes first: a part sees only the path outside the root
    ],
    ids=["repeated-index", "bad-line", "repeat-then-outside"],
)
def test_a_bad_lst_fails_before_packing_as_in_memory(
    source: Path, tmp_path: Path, extra: str, says: str
) -> None:
    lst = user_lst(source, tmp_path / "bad.lst", extra)
    kw = {**ALL, "lst": str(lst), "label_width": 2}
    mem = build_state(source, tmp_path / "mem", **kw)
    streamed = build_state(source, tmp_path / "str", streaming=True, **kw)
    assert mem.is_failed() and streamed.is_failed()
    error = str(streamed.result(raise_on_failure=False))
    assert error == str(mem.result(raise_on_failure=False)) and says in error
    assert error.startswith(f"{lst}:")  # the file and the line
    assert not shard_files(tmp_path / "str") and no_staging_left(tmp_path / "str")
