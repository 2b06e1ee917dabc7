"""An ASGI wrapper that retries, inside the server, an HTTP request its app answered with
503 Service Unavailable, a few times and soon, before passing the 503 on.

Prefect's API answers 503 for an error a client may retry (`custom_internal_exception_handler`
in `prefect.server.api.server`), and its client retries after 2 s or more (exponential
back-off). On SQLite the common case is "database is locked" from a transaction that read,
then wanted to write after another writer had committed: the concurrency-slot request every
tagged task run makes on starting (`/v2/concurrency_limits/increment-with-lease`) meets it
while the server records task runs and logs. Both of a build's pack slots then waited ~2 s,
five times in a 1.28 M-image build (10 s of 60). Tried again at once, such a request almost
always succeeds.

A retry here is the client's retry, sooner: the app rolled the failed transaction back
before answering 503, and the client would send the same request again. Only a response
that starts with 503 is held back (with the error Starlette raises after answering it);
any other response, and the last 503, is passed on as it comes. The request's body
is read whole first (Prefect's requests are small JSON) and each try gets a fresh copy of the
request's scope; websockets and lifespan pass through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_DELAYS = (0.01, 0.03, 0.1, 0.2, 0.4)  # seconds before each retry: 0.74 s in all
SERVICE_UNAVAILABLE = 503


class RetryUnavailable:
    """`app`, with each HTTP request it answers 503 tried again after each of `delays`."""

    def __init__(self, app: ASGIApp, delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        if any(d < 0 for d in delays):
            raise ValueError(f"retry delays must be >= 0 seconds, got {delays!r}")
        self.app = app
        self.delays = delays
        self.retried = 0  # requests answered 503 and tried again (for tests and tuning)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.delays:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        original = dict(scope)  # routing writes into the scope (a mount's path, the route)
        for delay in (*self.delays, None):
            attempt = _Attempt(body, receive, send, hold_unavailable=delay is not None)
            try:
                await self.app(dict(original), attempt.receive, attempt.send)
            except Exception:
                # Starlette raises the error again once its handler has answered (for the
                # server's log): a held 503 is retried, anything else goes on as it was
                if not attempt.held:
                    raise
            if not attempt.held:
                return
            self.retried += 1
            await asyncio.sleep(delay or 0)


async def _read_body(receive: Receive) -> list[Message]:
    """The request's body messages, up to the last one (`more_body` false)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


class _Attempt:
    """One call of the app: the request's body again, then the client's own `receive`; its
    response is passed on, unless it starts with 503 and `hold_unavailable` (then dropped)."""

    def __init__(
        self, body: list[Message], receive: Receive, send: Send, *, hold_unavailable: bool
    ) -> None:
        self._body = list(body)
        self._receive = receive
        self._send = send
        self._hold = hold_unavailable
        self.held = False

    async def receive(self) -> Message:
        if self._body:
            return self._body.pop(0)
        return await self._receive()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._hold:
            self.held = message.get("status") == SERVICE_UNAVAILABLE
        if not self.held:
            await self._send(message)
