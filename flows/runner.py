"""Run a flow from a command line and report its outcome without tracebacks."""

from __future__ import annotations

from typing import Any


def run_flow_quietly(flow: Any, parameters: dict[str, Any]) -> tuple[bool, Any]:
    """`(True, result)` or `(False, message)`; Prefect has already logged the details."""
    state = flow(**parameters, return_state=True)
    if state.is_completed():
        return True, state.result()
    exc = state.result(raise_on_failure=False)
    message = str(exc) if isinstance(exc, BaseException) else (state.message or state.name)
    return False, message
