"""Reliability: faults. The S3 endpoint (moto on loopback) stops mid-run and comes back; reads
keep failing past every retry; a `recflow build` process is killed with SIGKILL mid-shard; two
runs write the same OUTPUT at once. Each time: a complete, correct dataset (the bytes of an
undisturbed run) or a failed run with nothing visible as complete, and a rerun that finishes
the job without packing finished shards again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
)

from recordio_core.building.validate import validate_manifest
from recordio_core.format.manifest import MANIFEST_NAME, read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

KW = dict(records_per_shard=3, resize=16, num_workers=1)


def dataset_bytes(fs: Any, root: str) -> dict[str, bytes]:
    """Every object under `root` (relative name -> bytes), the manifest without its `output`."""
    out = {}
    for path in sorted(fs.find(root)):
        rel = path[len(root.rstrip("/")) + 1 :]
        data = fs.cat_file(path)
        if rel == MANIFEST_NAME:
            doc = json.loads(data)
            doc["parameters"].pop("output")
            data = json.dumps(doc, sort_keys=True).encode()
        out[rel] = data
    return out


def retried_task_runs(flow_run_id: Any) -> list[str]:
    """Names of the flow run's task runs that ran more than once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )
    return [r.name for r in runs if (r.run_count or 0) > 1]


@pytest.fixture
def quick_retries(monkeypatch):
    """Shorter retry delays for every task (the policy is the same, the test waits less)."""
    from recordio_flow.tasks.commit import commit_dataset
    from recordio_flow.tasks.listing import list_source
    from recordio_flow.tasks.pack import pack_shard_task
    from recordio_flow.tasks.plan import plan_shards
    from recordio_flow.tasks.validate import validate_shard_task

    for task in (list_source, plan_shards, pack_shard_task, validate_shard_task, commit_dataset):
        monkeypatch.setattr(task, "retry_delay_seconds", [1.0, 2.0, 4.0])


# --------------------------------------------------------------------------- S3 outage


class Outage:
    """A moto S3 server on a fixed loopback port that can be stopped and started again.

    moto keeps its buckets in the process, so a new server on the same port serves the same
    data: what the client sees is an endpoint that goes away and comes back."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.host, self.port = self.server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"
        self.outages = 0
        self.lock = threading.Lock()

    def go_away(self, seconds: float) -> None:
        """Stop the server now and start a new one on the same port `seconds` later."""
        from moto.server import ThreadedMotoServer

        with self.lock:
            self.server.stop()
            self.outages += 1

        def back() -> None:
            time.sleep(seconds)
            with self.lock:
                self.server = ThreadedMotoServer(
                    ip_address=self.host, port=self.port, verbose=False
                )
                self.server.start()

        threading.Thread(target=back, daemon=True).start()

    def close(self) -> None:
        with self.lock:
            self.server.stop()


def test_s3_endpoint_goes_away_mid_packing_and_comes_back(
    s3_server, tmp_path, monkeypatch, quick_retries
):
    import s3fs

    import recordio_flow.tasks.pack
    from recordio_flow.flows.build import build_dataset

    outage = Outage()
    try:
        # botocore's own retries (up to ~15 s) would hide a short outage: one attempt per
        # request, so the pipeline's task retries are what carry the run
        so = {"endpoint_url": outage.endpoint, "config_kwargs": {"retries": {"max_attempts": 1}}}
        fs = s3fs.S3FileSystem(**so, use_listings_cache=False, skip_instance_cache=True)
        bucket = "reliability-outage"
        fs.mkdir(bucket)
        image_tree(tmp_path / "imgs", classes=3, per_class=5)
        fs.put(str(tmp_path / "imgs") + "/", f"{bucket}/images/", recursive=True)
        src = f"s3://{bucket}/images"
        reference = f"s3://{bucket}/reference"
        build_dataset(source=src, output=reference, storage_options=so, **KW)

        real_pack = recordio_flow.tasks.pack.pack_shard
        calls = []

        def pack_with_an_outage(entries, root, prefix, opts, **kw):
            calls.append(prefix)
            if len(calls) != 3:
                return real_pack(entries, root, prefix, opts, **kw)
            progress = kw.pop("progress")

            def progress_then_outage(n: int) -> None:
                progress(n)
                if outage.outages == 0:  # after the shard's first image: the endpoint goes
                    outage.go_away(2.5)

            return real_pack(entries, root, prefix, opts, progress=progress_then_outage, **kw)

        monkeypatch.setattr(recordio_flow.tasks.pack, "pack_shard", pack_with_an_outage)
        out = f"s3://{bucket}/dataset"
        state = build_dataset(source=src, output=out, storage_options=so, **KW, return_state=True)
        assert outage.outages == 1
        assert state.is_completed(), state.message
        summary = state.result()
        assert summary["records"] == 15 and summary["rejects"] == 0
        retried = retried_task_runs(state.state_details.flow_run_id)
        assert any(name.startswith("pack ") for name in retried), retried
        # the same bytes as the undisturbed run, and nothing else in the output
        assert dataset_bytes(fs, f"{bucket}/dataset") == dataset_bytes(fs, f"{bucket}/reference")
        assert all(r.ok for r in validate_manifest(out, storage_options=so))
    finally:
        outage.close()
    print("retried task runs:", retried)


def test_reads_failing_past_every_retry_fail_the_run_and_a_rerun_completes(tmp_path, monkeypatch):
    """An image that cannot be read for a reason a retry may cure (a dropped connection) is
    not an image to leave out: when every retry fails the run fails, with no manifest, and
    the rerun after the fault is gone packs it without repacking the finished shards."""
    from badfiles import FailingReadFileSystem

    import recordio_flow.flows.build as fb
    from recordio_flow.tasks.pack import pack_shard_task

    monkeypatch.setattr(pack_shard_task, "retry_delay_seconds", [0.0, 0.0, 0.0])
    root = tmp_path / "src"
    image_tree(root, classes=2, per_class=5)
    monkeypatch.setattr(FailingReadFileSystem, "failing", {"img03"})
    out = tmp_path / "out"
    kw = dict(source=f"failread://{root}", output=str(out), **KW)
    state = fb.build_dataset(**kw, return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "connection reset" in message and "img03" in message
    assert not (out / MANIFEST_NAME).exists()
    finished = {p: p.stat().st_ino for p in out.rglob("*.rec")}
    assert finished  # the shards without the unreadable image were packed

    monkeypatch.setattr(FailingReadFileSystem, "failing", set())
    summary = fb.build_dataset(**kw)
    assert summary["records"] == 10 and summary["rejects"] == 0
    assert summary["shards_cached"] == len(finished)
    assert {p: p.stat().st_ino for p in finished} == finished  # not packed again


# --------------------------------------------------------------------------- SIGKILL, resume

_RUN_CLI = (
    "import sys; sys.path.insert(0, 'tests'); import badfiles; "
    "from recordio_flow.flows.cli import main; sys.exit(main(sys.argv[1:]))"
)


def shard_files(out: Path) -> dict[str, Path]:
    """The visible shard files under `out` (relative name -> path)."""
    return {
        p.relative_to(out).as_posix(): p
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".rec", ".idx", ".lst")
    }


def local_dataset(out: Path) -> dict[str, bytes]:
    """Every visible file of a local dataset, the manifest without its `output` parameter."""
    files = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    doc = json.loads(files[MANIFEST_NAME])
    doc["parameters"].pop("output")
    files[MANIFEST_NAME] = json.dumps(doc, sort_keys=True).encode()
    return files


def test_sigkill_mid_shard_then_rerun_resumes_with_identical_bytes(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from badfiles import SLOW_ENV
    from pipeline_fixtures import subprocess_env

    from recordio_flow.flows.build import build_dataset

    root = tmp_path / "src"
    image_tree(root, classes=2, per_class=12)
    source = f"sleepy://{root}"
    kw = dict(records_per_shard=3, resize=16, num_workers=1)
    reference = tmp_path / "reference"
    build_dataset(source=source, output=str(reference), **kw)

    out = tmp_path / "out"
    env = {**subprocess_env(), SLOW_ENV: "0.15", "PYTHONPATH": os.getcwd()}
    argv = ["build", source, str(out), "--records-per-shard", "3", "--resize", "16"]
    argv += ["--num-workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN_CLI, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            done = [p for p in shard_files(out) if p.endswith(".rec")]
            partial = [p for p in out.rglob(".*.tmp-*")] if out.exists() else []
            if len(done) >= 3 and partial:
                time.sleep(0.1)  # well inside the next shard (3 reads of 0.15 s)
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        finished = {rel: p.stat().st_ino for rel, p in shard_files(out).items()}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / MANIFEST_NAME).exists()  # nothing visible as complete
    interrupted = [p for p in out.rglob(".*.tmp-*")]
    assert interrupted  # killed mid-shard: a shard's files were half written
    total = len(shard_files(reference))
    assert 9 <= len(finished) < total  # at least three whole shards (3 files each)

    summary = build_dataset(source=source, output=str(out), **kw)
    assert summary["records"] == 24 and summary["shards"] == total // 3
    now = shard_files(out)
    kept = [rel for rel, ino in finished.items() if now[rel].stat().st_ino == ino]
    # finished shards are not packed again (a shard killed between writing its files and
    # recording its result may be packed again, with the same bytes)
    assert len(kept) >= 6 and summary["shards_cached"] * 3 == len(kept)
    assert local_dataset(out) == local_dataset(reference)  # byte for byte
    assert read_manifest(str(out)).records == 24

    # the killed run's temporary files stay hidden, and a later commit removes them once
    # nobody has written to them for DEBRIS_AGE_SECONDS (a live writer's are always fresher)
    from recordio_flow.tasks.commit import DEBRIS_AGE_SECONDS, commit_dataset

    leftovers = sorted(out.rglob(".*.tmp-*"))
    assert leftovers == sorted(interrupted)
    before = local_dataset(out)
    old = time.time() - DEBRIS_AGE_SECONDS - 60
    for p in leftovers[1:]:
        os.utime(p, (old, old))
    commit_dataset.fn(read_manifest(str(out)), output=str(out), owner="cleanup")
    assert sorted(out.rglob(".*.tmp-*")) == leftovers[:1]
    assert local_dataset(out) == before


def test_a_commit_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    import os
    import socket
    import subprocess

    from recordio_flow.tasks.commit import LOCK_NAME, LockBusy, commit_lock

    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / LOCK_NAME
    held = {"owner": "killed", "host": socket.gethostname(), "time": time.time()}
    lock.write_text(json.dumps({**held, "pid": dead.pid}))
    with commit_lock(str(tmp_path), "rerun", wait_seconds=0.2):
        assert json.loads(lock.read_text())["owner"] == "rerun"
    assert not lock.exists()
    # a live holder, or one on another host, is waited for (and then refused)
    for other in ({"pid": os.getppid()}, {"pid": dead.pid, "host": "elsewhere"}):
        lock.write_text(json.dumps({**held, **other}))
        with (
            pytest.raises(LockBusy, match="held by run killed"),
            commit_lock(str(tmp_path), "rerun", wait_seconds=0.2),
        ):
            pass
    assert json.loads(lock.read_text())["owner"] == "killed"


# --------------------------------------------------------------------------- concurrent runs


def test_two_runs_writing_the_same_output_at_once_leave_one_whole_dataset(tmp_path):
    """Two `recflow build` processes with different parameters pack into one OUTPUT at the
    same time: shard names carry their content key, so files never mix, and the manifests are
    committed one after the other under the lock. The survivor is one whole dataset."""
    import os
    import subprocess
    import sys

    from badfiles import SLOW_ENV
    from pipeline_fixtures import subprocess_env

    from recordio_core.format.recordio import MXIndexedRecordIO, unpack_img
    from recordio_flow.flows.cli import main

    root = tmp_path / "src"
    image_tree(root, classes=2, per_class=8)
    out = tmp_path / "out"
    env = {**subprocess_env(), SLOW_ENV: "0.1", "PYTHONPATH": os.getcwd()}

    def start(resize: int) -> subprocess.Popen:
        argv = ["build", f"sleepy://{root}", str(out), "--records-per-shard", "4"]
        argv += ["--resize", str(resize), "--num-workers", "1"]
        return subprocess.Popen(
            [sys.executable, "-c", _RUN_CLI, *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    first = start(16)
    procs = [first]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if out.exists() and any(out.rglob(".*.tmp-*")):
                break  # the first run is packing: start the second one now
            time.sleep(0.01)
        assert first.poll() is None, first.communicate()[0].decode()[-3000:]
        procs.append(start(20))
        outputs = [p.communicate(timeout=240)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    codes = [p.returncode for p in procs]
    assert 0 in codes, outputs
    for code, text in zip(codes, outputs, strict=True):
        if code != 0:  # a run may be refused, saying why; never half-committed
            assert "concurrent build" in text or "held by run" in text, text[-3000:]

    m = read_manifest(str(out))
    resize = m.parameters["resize"]
    assert resize in (16, 20) and m.records == 16
    files = set(m.files())
    assert set(shard_files(out)) == files  # nothing of the other run is left visible
    for _, shard in m.shards():  # every record is of the surviving run's parameters
        r = MXIndexedRecordIO(str(out / shard.idx), str(out / shard.rec), "r")
        for key in r.keys:
            assert min(unpack_img(r.read_idx(key))[1].shape[:2]) == resize
        r.close()
    assert main(["validate", str(out)]) == 0


def test_a_commit_whose_shards_a_concurrent_run_replaced_is_refused(tmp_path, monkeypatch):
    """Run R reuses dataset D1's shards; while R is about to commit, run N commits other
    parameters and removes D1's files. R must refuse (its manifest would name missing files)
    and leave N's whole dataset; R's rerun then packs what it needs and commits."""
    import recordio_flow.flows.build as fb
    import recordio_flow.flows.build_report as fr  # where the flow commits

    root = tmp_path / "src"
    image_tree(root, classes=2, per_class=4)
    out = tmp_path / "out"
    kw = dict(source=str(root), output=str(out), records_per_shard=4)
    fb.build_dataset(**kw, resize=16)  # D1
    real_commit = fr.commit_dataset

    def commit_after_another_run(manifest, **commit_kw):
        monkeypatch.setattr(fr, "commit_dataset", real_commit)
        fb.build_dataset(**kw, resize=20)  # N commits and prunes D1's files
        return real_commit(manifest, **commit_kw)

    monkeypatch.setattr(fr, "commit_dataset", commit_after_another_run)
    state = fb.build_dataset(**kw, resize=16, return_state=True)  # R
    assert state.is_failed()
    assert "disappeared before the commit" in str(state.result(raise_on_failure=False))
    m = read_manifest(str(out))
    assert m.parameters["resize"] == 20 and set(shard_files(out)) == set(m.files())
    assert all(r.ok for r in validate_manifest(str(out)))

    summary = fb.build_dataset(**kw, resize=16)  # R again
    assert summary["shards_packed"] == summary["shards"] == 2
    assert read_manifest(str(out)).parameters["resize"] == 16
