"""Deployments: prefect.yaml agrees with the served presets; a served process runs a custom run
created through the API (what the UI's "Custom run" does)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    subprocess_env,
)

from recordio_core.format.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def test_prefect_yaml_matches_the_presets(monkeypatch):
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    from recordio_flow.flows.deploy import DEFAULT_CRON, PRESETS, make_deployments

    doc = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    assert set(deployments) == set(PRESETS)
    monkeypatch.chdir(ROOT)
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(d["entrypoint"])
        assert flow.name == "build-dataset"
        params = {k: v for k, v in d["parameters"].items() if k not in ("source", "output")}
        assert params == PRESETS[name], name
        flow.validate_parameters({**d["parameters"], "source": "/in", "output": "/out"})
    cron = deployments["nightly"]["schedules"][0]
    assert cron["cron"] == DEFAULT_CRON
    Cron(cron["cron"], timezone=cron["timezone"])
    served = {d.name: d for d in make_deployments(source="s3://b/in", output="s3://b/out")}
    assert set(served) == set(PRESETS)
    assert served["nightly"].schedules[0].schedule.cron == DEFAULT_CRON
    assert served["pass-through"].parameters["pass_through"] is True
    assert not served["resize-256"].schedules
    assert not {d.name: d for d in make_deployments()}["nightly"].schedules


def test_the_nightly_schedule_is_a_cron_or_an_interval_checked_up_front():
    from recordio_flow.flows.deploy import make_deployments, schedule_for

    every = {d.name: d for d in make_deployments(source="/a", output="/b", interval_seconds=5)}
    assert every["nightly"].schedules[0].schedule.interval.total_seconds() == 5
    assert not every["resize-256"].schedules
    assert schedule_for(None, "UTC", None) is None
    for cron, tz, seconds, message in [
        ("0 2 * *", "UTC", None, "invalid schedule"),
        ("0 2 * * *", "Mars/Base", None, "unknown time zone"),
        (None, "UTC", 0.5, "at least 1 second"),
    ]:
        with pytest.raises(ValueError, match=message):
            schedule_for(cron, tz, seconds)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recordio_flow.flows.cli",
            "serve",
            "/a",
            "/b",
            "--cron",
            "x",
            "--interval",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def _wait_for_deployment(client, name: str, proc, log: Path, timeout: float = 90.0):
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"recflow serve exited early:\n{log.read_text()[-3000:]}")
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            time.sleep(0.5)
    pytest.fail(f"deployment {name} never appeared:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_served_deployment_runs_a_custom_run(tmp_path):
    from prefect.client.orchestration import get_client

    src, out = tmp_path / "src", tmp_path / "out"
    image_tree(src, classes=2, per_class=4)
    env = subprocess_env()
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
    log = tmp_path / "serve.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "recordio_flow.flows.cli",
                "serve",
                "--param",
                "records_per_shard=3",
            ],
            cwd=ROOT,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    try:
        with get_client(sync_client=True) as client:
            dep = _wait_for_deployment(client, "build-dataset/resize-256", proc, log)
            assert dep.parameters["resize"] == 256
            # the server refuses what the form would refuse
            with pytest.raises(Exception, match="409|[Vv]alidation"):
                client.create_flow_run_from_deployment(
                    dep.id, parameters={"source": str(src), "output": str(out), "resize": -1}
                )
            run = client.create_flow_run_from_deployment(
                dep.id, parameters={"source": str(src), "output": str(out), "resize": 32}
            )
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                state = client.read_flow_run(run.id).state
                if state is not None and state.type.value in FINAL:
                    break
                time.sleep(1)
            else:
                pytest.fail(f"the flow run did not finish:\n{log.read_text()[-3000:]}")
            assert state.type.value == "COMPLETED", log.read_text()[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    m = read_manifest(str(out))
    assert m.parameters["resize"] == 32  # the run's value over the preset's 256
    assert m.parameters["quality"] == 95 and m.parameters["records_per_shard"] == 3
    assert m.records == 8
