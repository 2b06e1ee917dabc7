"""Run a flow from a command line and report its outcome without tracebacks."""

from __future__ import annotations

import contextlib
from typing import Any


def run_flow_quietly(
    flow: Any, parameters: dict[str, Any], *, heartbeats: bool = True
) -> tuple[bool, Any]:
    """`(True, result)` or `(False, message)`; Prefect has already logged the details.

    `heartbeats=False` turns off flow-run heartbeats, which only serve a long-lived server's
    crash detection and cost about a second at the end of every run (a temporary local API
    stops with the command anyway).
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    quiet = (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
        if not heartbeats
        else contextlib.nullcontext()
    )
    with quiet:
        state = flow(**parameters, return_state=True)
    if state.is_completed():
        return True, state.result()
    exc = state.result(raise_on_failure=False)
    message = str(exc) if isinstance(exc, BaseException) else (state.message or state.name)
    return False, message
