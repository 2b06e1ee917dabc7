"""A TCP proxy that makes a loopback server behave like an object store far away.

Every response waits `latency` seconds before its first byte reaches the client, as an S3
request waits 20-60 ms for its first byte. Put it in front of a moto server and point s3fs
at the proxy's URL:

    with LatencyProxy("127.0.0.1", moto_port, latency=0.040) as proxy:
        so = {"endpoint_url": proxy.url, "key": "testing", "secret": "testing"}
        ...
        proxy.stats()  # {"requests": ..., "max_in_flight": ..., ...}

How a response is recognised: on an HTTP/1.1 connection (no pipelining, as aiohttp and
botocore send), the first bytes from the server after the client has sent bytes start a
response. Those bytes are held for `latency` seconds; the rest of the response streams
through at loopback speed. An `Expect: 100-continue` upload is therefore charged twice (the
interim 100 and the final answer), as a real round trip would be.

Counters make latency testable without timing tests: `requests` (responses started),
`max_in_flight` (the most requests waiting for their first byte at once), `in_flight` (now),
`connections` (accepted so far), `bytes_up` / `bytes_down`. `reset_stats()` zeroes them;
`latency` can be changed while the proxy runs.

The proxy runs its own asyncio loop on a daemon thread and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any


class LatencyProxy:
    """Forward 127.0.0.1:<port> to `upstream_host:upstream_port`, delaying each response."""

    def __init__(self, upstream_host: str, upstream_port: int, latency: float = 0.040) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        self.upstream = (upstream_host, upstream_port)
        self.latency = latency
        self._lock = threading.Lock()
        self._stats: dict[str, int] = {}
        self.reset_stats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- counters ---------------------------------------------------------------------------
    def reset_stats(self) -> None:
        """Zero every counter (requests still waiting keep counting in `in_flight`)."""
        with self._lock:
            in_flight = self._stats.get("in_flight", 0)
            self._stats = {
                "requests": 0,
                "in_flight": in_flight,
                "max_in_flight": in_flight,
                "connections": 0,
                "bytes_up": 0,
                "bytes_down": 0,
            }

    def stats(self) -> dict[str, int]:
        """A copy of the counters (see the module docstring)."""
        with self._lock:
            return dict(self._stats)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n
            if key == "in_flight":
                self._stats["max_in_flight"] = max(
                    self._stats["max_in_flight"], self._stats["in_flight"]
                )

    # --- life cycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`: the endpoint URL to give s3fs / boto."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LatencyProxy:
        """Start listening on a free loopback port; return self."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            # Drop the open connections quietly: cancel their tasks and let them finish.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="latency-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("latency proxy did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop listening and end the loop thread (open connections are dropped)."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- one client connection ----------------------------------------------------------------
    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._count("connections")
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        # A request is waiting from the moment the client sends bytes until the first bytes
        # of the server's answer; those bytes are held for `latency` seconds.
        waiting = asyncio.Event()

        async def client_to_upstream() -> None:
            while data := await client_r.read(1 << 16):
                if not waiting.is_set():
                    waiting.set()
                    self._count("in_flight")
                self._count("bytes_up", len(data))
                up_w.write(data)
                await up_w.drain()
            with contextlib.suppress(OSError):
                up_w.write_eof()

        async def upstream_to_client() -> None:
            while data := await up_r.read(1 << 16):
                if waiting.is_set():
                    self._count("requests")
                    if self.latency:
                        await asyncio.sleep(self.latency)
                    waiting.clear()
                    self._count("in_flight", -1)
                self._count("bytes_down", len(data))
                client_w.write(data)
                await client_w.drain()

        up = asyncio.ensure_future(client_to_upstream())
        down = asyncio.ensure_future(upstream_to_client())
        try:
            # The connection lives as long as the server's side does; a client that resets
            # it ends it too.
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if up in done and up.exception() is None:
                await asyncio.gather(down, return_exceptions=True)
        finally:
            for task in (up, down):
                task.cancel()
            if waiting.is_set():
                self._count("in_flight", -1)
            for w in (client_w, up_w):
                with contextlib.suppress(Exception):
                    w.close()
