"""Prefect's temporary local API, started early and stopped cleanly, for `recflow build` and
`make demo` when no Prefect server is configured.

Without `PREFECT_API_URL`, Prefect itself starts a temporary API server on first use: it first
imports the whole server application into the client process (seconds) and only then starts
the server subprocess (which imports it again) and waits for it. Starting that same server
subprocess ourselves *before* importing Prefect lets both imports run at once and skips the
client-side one, which cuts the command's fixed cost by several seconds. The command runs
exactly the app Prefect runs (`prefect.server.api.server:create_app`, UI off, the same
environment; `flows/api_server.py` says how it starts sooner), points `PREFECT_API_URL` at
it, and at the end drains Prefect's log and event queues before stopping it, so nothing is
lost and no connection errors are printed. The server ignores Ctrl-C (flows/api_server.py):
an interrupted command still records its crashed run there, then stops it the same way
(waiting first for a server still starting).

When an API URL is configured (environment or the active Prefect profile), nothing is started.
This module imports no Prefect at import time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

DEFAULT_STARTUP_TIMEOUT = 90.0  # a first start creates the database: ~15 s on a busy 2-core box
STOP_WHILE_STARTING_WAIT = 15.0  # seconds a stop waits for a server still starting
PORT_IN_USE_EXIT = (
    3  # recordio_flow.flows.api_server's (and uvicorn's) exit code when it cannot bind
)


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active profile (without importing Prefect;
    when Prefect is already imported, its current settings decide)."""
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles_path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        doc = tomllib.loads(profiles_path.expanduser().read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or doc.get("active") or "ephemeral"
    value = doc.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(value) if value else None


# The temporary API's task-run recorder writes the runs' state events in batches instead of
# one transaction per event (Prefect's default batch size is 1): at 100k small files in 50
# shards (104 task runs) the server's CPU went from 20.5 s to 13.1 s and the build's wall time
# from 40 s to 30 s on 2 cores, every task run still recorded. Events wait at most a second
# and are flushed when the server stops. The environment, if it sets these, wins.
TEMPORARY_API_TUNING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalAPI:
    """One temporary Prefect API server subprocess on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._ready = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, output: IO[bytes] | None = None) -> None:
        """Start the server in a child process; its log goes to `output` (a file opened for
        writing) or, by default, to this process's stdout and stderr."""
        if importlib.util.find_spec("prefect") is None:
            raise RuntimeError("prefect is not installed")
        self.port = _free_port()
        env = {
            **TEMPORARY_API_TUNING,
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        args = [sys.executable, "-m", "recordio_flow.flows.api_server", str(self.port)]
        self.process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
        self._output = output
        os.environ["PREFECT_API_URL"] = self.api_url
        os.environ.setdefault("PREFECT_UI_URL", "")  # no UI here: print no "View at" links

    def wait_ready(self, timeout: float | None = None) -> None:
        if timeout is None:
            raw = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
            timeout = max(float(raw), DEFAULT_STARTUP_TIMEOUT) if raw else DEFAULT_STARTUP_TIMEOUT
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            code = self.process.poll()
            if code == PORT_IN_USE_EXIT:
                self.start(self._output)  # the port was taken in between: try another one
                continue
            if code is not None:
                raise RuntimeError(f"the temporary Prefect API exited with code {code}")
            if self._healthy():
                self._ready = True
                return
            time.sleep(0.05)
        raise RuntimeError(f"the temporary Prefect API did not start within {timeout:.0f} s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Drain Prefect's log and event queues into the API, then stop the server."""
        if self.process is None:
            return
        if "prefect" in sys.modules:
            with contextlib.suppress(Exception):
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=10)
                EventsWorker.drain_all(timeout=10)
        process, self.process = self.process, None
        try:
            self._wait_started(process)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        except KeyboardInterrupt:  # Ctrl-C again while it stops: now
            process.kill()
            process.wait()
            raise
        finally:
            if os.environ.get("PREFECT_API_URL") == self.api_url:
                del os.environ["PREFECT_API_URL"]

    def _wait_started(self, process: subprocess.Popen[bytes]) -> None:
        """A server stopped while still starting (Ctrl-C early in the command) is let finish
        starting first: Prefect's app fails its shutdown with a traceback when stopped
        half-way."""
        deadline = time.monotonic() + STOP_WHILE_STARTING_WAIT
        while not self._ready and process.poll() is None and time.monotonic() < deadline:
            self._ready = self._healthy()
            if not self._ready:
                time.sleep(0.05)


@contextlib.contextmanager
def prefect_api() -> Iterator[LocalAPI | None]:
    """Use the configured Prefect API, or run a temporary one for the block.

    Call it before importing Prefect (so the server starts while Prefect imports), then import
    and call `ready()` on the yielded object (or nothing when an API is configured).
    """
    if configured_api_url():
        yield None
        return
    api = LocalAPI()
    api.start()
    try:
        yield api
    finally:
        api.stop()
