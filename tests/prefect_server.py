"""A real `prefect server start` (UI, scheduler and automations) for end-to-end tests.

The `prefect_server` fixture (session, in conftest.py) starts ONE server for every test that
needs the real thing (schedules firing, the UI in a browser, zombie detection); the lighter
`prefect_harness` of pipeline_fixtures serves the other tests. Helpers:

- `PrefectServer.client()`: a sync Prefect client for this server (context manager).
- `PrefectServer.env(**extra)`: the environment for subprocesses (`recflow serve`, ...) that
  must talk to it.
- `served(server, args, log)`: `recflow serve ARGS` as a subprocess for the length of a block.
- `wait_for_run(client, run_id, ...)`: poll a flow run until it reaches a final state.
- `prefect_command()`: the `prefect` CLI to run in a subprocess (`prefect deploy`, a worker).
- `LOUD`: lines printed at the end of the pytest run (conftest's terminal summary), for tests
  that could not run here and must not go unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LOUD: list[str] = []

# Short service loops: a schedule's runs are created within a second of `serve` registering
# it, and a served process polls for runs every second (defaults: 5 s and 10 s).
FAST_SETTINGS = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
}
_CLEAN = {
    "PREFECT_API_URL",
    "PREFECT_UI_API_URL",
    "PREFECT_PROFILE",
    "PREFECT_API_KEY",
    "PREFECT_LOGGING_LEVEL",
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY",
}


def prefect_command() -> list[str]:
    """The `prefect` CLI of this interpreter (its script, else `python -m prefect`)."""
    prefect = Path(sys.executable).with_name("prefect")
    return [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrefectServer:
    url: str  # the UI: http://127.0.0.1:PORT
    api_url: str  # http://127.0.0.1:PORT/api
    home: Path
    log: Path
    proc: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
            **FAST_SETTINGS,
        )
        env.update(extra)
        return env

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api_url}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_server(home: Path, timeout: float = 120.0) -> PrefectServer:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME (SQLite)."""
    import httpx

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_UI_API_URL=f"{url}/api",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **FAST_SETTINGS,
    )
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [*prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrefectServer(url, f"{url}/api", home, log, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server start exited:\n{server.log_tail()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"prefect server did not answer in {timeout:.0f}s:\n{server.log_tail()}")


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def served(server: PrefectServer, args: list[str], log: Path, **env: str) -> Iterator[Any]:
    """`recflow serve ARGS` against `server` for the length of the block (its deployments are
    deleted afterwards, with the scheduled runs they still had)."""
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recordio_flow.flows.cli", "serve", *args],
            cwd=ROOT,
            env=server.env(**env),
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        stop(proc)
        with server.client() as client:
            for dep in client.read_deployments():
                client.delete_deployment(dep.id)


def wait_for_deployment(client: Any, name: str, proc: Any, log: Path, timeout: float = 90.0):
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"recflow serve exited early:\n{log.read_text()[-3000:]}")
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            time.sleep(0.5)
    raise AssertionError(f"deployment {name} never appeared:\n{log.read_text()[-3000:]}")


def wait_for_run(client: Any, run_id: Any, log: Path, timeout: float = 150.0) -> Any:
    """The flow run once it is in a final state (AssertionError with the log otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.type.value in FINAL:
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish:\n{log.read_text()[-3000:]}")
