"""Shared pytest fixtures: the MXNet oracle and a local S3 (moto) server.

Fixtures (all generic; reuse them from any test module):

- `mxnet_python` (session): path (str) of the MXNet 1.9.1 interpreter. Skips the test when
  the oracle is missing or broken, but FAILS when `CI=true` or `RECFLOW_REQUIRE_MXNET=1`.
  Run scripts under it with
  `oracle.run_mxnet(script, *args, cwd=None)` / `oracle.run_mxnet_json(...)`
  (`from oracle import run_mxnet`; `tests/` is on sys.path under pytest).

- `s3_server` (session): a `moto.server.ThreadedMotoServer` on 127.0.0.1 (free port), with
  dummy AWS credentials in the environment. Yields an `S3Server`, a named tuple that unpacks
  as `endpoint_url, storage_options = s3_server`:
    * `endpoint_url`: e.g. `http://127.0.0.1:38211`
    * `storage_options`: `{"endpoint_url": ..., "key": ..., "secret": ...}` for s3fs / fsspec
      (pass it untouched to `recordio_core` functions, `fsspec.filesystem("s3", **so)`, ...)
    * `make_bucket(name=None) -> str`: create a bucket (unique name if none given), return name
    * `url(bucket, *parts) -> str`: `s3://bucket/part/...`
    * `fs()`: an `s3fs.S3FileSystem` for it (listing cache off, so reads see fresh writes)
  The environment also gets `FSSPEC_S3_ENDPOINT_URL` so subprocesses started by a test (CLI,
  Prefect workers) reach the same server with plain `s3://` URLs. In-process code must still
  pass `storage_options`. Nothing ever talks to real AWS.

- `s3_bucket` (function): a fresh, empty bucket name on `s3_server`.

- `prefect_server` (session): ONE real `prefect server start` (UI, scheduler, automations) on a
  free loopback port with its own PREFECT_HOME, shared by the schedule, zombie and browser
  tests; a `prefect_server.PrefectServer` (`.url`, `.api_url`, `.client()`, `.env()`; see
  tests/prefect_server.py).

Lines appended to `prefect_server.LOUD` are printed at the end of the run (tests that could not
run on this machine say so there, not only as an "s" in the progress line).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from oracle import require_mxnet_python
from prefect_server import LOUD, start_server, stop

_DUMMY_KEY = "testing"
_DUMMY_SECRET = "testing"


@pytest.fixture(scope="session")
def mxnet_python() -> str:
    """The MXNet oracle interpreter (skip locally / fail under CI=true when unusable)."""
    return require_mxnet_python()


class S3Server(NamedTuple):
    """A running moto S3 server; unpacks as `(endpoint_url, storage_options)`."""

    endpoint_url: str
    storage_options: dict[str, Any]

    def fs(self) -> Any:
        """An s3fs filesystem for this server, without listing caches (fresh every call)."""
        import s3fs

        return s3fs.S3FileSystem(
            **self.storage_options, use_listings_cache=False, skip_instance_cache=True
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique `test-<hex>` name when none is given); return its name."""
        import boto3

        bucket = name or f"test-{uuid.uuid4().hex[:16]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=_DUMMY_KEY,
            aws_secret_access_key=_DUMMY_SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=bucket)
        return bucket

    @staticmethod
    def url(bucket: str, *parts: str) -> str:
        """`s3://bucket/part1/part2...`."""
        return "/".join([f"s3://{bucket}", *(p.strip("/") for p in parts)])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A local moto S3 server for the whole session (see the module docstring)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            mp.delenv(var, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", _DUMMY_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", _DUMMY_SECRET)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        no_proxy = ",".join(p for p in (os.environ.get("NO_PROXY"), "127.0.0.1,localhost") if p)
        mp.setenv("NO_PROXY", no_proxy)
        mp.setenv("no_proxy", no_proxy)
        storage_options = {"endpoint_url": endpoint, "key": _DUMMY_KEY, "secret": _DUMMY_SECRET}
        try:
            yield S3Server(endpoint, storage_options)
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh empty bucket on the session's moto server."""
    return s3_server.make_bucket()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Prefect server for the session (see the module docstring)."""
    server = start_server(tmp_path_factory.mktemp("prefect-server"))
    try:
        yield server
    finally:
        stop(server.proc)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in LOUD:
        terminalreporter.write_line(line, yellow=True, bold=True)
