"""Run a flow from a command line and report its outcome without tracebacks."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

# What a flow call imports on first use (measured: ~0.3 s of a first run's critical path).
# `warm_up()` imports them while the temporary API is still starting.
_FIRST_RUN_MODULES = (
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "fastapi.encoders",
    "anyio._backends._asyncio",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
)


def warm_up() -> None:
    """Import what the first flow call would import lazily (call it while waiting for the
    API: the client has an idle core then). Missing optional modules are skipped."""
    for name in _FIRST_RUN_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def wait_for_api(api: Any) -> None:
    """Wait for a temporary API from `prefect_api()` (flows/local_api.py) (None: one is configured),
    importing what the flow will need meanwhile."""
    if api is not None:
        warm_up()
        api.wait_ready()


def run_flow_quietly(
    flow: Any, parameters: dict[str, Any], *, heartbeats: bool = True
) -> tuple[bool, Any]:
    """`(True, result)` or `(False, message)`; Prefect has already logged the details.

    `heartbeats=False` turns off flow-run heartbeats, which only serve a long-lived server's
    crash detection and cost about a second at the end of every run (a temporary local API
    stops with the command anyway). With heartbeats the run reports every
    `HEARTBEAT_SECONDS` (flows/zombies.py) (unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY says otherwise)
    and carries the `recordio-flow` tag, so the server's zombie automation watches it.
    """
    import os

    from prefect import tags
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from recordio_flow.flows.zombies import HEARTBEAT_SECONDS, RUN_TAG

    if not heartbeats:
        settings = temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    elif "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" not in os.environ:
        settings = temporary_settings(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}
        )
    else:
        settings = contextlib.nullcontext()
    # The value comes from the call, not from the final state: when the request that sets
    # Completed is retried by the client (a timeout under load), the server rejects the copy
    # and the engine's state becomes the stored one, which carries no result.
    with settings, tags(RUN_TAG):
        try:
            return True, flow(**parameters)
        except Exception as exc:  # the run failed; Prefect has logged it
            return False, str(exc) or type(exc).__name__
