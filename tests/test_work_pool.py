"""`prefect deploy` of deployments/prefect.yaml onto a process work pool, against the real
`prefect server start` (the session's `prefect_server`), with a worker this module starts.

The module's `work_pool` fixture does what the README tells a person to do, from the
repository root: `prefect work-pool create recordio-flow --type process` (the pool the yaml
names: `prefect deploy --all` ignores `--pool`, and the session's server is this test run's
own), `prefect deploy --all --prefect-file deployments/prefect.yaml` with
RECFLOW_SOURCE/RECFLOW_OUTPUT set, and `prefect worker start --pool recordio-flow`. Then:

- a custom run created through the API, as the UI's form does it, completes on the worker;
- a Custom run submitted in the real UI (headless Chromium) completes on the worker;
- a schedule fires: the yaml's nightly cron cannot be waited for, so the nightly deployment is
  deployed again from the same file with `--interval 5` (Prefect adds it to the yaml's
  schedules); its first scheduled run must complete on the worker (then the deployment is
  paused).

At the end the deployments are removed, the runs still in flight are waited for, and the
worker is stopped (its whole process group), whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pipeline_fixtures import image_tree
from prefect_server import ROOT, PrefectServer, prefect_command, stop, wait_for_run
from test_prefect_ui import browser_page, chromium, custom_run  # noqa: F401  (a fixture)

from recordio_core.building.validate import validate_manifest
from recordio_core.format.manifest import read_manifest

pytestmark = pytest.mark.slow

PREFECT_FILE = "deployments/prefect.yaml"
DEPLOY_TIMEOUT = 180.0
# The worker asks for runs every second and takes them at most a second early (defaults: 10 s
# and 10 s), so a run created now starts within a second or two.
WORKER_SETTINGS = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}


def run_prefect(env: dict[str, str], *args: str) -> str:
    """`prefect ARGS` from the repository root (AssertionError with its output if it fails)."""
    proc = subprocess.run(
        [*prefect_command(), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEPLOY_TIMEOUT,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{output[-3000:]}"
    return output


def deploy(env: dict[str, str], *args: str) -> str:
    """`prefect --no-prompt deploy --prefect-file deployments/prefect.yaml ARGS`."""
    return run_prefect(env, "--no-prompt", "deploy", "--prefect-file", PREFECT_FILE, *args)


def yaml_pool_name() -> str:
    """The work pool deployments/prefect.yaml deploys onto."""
    import yaml

    doc = yaml.safe_load((ROOT / PREFECT_FILE).read_text())
    (name,) = {d["work_pool"]["name"] for d in doc["deployments"]}
    return str(name)


@dataclass
class WorkPool:
    name: str
    server: PrefectServer
    env: dict[str, str]  # what `prefect deploy` and the worker run with
    src: Path  # RECFLOW_SOURCE
    nightly_out: Path  # RECFLOW_OUTPUT
    worker: subprocess.Popen
    worker_log: Path

    def worker_tail(self, chars: int = 3000) -> str:
        return self.worker_log.read_text(errors="replace")[-chars:]

    def check_worker(self) -> None:
        assert self.worker.poll() is None, f"the worker exited:\n{self.worker_tail()}"


def pool_deployments(client: Any, pool: str) -> list[Any]:
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    return client.read_deployments(
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))
    )


def runs_of(client: Any, deployment_ids: list[Any]) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    if not deployment_ids:
        return []
    flt = DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids))
    return client.read_flow_runs(deployment_filter=flt)


def busy_runs(client: Any, deployment_ids: list[Any]) -> list[Any]:
    """The runs of these deployments that a worker has taken and not finished."""
    return [
        r
        for r in runs_of(client, deployment_ids)
        if r.state is not None and r.state.type.value in ("PENDING", "RUNNING", "CANCELLING")
    ]


def wait_until_idle(client: Any, deployment_ids: list[Any], timeout: float = 120.0) -> list[Any]:
    """Wait until no run of these deployments is Pending or Running; the runs still busy at the
    timeout (scheduled ones are left for the caller to delete)."""
    deadline = time.monotonic() + timeout
    while (busy := busy_runs(client, deployment_ids)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return busy


def cancel(client: Any, runs: list[Any]) -> None:
    """Ask the worker to stop these runs' processes (what Cancel in the UI does)."""
    from prefect.states import Cancelling

    for run in runs:
        with contextlib.suppress(Exception):
            client.set_flow_run_state(run.id, Cancelling(), force=True)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop `proc` (SIGTERM, then SIGKILL) and anything left in its process group."""
    stop(proc)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tear_down(server: PrefectServer, name: str, worker: subprocess.Popen | None) -> None:
    with server.client() as client:
        deployments = pool_deployments(client, name)
        ids = [d.id for d in deployments]
        for dep in deployments:  # no new scheduled runs
            client.pause_deployment(dep.id)
        if worker is not None and worker.poll() is None:
            stuck = wait_until_idle(client, ids)  # the worker finishes what it started ...
            if stuck:  # ... or kills it
                cancel(client, stuck)
                wait_until_idle(client, ids, timeout=60)
        if worker is not None:
            stop_group(worker)
        for dep in deployments:
            client.delete_deployment(dep.id)
        with contextlib.suppress(Exception):
            client.delete_work_pool(name)


@pytest.fixture(scope="module")
def work_pool(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkPool]:
    """A process work pool with the yaml's three deployments and a running worker."""
    tmp = tmp_path_factory.mktemp("work-pool")
    src, nightly_out = tmp / "src", tmp / "nightly"
    image_tree(src, classes=2, per_class=3)
    name = yaml_pool_name()
    env = prefect_server.env(
        RECFLOW_SOURCE=str(src), RECFLOW_OUTPUT=str(nightly_out), **WORKER_SETTINGS
    )
    log = tmp / "worker.log"
    worker: subprocess.Popen | None = None
    try:
        run_prefect(env, "work-pool", "create", name, "--type", "process", "--overwrite")
        deploy(env, "--all")
        with open(log, "wb") as logf:
            worker = subprocess.Popen(
                [*prefect_command(), "worker", "start", "--pool", name],
                cwd=tmp,  # the runs must find the project through the deployment, not this cwd
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield WorkPool(name, prefect_server, env, src, nightly_out, worker, log)
    finally:
        _tear_down(prefect_server, name, worker)


def test_prefect_deploy_registers_the_yaml_on_the_pool(work_pool):
    with work_pool.server.client() as client:
        deps = {d.name: d for d in pool_deployments(client, work_pool.name)}
    assert set(deps) == {"nightly", "resize-256", "pass-through"}
    for dep in deps.values():
        assert dep.entrypoint == "flows/build.py:build_dataset"
        assert dep.parameters["source"] == str(work_pool.src)  # from RECFLOW_SOURCE
        assert dep.job_variables["env"] == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
        # no pull steps in the yaml: `prefect deploy` records the directory it ran in
        assert dep.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
        assert "recordio-flow" in dep.tags
    (cron,) = deps["nightly"].schedules
    assert cron.schedule.cron == "0 2 * * *" and cron.active
    assert not deps["resize-256"].schedules
    form = deps["resize-256"].parameter_openapi_schema["properties"]
    assert form["resize"].get("description")  # the same form as under `recflow serve`


def _check_dataset(out: Path, records: int) -> Any:
    manifest = read_manifest(str(out))
    assert manifest.records == records
    reports = validate_manifest(str(out), decode=True)
    assert reports and all(r.ok for r in reports), reports
    return manifest


def test_a_custom_run_through_the_api_completes_on_the_worker(work_pool, tmp_path):
    out = tmp_path / "out"
    with work_pool.server.client() as client:
        dep = client.read_deployment_by_name("build-dataset/resize-256")
        with pytest.raises(Exception, match="409|[Vv]alidation"):  # what the form refuses
            client.create_flow_run_from_deployment(dep.id, parameters={"resize": -1})
        run = client.create_flow_run_from_deployment(
            dep.id, parameters={"output": str(out), "resize": 32, "records_per_shard": 4}
        )
        work_pool.check_worker()
        run = wait_for_run(client, run.id, work_pool.worker_log)
    assert run.state.is_completed(), f"{run.state}\n{work_pool.worker_tail()}"
    assert run.work_pool_name == work_pool.name  # run by the pool's worker
    p = _check_dataset(out, records=6).parameters
    assert (p["resize"], p["quality"], p["records_per_shard"]) == (32, 95, 4)
    assert p["source"] == str(work_pool.src)  # the deployment's default


def test_a_custom_run_from_the_ui_completes_on_the_worker(work_pool, chromium, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    server = work_pool.server
    with server.client() as client, browser_page(chromium, "work-pool-custom-run") as page:
        dep = client.read_deployment_by_name("build-dataset/pass-through")
        run_id = custom_run(page, client, server.url, dep.id, {"output": out})
        work_pool.check_worker()
        run = wait_for_run(client, run_id, work_pool.worker_log)
    assert run.state.is_completed(), f"{run.state}\n{work_pool.worker_tail()}"
    assert run.work_pool_name == work_pool.name  # run by the pool's worker
    assert _check_dataset(out, records=6).parameters["pass_through"] is True


def test_a_schedule_fires_and_its_run_completes_on_the_worker(work_pool):
    """The yaml's nightly cron cannot be waited for: deploy the nightly deployment again from
    the same file with `--interval 5`, which Prefect adds to the yaml's schedules. (A schedule
    added through the API instead waited for the scheduler's 60 s loop: only a deployment
    updated moments ago is scheduled at once.)"""
    started = time.monotonic()
    deploy(work_pool.env, "--name", "nightly", "--interval", "5")
    with work_pool.server.client() as client:
        dep = client.read_deployment_by_name("build-dataset/nightly")
        kinds = sorted(type(s.schedule).__name__ for s in dep.schedules)
        assert kinds == ["CronSchedule", "IntervalSchedule"]  # the yaml's cron, plus 5 s
        first = None
        deadline = time.monotonic() + 180
        while first is None and time.monotonic() < deadline:
            taken = [  # by the worker: Pending, Running or already final
                r
                for r in runs_of(client, [dep.id])
                if r.auto_scheduled and r.state is not None and r.state.type.value != "SCHEDULED"
            ]
            first = taken[0] if taken else None
            if first is None:
                work_pool.check_worker()
                time.sleep(0.3)
        client.pause_deployment(dep.id)  # no more runs every 5 s (pausing deletes the next ones)
        assert first is not None, f"no scheduled run started:\n{work_pool.worker_tail()}"
        run = wait_for_run(client, first.id, work_pool.worker_log)
        assert run.state.is_completed(), f"{run.state}\n{work_pool.worker_tail()}"
        assert run.work_pool_name == work_pool.name  # run by the pool's worker
        wait_until_idle(client, [dep.id])  # a run taken just before the pause ends too
    print(f"work pool schedule: first run completed {time.monotonic() - started:.1f}s after deploy")
    assert _check_dataset(work_pool.nightly_out, records=6).parameters["resize"] == 256
