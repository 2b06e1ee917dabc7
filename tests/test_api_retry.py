"""flows/api_retry.py: a request the app answers 503 is tried again inside the server, with
its body and a fresh scope, and only the last 503 reaches the client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from recordio_flow.flows.api_retry import RetryUnavailable


class FlakyApp:
    """Answers 503 to the first `failures` requests, then 200 with the body it read. With
    `raise_after`, raises after answering 503 (as Starlette's error middleware does)."""

    def __init__(self, failures: int, raise_after: bool = False) -> None:
        self.failures = failures
        self.raise_after = raise_after
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            self.calls.append((scope["type"], b""))
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope["path"], body))
        scope["path"] = "/mounted" + scope["path"]  # routing writes into the scope
        if len(self.calls) <= self.failures:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"unavailable"})
            if self.raise_after:
                raise RuntimeError("database is locked")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got " + body})


def request(app: Any, body_parts: tuple[bytes, ...] = (b"ab", b"cd")) -> list[dict[str, Any]]:
    """Send one POST with its body in parts; the messages the client received."""
    incoming = [
        {"type": "http.request", "body": part, "more_body": i < len(body_parts) - 1}
        for i, part in enumerate(body_parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v2/increment"}
    asyncio.run(app(scope, receive, send))
    return sent


def statuses(sent: list[dict[str, Any]]) -> list[int]:
    return [m["status"] for m in sent if m["type"] == "http.response.start"]


@pytest.mark.parametrize("raise_after", [False, True])
def test_a_503_is_tried_again_with_the_same_body_and_scope(raise_after):
    app = FlakyApp(failures=2, raise_after=raise_after)
    wrapped = RetryUnavailable(app, delays=(0, 0, 0))
    sent = request(wrapped)
    assert statuses(sent) == [200]
    assert sent[-1]["body"] == b"got abcd"
    assert app.calls == [("/api/v2/increment", b"abcd")] * 3
    assert wrapped.retried == 2


def test_the_last_503_reaches_the_client():
    app = FlakyApp(failures=10)
    wrapped = RetryUnavailable(app, delays=(0, 0))
    sent = request(wrapped)
    assert statuses(sent) == [503]
    assert [m.get("body") for m in sent[1:]] == [b"unavailable"]
    assert len(app.calls) == 3


def test_the_last_try_raises_as_the_app_did():
    wrapped = RetryUnavailable(FlakyApp(failures=10, raise_after=True), delays=(0,))
    with pytest.raises(RuntimeError, match="database is locked"):
        request(wrapped)


def test_other_answers_and_other_scopes_pass_through_once():
    app = FlakyApp(failures=0)
    wrapped = RetryUnavailable(app, delays=(0,))
    assert statuses(request(wrapped, (b"x",))) == [200]
    assert wrapped.retried == 0

    async def nothing() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def drop(message: Any) -> None:
        pass

    asyncio.run(wrapped({"type": "lifespan"}, nothing, drop))
    asyncio.run(wrapped({"type": "websocket", "path": "/events"}, nothing, drop))
    assert [c[0] for c in app.calls[1:]] == ["lifespan", "websocket"]


def test_delays_are_checked():
    with pytest.raises(ValueError, match="retry delays must be >= 0"):
        RetryUnavailable(FlakyApp(0), delays=(0.1, -1))
