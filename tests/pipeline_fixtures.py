"""Fixtures for the Prefect pipeline tests (import with `from pipeline_fixtures import *`).

- `prefect_harness` (session): ONE `prefect_test_harness` server for the whole session (it
  takes ~10 s to start), shared by every module that uses it, with test settings: a temporary
  PREFECT_HOME, no analytics, WARNING logs, no flow heartbeats. Yields the API URL.
- `image_tree(root, classes=3, per_class=6)`: a small deterministic folder of JPEG/PNG images
  in class folders.
- `FlakyFileSystem` (protocol `flaky://`): the local filesystem, except that writing a file
  whose name contains one of `FlakyFileSystem.fail_names` fails (once per name) half way.
- `SlowFileSystem` (`slow://`): local files, each whole-file read delayed.
- `MeetingFileSystem` (`meet://`): local files; the first two `.idx` files opened for writing
  wait for each other, so two pack tasks provably run at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

_HOME = tempfile.mkdtemp(prefix="recflow-prefect-home-")
_TEST_ENV = {
    "PREFECT_HOME": _HOME,
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}
for _k, _v in _TEST_ENV.items():
    os.environ.setdefault(_k, _v)

_STATE: dict[str, Any] = {}


def subprocess_env() -> dict[str, str]:
    """Environment for subprocesses that must talk to the harness server."""
    env = dict(os.environ)
    env.update(_TEST_ENV)
    if "url" in _STATE:
        env["PREFECT_API_URL"] = _STATE["url"]
    return env


@pytest.fixture(scope="session")
def prefect_harness() -> str:
    """Start the shared harness once (later requests reuse it); stopped at interpreter exit."""
    if "url" not in _STATE:
        import atexit

        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
            PREFECT_LOCAL_STORAGE_PATH,
            PREFECT_SERVER_ANALYTICS_ENABLED,
            temporary_settings,
        )
        from prefect.testing.utilities import prefect_test_harness

        stack = contextlib.ExitStack()
        stack.enter_context(prefect_test_harness(server_startup_timeout=90))
        # also right when another module imported Prefect before this one set the environment
        stack.enter_context(
            temporary_settings(
                updates={
                    PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                    PREFECT_LOCAL_STORAGE_PATH: os.path.join(_HOME, "storage"),
                    PREFECT_SERVER_ANALYTICS_ENABLED: False,
                }
            )
        )
        _STATE["url"] = PREFECT_API_URL.value()
        _STATE["stack"] = stack
        atexit.register(stack.close)
    return _STATE["url"]


def _pixels(kind: int, i: int, w: int, h: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(100 * kind + i)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    v = np.sin((x * (kind + 1) + y * (i % 3 + 1)) / 5.0)
    base = rng.uniform(50, 200, size=3)
    arr = base[None, None, :] + 50 * v[..., None] + rng.normal(0, 5, size=(h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def image_tree(root: Path, classes: int = 3, per_class: int = 6) -> dict[str, bytes]:
    """Write `classes` folders of `per_class` small images under `root`; return rel -> bytes."""
    from PIL import Image

    out: dict[str, bytes] = {}
    for c in range(classes):
        for i in range(per_class):
            w, h = 40 + 4 * i, 30 + 3 * c
            img = Image.fromarray(_pixels(c, i, w, h), "RGB")
            buf = io.BytesIO()
            ext = ".png" if i % 3 == 2 else ".jpg"
            img.save(buf, format="PNG" if ext == ".png" else "JPEG", quality=90)
            rel = f"class{c}/img{i:02d}{ext}"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue())
            out[rel] = buf.getvalue()
    return out


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- fault injection
from fsspec.implementations.local import LocalFileSystem  # noqa: E402
from fsspec.registry import register_implementation  # noqa: E402


class _FailingWriter(io.RawIOBase):
    """Accepts one write, then fails like a dropped connection."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        self.name = name
        self.calls = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.calls += 1
        if self.calls > 1:
            raise ConnectionResetError(f"injected failure while writing {self.name}")
        return self.inner.write(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


class _NamedLocalFileSystem(LocalFileSystem):
    """Local files under the protocol name in `protocol` (folders made on write)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_mkdir", True)
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        prefix = f"{cls.protocol[0]}://"
        if path.startswith(prefix):
            path = path[len(prefix) :]
        return LocalFileSystem._strip_protocol(path)


class FlakyFileSystem(_NamedLocalFileSystem):
    """`flaky:///path`: local files; the first write to a name containing one of `fail_names`
    fails after its first chunk, and the first whole-file read of a name containing one of
    `fail_reads` fails like a dropped connection."""

    protocol = ("flaky",)
    fail_names: set[str] = set()
    fail_reads: set[str] = set()
    failed: list[str] = []

    def cat_file(self, path: str, start: Any = None, end: Any = None, **kwargs: Any) -> bytes:
        for name in list(self.fail_reads):
            if name in str(path):
                self.fail_reads.discard(name)
                self.failed.append(str(path))
                raise ConnectionResetError(f"injected failure while reading {path}")
        return super().cat_file(path, start=start, end=end, **kwargs)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode, **kwargs)
        if "w" in mode:
            for name in list(self.fail_names):
                if name in path:
                    self.fail_names.discard(name)
                    self.failed.append(path)
                    return _FailingWriter(f, path)
        return f


register_implementation("flaky", FlakyFileSystem, clobber=True)


class SlowFileSystem(_NamedLocalFileSystem):
    """`slow:///path`: local files, each whole-file read delayed by `RECFLOW_TEST_SLOW_READ`
    seconds (to stretch a build so a test can kill it half way)."""

    protocol = ("slow",)

    def cat_file(self, path: str, start: Any = None, end: Any = None, **kwargs: Any) -> bytes:
        import time

        time.sleep(float(os.environ.get("RECFLOW_TEST_SLOW_READ", "0")))
        return super().cat_file(path, start=start, end=end, **kwargs)


register_implementation("slow", SlowFileSystem, clobber=True)


class MeetingFileSystem(_NamedLocalFileSystem):
    """`meet:///path`: local files, except that the first `parties` writes of an `.idx` (one
    per pack task, in the task's own thread) wait for each other, up to `timeout` seconds. Call
    `reset()` first; `met` then names the files whose writers met (empty if they never did)."""

    protocol = ("meet",)
    parties = 2
    timeout = 60.0
    met: list[str] = []
    _lock = threading.Lock()
    _opened = 0
    _barrier = threading.Barrier(parties)

    @classmethod
    def reset(cls) -> None:
        cls.met, cls._opened, cls._barrier = [], 0, threading.Barrier(cls.parties)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode and ".idx" in path:
            cls = type(self)
            with cls._lock:
                cls._opened += 1
                waits = cls._opened <= cls.parties
            if waits:
                try:
                    cls._barrier.wait(timeout=cls.timeout)
                    cls.met.append(path)
                except threading.BrokenBarrierError:
                    pass  # not met: `met` stays short and the test says so
        return super()._open(path, mode, **kwargs)


register_implementation("meet", MeetingFileSystem, clobber=True)
