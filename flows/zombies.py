"""Runs whose process died are marked Crashed instead of staying "Running" forever.

A flow run reports heartbeats while it runs (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds apart;
this project's commands set `HEARTBEAT_SECONDS`). The open-source Prefect server does nothing
with them by itself: an automation must say "a run tagged `recordio-flow` that sent a heartbeat
and then neither another heartbeat nor a final state within `ZOMBIE_AFTER_SECONDS` is
Crashed" (Prefect's "Detect zombie flows" recipe, narrowed to this project's tag so other flows
on the same server, with other heartbeat settings, are left alone). `recflow serve` and
`recflow build` (against a configured server) install it once per server; the state change is
not forced, so a run that reached a final state is never touched.

A crashed run is retried from the UI like any other: open the run, Retry (or rerun the
deployment); the shards the dead run finished are reused.
"""

from __future__ import annotations

import os
from typing import Any

HEARTBEAT_SECONDS = 30  # Prefect's minimum
ZOMBIE_AFTER_SECONDS = 90  # three missed heartbeats
RUN_TAG = "recordio-flow"
AUTOMATION_NAME = "recordio-flow: crash runs that stopped sending heartbeats"


def set_heartbeat_default() -> None:
    """Heartbeats every `HEARTBEAT_SECONDS` for flow runs this process (and its children, such
    as `serve`'s run processes) starts, unless the environment already chose."""
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))


def zombie_automation(within_seconds: float = ZOMBIE_AFTER_SECONDS, name: str = AUTOMATION_NAME):
    """The automation (an `AutomationCore`) that marks silent `recordio-flow` runs Crashed."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if not within_seconds >= 10:  # Prefect's minimum for proactive triggers
        raise ValueError(f"within_seconds must be at least 10, got {within_seconds!r}")
    return AutomationCore(
        name=name,
        description="Flow runs of recordio-flow whose process died (no heartbeat for "
        f"{within_seconds:g} s) are marked Crashed; retry them from the run's page.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{RUN_TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {within_seconds:g} s: the run's process is gone "
                "(killed, out of memory, machine lost). Retry the run; finished shards are "
                "reused.",
            )
        ],
    )


def ensure_zombie_automation(client: Any, automation: Any = None) -> Any:
    """Create the automation on the server `client` talks to unless one of that name exists;
    return its id."""
    automation = automation or zombie_automation()
    existing = client.read_automations_by_name(automation.name)
    if existing:
        return existing[0].id
    return client.create_automation(automation)


def install(quiet: bool = False) -> bool:
    """Install the automation on the server in `PREFECT_API_URL`; False (with a warning on
    stderr) when that fails, which must not stop the command that asked."""
    import sys

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            ensure_zombie_automation(client)
    except Exception as exc:  # a missing automation is not worth failing a build
        print(
            f"recflow: warning: could not install the automation that marks dead runs "
            f"Crashed ({exc}); a killed run would stay Running in the UI",
            file=sys.stderr,
        )
        return False
    if not quiet:
        print(f"recflow: automation '{AUTOMATION_NAME}' is installed", file=sys.stderr)
    return True


if (
    __name__ == "__main__"
):  # `python -m recordio_flow.flows.zombies`: for servers fed by `prefect deploy`
    raise SystemExit(0 if install() else 1)
