"""The temporary Prefect API server process that `recordio_flow.flows.local_api` starts.

    python -m recordio_flow.flows.api_server PORT

It serves exactly what Prefect's own temporary server serves (`create_app` with UI and
long-lived services off, as `prefect.server.api.server.SubprocessASGIServer` does) on
127.0.0.1:PORT, and exits with code 3 when the port cannot be bound (as uvicorn's command
does). A request the app answers 503 (a retryable error: on SQLite, "database is locked")
is tried again inside the server a few times within a second before the 503 goes out
(`recordio_flow.flows.api_retry`; Prefect's client waits 2 s or more before its own retry).
Two things make it start sooner than `python -m uvicorn ...`, and both leave what it serves
unchanged:

- the garbage collector is paused while Prefect's server modules import and the app is built
  (hundreds of thousands of pydantic/SQLAlchemy objects, none of them garbage; 0.4-0.5 s of
  a 3 s import on these machines), then the survivors are frozen out of later collections;
- the database migrations are skipped when the SQLite database already carries the newest
  revision shipped with this Prefect (`alembic upgrade head` would find nothing to do after
  loading every migration script: 0.3-0.4 s). Any doubt (another database, an unreadable
  file, an older revision, an unknown layout of Prefect's migration scripts) runs them.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from recordio_flow.flows.api_retry import RetryUnavailable
from recordio_flow.flows.gcfreeze import frozen_imports

STARTUP_FAILURE_EXIT = 3  # what `uvicorn` exits with when it cannot bind

_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([0-9A-Za-z_]+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)
_QUOTED = re.compile(r"['\"]([0-9A-Za-z_]+)['\"]")


def migration_heads(versions_dir: Path) -> set[str]:
    """The head revisions of the alembic scripts in `versions_dir` (revisions no script names
    as its `down_revision`); empty when the directory holds no readable scripts."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions_dir.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        rev = _REVISION.search(text)
        if rev is None:
            continue
        revisions.add(rev.group(1))
        down = _DOWN_REVISION.search(text)
        if down is not None:
            parents.update(_QUOTED.findall(down.group(1)))
    return revisions - parents


def sqlite_database_path(connection_url: str) -> Path | None:
    """The file behind a `sqlite+aiosqlite:///...` URL, or None for anything else."""
    match = re.fullmatch(r"sqlite\+aiosqlite:///([^?]+)", connection_url)
    if match is None or match.group(1) in (":memory:", ""):
        return None
    return Path(match.group(1))


def database_revisions(path: Path) -> set[str]:
    """The revisions recorded in a SQLite database's `alembic_version` table (read-only)."""
    if not path.is_file():
        return set()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return set()
    return {str(row[0]) for row in rows}


def database_is_current(connection_url: str, versions_dir: Path) -> bool:
    path = sqlite_database_path(connection_url)
    if path is None:
        return False
    try:
        heads = migration_heads(versions_dir)
    except OSError:
        return False
    return len(heads) == 1 and database_revisions(path) == heads


def _sigterm_only_server() -> type:
    import uvicorn

    class SigtermOnlyServer(uvicorn.Server):
        """uvicorn's server, shut down by SIGTERM only (it also takes SIGINT by default)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = signal.signal(signal.SIGTERM, self.handle_exit)
            try:
                yield
            finally:
                signal.signal(signal.SIGTERM, previous)

    return SigtermOnlyServer


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m recordio_flow.flows.api_server PORT", file=sys.stderr)
        return 2
    port = int(argv[1])
    # Ctrl-C in a terminal reaches the whole process group. This server ignores it, from
    # before Prefect's import (a KeyboardInterrupt traceback there) to the end of serving:
    # the interrupted command still reports its crashed run through it and drains its logs
    # and events, then stops it with SIGTERM. (Stopped by Ctrl-C, the server had left the
    # command retrying those requests for minutes.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.ExitStack() as stack:
        with frozen_imports():
            import prefect.server.database
            import uvicorn
            from prefect.server.api.server import create_app
            from prefect.settings import (
                PREFECT_API_DATABASE_MIGRATE_ON_START,
                get_current_settings,
                temporary_settings,
            )

            settings = get_current_settings()
            versions = Path(prefect.server.database.__file__).parent / "_migrations/versions/sqlite"
            updates = {}
            if settings.server.database.migrate_on_start and database_is_current(
                str(settings.server.database.connection_url.get_secret_value()), versions
            ):
                updates[PREFECT_API_DATABASE_MIGRATE_ON_START] = False
            stack.enter_context(temporary_settings(updates=updates))
            app = RetryUnavailable(create_app(ephemeral=True, final=True))
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
        server = _sigterm_only_server()(config)
        server.run()
    return 0 if server.started else STARTUP_FAILURE_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv))
