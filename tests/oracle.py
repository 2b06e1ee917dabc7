"""The MXNet 1.9.1 oracle: run small scripts under the separate `.venv-mxnet` interpreter.

MXNet cannot live in the project venv (it needs numpy 1.23), so cross-checks run a script under
its own Python and compare results. Use it from tests like this::

    from oracle import run_mxnet, run_mxnet_json   # tests/ is on sys.path under pytest

    def test_something(mxnet_python, tmp_path):          # fixture: skip/fail if missing
        out = run_mxnet_json(SCRIPT, str(tmp_path / "a.rec"))   # last stdout line as JSON
        proc = run_mxnet("import mxnet, sys; print(sys.argv[1])", "x", cwd=tmp_path)

The interpreter is `$RECFLOW_MXNET_PYTHON` (a relative path is taken from the repo root),
else `<repo>/.venv-mxnet/bin/python` (`make mxnet-venv` builds it). When it is missing, tests
are skipped locally but FAIL when `CI=true` (or `RECFLOW_REQUIRE_MXNET=1`), so CI can never go
green without the cross-checks.
MXNet's import takes 1-2 s: batch several checks into one script.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MXNET_PYTHON = REPO_ROOT / ".venv-mxnet" / "bin" / "python"
EXPECTED_MXNET_VERSION = "1.9.1"


class OracleError(RuntimeError):
    """A script run under the MXNet interpreter failed; the message carries its stderr."""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("true", "1", "yes")


def in_ci() -> bool:
    """True when a missing oracle must fail the run: in CI (`CI=true`, `1` or `yes`), or when
    `RECFLOW_REQUIRE_MXNET` is set the same way (e.g. by `make test`)."""
    return _truthy("CI") or _truthy("RECFLOW_REQUIRE_MXNET")


def mxnet_python_path() -> Path:
    """Where the oracle interpreter should be (it may not exist)."""
    configured = os.environ.get("RECFLOW_MXNET_PYTHON", "").strip()
    if not configured:
        return DEFAULT_MXNET_PYTHON
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def _oracle_env() -> dict[str, str]:
    env = dict(os.environ)
    # Keep the oracle off the project's packages and polite on a small shared machine.
    env.pop("PYTHONPATH", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@functools.lru_cache(maxsize=1)
def _probe(python: str) -> tuple[bool, str]:
    """Check once per session that `python` runs and imports mxnet; return (ok, why not)."""
    if not Path(python).is_file():
        return False, f"MXNet oracle interpreter not found at {python} (run `make mxnet-venv`)"
    try:
        proc = subprocess.run(
            [python, "-c", "import mxnet; print(mxnet.__version__)"],
            capture_output=True,
            text=True,
            timeout=300,
            env=_oracle_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"MXNet oracle interpreter {python} could not run: {exc}"
    if proc.returncode != 0:
        return False, f"{python} cannot import mxnet:\n{proc.stderr.strip()[-2000:]}"
    version = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"
    if version != EXPECTED_MXNET_VERSION:
        return False, f"{python} has mxnet {version}, expected {EXPECTED_MXNET_VERSION}"
    return True, ""


def require_mxnet_python() -> str:
    """The oracle interpreter's path; skips the test if unusable (fails instead when CI=true)."""
    python = str(mxnet_python_path())
    ok, why = _probe(python)
    if not ok:
        if in_ci():
            pytest.fail(
                f"the MXNet oracle is required here (CI / RECFLOW_REQUIRE_MXNET) but unusable: "
                f"{why}",
                pytrace=False,
            )
        pytest.skip(why)
    return python


def run_mxnet(
    script: str,
    *args: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    input: str | bytes | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run Python source `script` under the MXNet interpreter with `sys.argv[1:] = args`.

    Returns the completed process (text stdout/stderr). Raises `OracleError` with the script's
    stderr if it exits non-zero. Skips (or fails under CI) if the oracle is unusable.
    """
    python = require_mxnet_python()
    cmd = [python, "-c", script, *map(str, args)]
    text_input = input.decode() if isinstance(input, bytes) else input
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        input=text_input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_oracle_env(),
    )
    if proc.returncode != 0:
        raise OracleError(
            f"MXNet oracle script failed with exit code {proc.returncode}\n"
            f"--- stderr ---\n{proc.stderr.strip()[-6000:]}\n"
            f"--- stdout ---\n{proc.stdout.strip()[-2000:]}"
        )
    return proc


def run_mxnet_json(
    script: str, *args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None
) -> Any:
    """`run_mxnet` and parse the last non-empty stdout line as JSON (the script's answer)."""
    proc = run_mxnet(script, *args, cwd=cwd)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise OracleError(f"MXNet oracle script printed nothing; stderr:\n{proc.stderr[-4000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise OracleError(
            f"last stdout line of the oracle script is not JSON ({exc}): {lines[-1][:500]!r}"
        ) from None


if __name__ == "__main__":  # `python tests/oracle.py`: show what the tests would use
    path = mxnet_python_path()
    ok, why = _probe(str(path))
    print(f"{path}: {'ok' if ok else why}")
    sys.exit(0 if ok else 1)
