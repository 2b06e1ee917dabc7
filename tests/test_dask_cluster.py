"""A real Dask cluster: `dask scheduler` and two `dask worker` processes on loopback, an
S3 -> S3 `recflow build --dask-address` through them, and one worker SIGKILLed half way.

The run must still complete (Dask hands the lost worker's tasks to the other one), the
manifest must validate, and the bytes must equal those of a clean build without Dask. The
workers reach S3 through a latency proxy, so a shard takes long enough to be caught in the
middle; every process is started in its own process group and killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from latency_proxy import LatencyProxy
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    subprocess_env,
)

from recordio_core.building.validate import validate_manifest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


class Processes:
    """Processes started by a test, each in its own process group; `stop_all` kills them."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append((proc, log))
        return proc

    def tail(self) -> str:
        return "\n".join(f"== {log.name}\n{log.read_text()[-2000:]}" for _, log in self.procs)

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc, _ in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_for(what: str, check, timeout: float, procs: Processes):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}\n{procs.tail()}")


def test_build_survives_a_killed_dask_worker(s3_server, processes, tmp_path):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    from recordio_flow.flows.build import build_dataset

    bucket = s3_server.make_bucket()
    image_tree(tmp_path / "imgs", classes=3, per_class=6)
    fs = s3_server.fs()
    fs.put(str(tmp_path / "imgs") + "/", f"{bucket}/images/", recursive=True)
    src, out = f"s3://{bucket}/images", f"s3://{bucket}/dask"
    so = {"endpoint_url": s3_server.endpoint_url}  # keys come from the environment

    # the scheduler, then two single-threaded workers that see S3 through an 80 ms proxy
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
            pids = client.run(os.getpid)  # worker address -> pid
            build = processes.start(
                "build",
                [str(BIN / "recflow"), "build", src, out, "--records-per-shard", "3"]
                + ["--resize", "16", "--dask-address", address],
                env,
            )

            def busy_worker() -> str | None:
                """A worker running a pack task once the first shard is in S3."""
                if not fs.find(f"{bucket}/dask", withdirs=False):
                    return None
                running = client.processing()
                return next((w for w, keys in running.items() if keys), None)

            victim = wait_for("a shard and a busy worker", busy_worker, 90, processes)
            if build.poll() is not None:
                pytest.fail(f"the build ended before a worker was killed\n{processes.tail()}")
            os.kill(pids[victim], signal.SIGKILL)
            killed = next(w for w in workers if w.pid == pids[victim])
            killed.wait(timeout=10)
            wait_for("the build", lambda: build.poll() is not None, 120, processes)
            assert build.returncode == 0, processes.tail()
            assert len(client.scheduler_info()["workers"]) == 1  # finished on the survivor

    reports = validate_manifest(f"{out}/manifest.json", storage_options=so)
    assert len(reports) == 6 and all(not r.problems for r in reports)
    clean = f"s3://{bucket}/clean"
    build_dataset(source=src, output=clean, storage_options=so, records_per_shard=3, resize=16)

    def shard_files(prefix: str) -> dict[str, bytes]:
        root = prefix.removeprefix("s3://")
        return {
            p.removeprefix(root): fs.cat_file(p)
            for p in fs.find(root)
            if p.endswith((".rec", ".idx", ".lst"))
        }

    dask_files = shard_files(out)
    assert len(dask_files) == 18
    assert dask_files == shard_files(clean)  # same names, same bytes
