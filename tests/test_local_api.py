"""The temporary Prefect API behind `recflow build` and `make demo` (no server configured):
the migration shortcut of flows/api_server.py, and two real runs in a fresh PREFECT_HOME (the
first creates the database, the second skips the migrations) that print no ERROR or traceback.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_fixtures import image_tree

from recordio_flow.flows.api_server import (
    database_is_current,
    database_revisions,
    migration_heads,
    sqlite_database_path,
)

ROOT = Path(__file__).resolve().parent.parent


def _script(path: Path, revision: str, down: str) -> None:
    path.write_text(f'"""m"""\nrevision = "{revision}"\ndown_revision = {down}\n')


@pytest.mark.parametrize(
    ("scripts", "heads"),
    [
        ([], set()),
        ([("a", "None")], {"a"}),
        ([("a", "None"), ("b", '"a"'), ("c", '"b"')], {"c"}),
        ([("a", "None"), ("b", '"a"'), ("c", '"a"')], {"b", "c"}),  # two branches
        ([("a", "None"), ("b", '"a"'), ("c", '"a"'), ("d", '("b", "c")')], {"d"}),  # merge
        ([("a", "None"), ("b", "'a'")], {"b"}),  # single quotes
    ],
)
def test_migration_heads(tmp_path, scripts, heads):
    for i, (rev, down) in enumerate(scripts):
        _script(tmp_path / f"{i:03d}_m.py", rev, down)
    (tmp_path / "README").write_text("revision = 'zzz'\n")  # not a script
    assert migration_heads(tmp_path) == heads


def test_prefects_own_scripts_have_one_head():
    import prefect.server.database

    versions = Path(prefect.server.database.__file__).parent / "_migrations/versions/sqlite"
    assert len(migration_heads(versions)) == 1


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////tmp/x/prefect.db", Path("/tmp/x/prefect.db")),
        ("sqlite+aiosqlite:///rel.db", Path("rel.db")),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite:///file:x?mode=memory&uri=true", None),
        ("postgresql+asyncpg://u:p@db/prefect", None),
        ("", None),
    ],
)
def test_sqlite_database_path(url, path):
    assert sqlite_database_path(url) == path


def test_database_is_current(tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    _script(versions / "1.py", "a", "None")
    _script(versions / "2.py", "b", '"a"')
    db = tmp_path / "prefect.db"
    url = f"sqlite+aiosqlite:///{db}"
    assert not database_is_current(url, versions)  # no database yet: migrate
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE other (x)")
    assert database_revisions(db) == set()
    assert not database_is_current(url, versions)  # no alembic_version table
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.execute("INSERT INTO alembic_version VALUES ('a')")
    assert not database_is_current(url, versions)  # behind
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'b'")
    assert database_is_current(url, versions)
    assert not database_is_current("postgresql+asyncpg://db/prefect", versions)
    (db).write_bytes(b"not a database at all")
    assert not database_is_current(url, versions)


def test_recflow_build_on_the_temporary_api_twice(tmp_path):
    image_tree(tmp_path / "src", classes=2, per_class=4)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") or k == "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    }
    env.update(PREFECT_HOME=str(tmp_path / "home"), DO_NOT_TRACK="1")
    for run in (1, 2):
        out = tmp_path / f"out{run}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "recordio_flow.flows.cli",
                "build",
                str(tmp_path / "src"),
                str(out),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        text = proc.stdout + proc.stderr
        assert proc.returncode == 0, text
        assert "8 records" in proc.stdout
        assert "(listed while Prefect started)" in text  # recordio_flow.tasks.listing_prefetch
        assert "ERROR" not in text and "Traceback" not in text, text
        assert (out / "manifest.json").is_file()
    db = tmp_path / "home" / "prefect.db"
    assert len(database_revisions(db)) == 1
    # the task-run recorder batches (flows/local_api.py's TEMPORARY_API_TUNING): still, every task
    # run of both runs is in the database, Completed, once the command has returned
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT id, state_type FROM flow_run").fetchall()
        assert len(runs) == 2 and {state for _, state in runs} == {"COMPLETED"}
        for run_id, _ in runs:
            states = conn.execute(
                "SELECT state_type, count(*) FROM task_run WHERE flow_run_id = ? "
                "GROUP BY state_type",
                (run_id,),
            ).fetchall()
            # list, split, plan, pack, validate, manifest: one shard of 8 images
            assert states == [("COMPLETED", 6)], states


def _group(pgid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of the live processes in process group `pgid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append((int(name), fields[0], cmd))
    return out


# Runs `argv[1:]` with SIGINT at its default disposition. A shell starting background jobs
# (`make test &`, `nohup`) ignores SIGINT, every child inherits that across exec, and Python
# then installs no KeyboardInterrupt handler: a test that sends SIGINT would test the caller's
# shell, not the command. Popen's restore_signals covers SIGPIPE/SIGXFSZ only, and a
# preexec_fn is unsafe in the threaded pytest process; this step costs one small exec.
_SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def with_default_sigint(argv: list[str]) -> list[str]:
    """`argv` started through a tiny interpreter that resets SIGINT to SIG_DFL, then execs it
    (same process, so the same pid and process group)."""
    return [sys.executable, "-I", "-S", "-c", _SIGINT_DEFAULT, *argv]


def test_a_child_started_by_these_tests_gets_sigint_even_if_the_caller_ignores_it():
    """As under `nohup` or `make test &`: the parent ignores SIGINT; the command started by
    `with_default_sigint` still has Python's KeyboardInterrupt handler."""
    import json

    probe = [
        sys.executable,
        "-c",
        "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)",
    ]
    caller = (
        "import json, signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print(*(subprocess.run(a, capture_output=True, text=True, check=True).stdout.strip() "
        "for a in json.loads(sys.argv[1])))"
    )
    argvs = json.dumps([probe, with_default_sigint(probe)])
    out = subprocess.run(
        [sys.executable, "-c", caller, argvs], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True"], out  # ignored when started plainly; handled through it


def _build_in_its_own_group(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """`recflow build SRC OUT ARGS` on a temporary API in a fresh PREFECT_HOME, as the leader
    of its own process group (so SIGINT can reach the group, as from a terminal), with SIGINT
    at its default even if this process ignores it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), DO_NOT_TRACK="1")
    return subprocess.Popen(
        with_default_sigint(
            [sys.executable, "-m", "recordio_flow.flows.cli", "build"]
            + [str(tmp_path / "src"), str(tmp_path / "o"), *args]
        ),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _assert_group_ends(pgid: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group(pgid) == []


def test_ctrl_c_while_recflow_build_starts_ends_quietly(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once the listing's
    child runs, while the temporary API is still starting: the command says it was
    interrupted, exits 130, prints no traceback from any of its processes (the forkserver's
    preload import and the API server's own import once did), and none of them outlives it."""
    import signal
    import time

    image_tree(tmp_path / "src", classes=2, per_class=3)
    proc = _build_in_its_own_group(tmp_path)
    deadline = time.monotonic() + 60
    # the forkserver and the listing child forked from it: the command is past starting them
    while sum("forkserver" in cmd for _, _, cmd in _group(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "recflow: interrupted" in out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    _assert_group_ends(proc.pid)


def test_ctrl_c_during_the_flow_run_records_the_crash_and_ends(tmp_path):
    """Ctrl-C once the flow runs on the temporary API: the server ignores it, so the command
    records the run as Crashed there and stops it, instead of retrying requests against a
    server that had stopped itself (it used to hang for minutes)."""
    import signal
    import time

    image_tree(tmp_path / "src", classes=4, per_class=200)
    proc = _build_in_its_own_group(tmp_path, "--resize", "24", "--num-workers", "1")
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "Beginning flow run" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    start = time.monotonic()
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert time.monotonic() - start < 60
    assert "Traceback" not in out and "Error logging to API" not in out, out
    assert "recflow: interrupted" in out
    with sqlite3.connect(tmp_path / "home" / "prefect.db") as conn:
        states = [s for (s,) in conn.execute("SELECT state_type FROM flow_run")]
    assert states == ["CRASHED"]
    _assert_group_ends(proc.pid)
