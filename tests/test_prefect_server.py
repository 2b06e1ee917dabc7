"""Against a real `prefect server start`: a schedule served by `recflow serve` fires and its run
completes."""

from __future__ import annotations

import time

import pytest
from pipeline_fixtures import image_tree
from prefect_server import served, wait_for_deployment, wait_for_run

from recordio_core.manifest import read_manifest

pytestmark = pytest.mark.slow


def test_a_served_schedule_fires_and_its_run_completes(prefect_server, tmp_path):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    src, out = tmp_path / "src", tmp_path / "out"
    image_tree(src, classes=2, per_class=3)
    log = tmp_path / "serve.log"
    started = time.monotonic()
    # one run at a time: the 5 s schedule must not start a pile of runs on a busy machine
    args = [str(src), str(out), "--interval", "5", "--limit", "1", "--param", "records_per_shard=4"]
    with served(prefect_server, args, log) as proc, prefect_server.client() as client:
        dep = wait_for_deployment(client, "build-dataset/nightly", proc, log)
        assert dep.schedules and dep.schedules[0].schedule.interval.total_seconds() == 5
        deadline = time.monotonic() + 240
        run = None
        while time.monotonic() < deadline and run is None:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
            )
            done = [r for r in runs if r.state is not None and r.state.is_final()]
            run = done[0] if done else None
            if run is None:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
        assert run is not None, f"no scheduled run finished:\n{log.read_text()[-3000:]}"
        run = wait_for_run(client, run.id, log)
        assert run.auto_scheduled  # created by the server's scheduler, not by this test
        assert run.state.is_completed(), f"{run.state}\n{log.read_text()[-3000:]}"
    print(
        f"schedule test: first scheduled run completed {time.monotonic() - started:.1f}s "
        "after `recflow serve` started"
    )
    m = read_manifest(str(out))
    assert m.records == 6 and m.parameters["resize"] == 256  # the nightly preset
