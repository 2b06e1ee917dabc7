"""Against a real `prefect server start` (the session's `prefect_server`): a schedule served by
`recflow serve` fires and its run completes; a run whose process is SIGKILLed is marked Crashed
by the zombie automation instead of staying Running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from pipeline_fixtures import image_tree
from prefect_server import ROOT, served, wait_for_deployment, wait_for_run

from recordio_core.format.manifest import read_manifest
from recordio_flow.flows.params import PARAMETER_NAMES
from recordio_flow.flows.zombies import AUTOMATION_NAME

pytestmark = pytest.mark.slow


def test_the_zombie_automation_watches_this_projects_runs_only():
    from recordio_flow.flows.zombies import RUN_TAG, zombie_automation

    a = zombie_automation()
    t = a.trigger
    assert t.posture == "Proactive" and t.within.total_seconds() == 90
    assert t.after == {"prefect.flow-run.heartbeat"} and "prefect.flow-run.Completed" in t.expect
    assert t.match_related.model_dump() == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": f"prefect.tag.{RUN_TAG}",
    }
    (action,) = a.actions
    assert action.state.value == "CRASHED" and not action.force  # final states stay final
    with pytest.raises(ValueError, match="at least 10"):
        zombie_automation(within_seconds=5)


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
        assert client.read_automations_by_name(AUTOMATION_NAME)  # serve installed it
        form = dep.parameter_openapi_schema["properties"]  # as the server holds it
        assert len(form) == len(PARAMETER_NAMES) and all(
            prop.get("description") for prop in form.values()
        )
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


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import pipeline_fixtures  # registers slow://
from recordio_flow.flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_is_marked_crashed_by_the_zombie_automation(prefect_server, tmp_path):
    """`recflow build` against a server, SIGKILLed half way: the run does not stay Running.
    The project's automation is installed with a short window so the test is quick (the real
    one waits 90 s: three missed 30 s heartbeats)."""
    from recordio_flow.flows.zombies import zombie_automation

    src, out = tmp_path / "src", tmp_path / "out"
    image_tree(src, classes=2, per_class=6)
    automation = zombie_automation(within_seconds=10, name="test: crash silent runs quickly")
    log = tmp_path / "build.log"
    env = prefect_server.env(RECFLOW_TEST_SLOW_READ="0.5")
    code = _CHILD.format(tests=str(ROOT / "tests"))
    args = ["build", f"slow://{src}", str(out), "--num-workers", "1"]
    with prefect_server.client() as client:
        automation_id = client.create_automation(automation)
        started = time.monotonic()
        try:
            with open(log, "wb") as logf:
                proc = subprocess.Popen(
                    [sys.executable, "-c", code, *args],
                    cwd=ROOT,
                    env=env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                )
            run = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                mine = [
                    r for r in client.read_flow_runs() if r.parameters.get("output") == str(out)
                ]
                if mine and mine[0].state is not None and mine[0].state.is_running():
                    run = mine[0]
                    break
                time.sleep(0.3)
            assert run is not None, f"the build never ran:\n{log.read_text()[-3000:]}"
            assert "recordio-flow" in run.tags  # what the automation watches
            time.sleep(2)  # its first heartbeat is sent as it starts
            assert proc.poll() is None, "the build ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            deadline = killed + 120
            while time.monotonic() < deadline:
                state = client.read_flow_run(run.id).state
                if state.type.value != "RUNNING":
                    break
                time.sleep(0.5)
            assert state.type.value == "CRASHED", state
            assert "heartbeat" in (state.message or "")
            print(
                f"zombie test: Crashed {time.monotonic() - killed:.1f}s after SIGKILL "
                f"(test total {time.monotonic() - started:.1f}s)"
            )
        finally:
            client.delete_automation(automation_id)


def test_the_run_that_left_the_commit_lock_is_marked_crashed(prefect_server, tmp_path):
    """The next commit to the same output takes over the lock of a run whose process is gone,
    and marks that run Crashed in Prefect (the UI then offers Retry)."""
    import json
    import socket

    from prefect import flow
    from prefect.states import Completed, Running

    from recordio_flow.tasks.commit import LOCK_NAME, commit_lock, crash_dead_owner

    @flow(name="lock-holder")
    def holder() -> None:
        pass

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    with prefect_server.client() as client:
        run = client.create_flow_run(holder, state=Running())
        lock = {"owner": str(run.id), "host": socket.gethostname(), "pid": dead.pid}
        (out / LOCK_NAME).write_text(json.dumps({**lock, "time": time.time()}))
        with commit_lock(str(out), "next-run", on_takeover=crash_dead_owner, wait_seconds=5):
            assert json.loads((out / LOCK_NAME).read_text())["owner"] == "next-run"
        state = client.read_flow_run(run.id).state
        assert state.type.value == "CRASHED" and "process" in state.message, state
        # a finished run is never touched; a lock of a local call names no run
        done = client.create_flow_run(holder)
        client.set_flow_run_state(done.id, Running())
        client.set_flow_run_state(done.id, Completed())
        crash_dead_owner({"owner": str(done.id)}, "test")
        crash_dead_owner({"owner": "local"}, "test")
        assert client.read_flow_run(done.id).state.is_completed()
