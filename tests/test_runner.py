"""`run_flow_quietly` (flows/runner.py): the outcome of a flow run as `(ok, result or message)`.

The case that broke CI once: under load the client's request that sets the final Completed
state times out, the client sends it again, and the server (which had committed the first)
rejects the second with the stored state, which carries no result. The value the flow
returned is still in this process and must be what the command gets.
"""

from __future__ import annotations

import pytest
from pipeline_fixtures import prefect_harness  # noqa: F401  (fixture)
from prefect import flow

from recordio_flow.flows.runner import run_flow_quietly


@flow(persist_result=False)
def _returns(value: int) -> dict[str, int]:
    return {"value": value}


@flow(persist_result=False)
def _fails(path: str) -> None:
    raise ValueError(f"{path}: line 3: label 'x' is not a number")


def test_completed_run_gives_the_returned_value(prefect_harness):  # noqa: F811
    assert run_flow_quietly(_returns, {"value": 7}, heartbeats=False) == (True, {"value": 7})


def test_final_state_sent_twice_still_gives_the_value(prefect_harness, monkeypatch):  # noqa: F811
    from prefect.client.orchestration import SyncPrefectClient

    original = SyncPrefectClient.request
    rejected = []

    def twice(self, method, path, *args, **kwargs):
        response = original(self, method, path, *args, **kwargs)
        body = kwargs.get("json") or {}
        if path.endswith("/set_state") and body.get("state", {}).get("type") == "COMPLETED":
            # the HTTP retry of a request whose first copy did commit: same transition id
            response = original(self, method, path, *args, **kwargs)
            rejected.append(response.json()["status"])
        return response

    monkeypatch.setattr(SyncPrefectClient, "request", twice)
    assert run_flow_quietly(_returns, {"value": 3}, heartbeats=False) == (True, {"value": 3})
    assert rejected == ["REJECT"]  # the scenario really happened


def test_failed_run_gives_the_message(prefect_harness):  # noqa: F811
    ok, message = run_flow_quietly(_fails, {"path": "a.lst"}, heartbeats=False)
    assert not ok and message == "a.lst: line 3: label 'x' is not a number"


def test_interrupt_is_not_swallowed(prefect_harness, monkeypatch):  # noqa: F811
    @flow(persist_result=False)
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_flow_quietly(interrupted, {}, heartbeats=False)
