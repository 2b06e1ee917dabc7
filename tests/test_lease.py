"""Leases on work folders (`recordio_core.storage.lease`): which folders count as a dead
run's, how a held lease is renewed, and that renewal failures never reach the run."""

from __future__ import annotations

import time
from pathlib import Path

import fsspec
import pytest

from recordio_core.storage.lease import (
    LAPSE_SECONDS,
    LEASE_FILE,
    held_lease,
    lapsed_folders,
    lease_time,
    remove_folder,
    renew_lease,
)

NOW = 1_800_000_000.0


def _folder(parent: Path, name: str, renewed: float | None, lease: bytes | None = None) -> None:
    (parent / name).mkdir(parents=True)
    (parent / name / "piece-0").write_bytes(b"x\n")
    if lease is not None:
        (parent / name / LEASE_FILE).write_bytes(lease)
    elif renewed is not None:
        renew_lease(str(parent / name), now=renewed)


# name: (lease renewed at, raw lease bytes or None, lapsed?)
CASES = {
    "fresh": (NOW - 30, None, False),
    "just-inside-the-margin": (NOW - LAPSE_SECONDS + 1, None, False),
    "lapsed": (NOW - LAPSE_SECONDS - 1, None, True),
    "long-dead": (NOW - 86_400, None, True),
    "no-lease": (None, None, True),
    "unreadable-lease": (None, b"not a time\n", True),
    "binary-lease": (None, b"\xff\xfe", True),
    "from-the-future": (NOW + 3_600, None, False),  # another machine's clock runs ahead
}


def test_lapsed_folders_are_those_whose_lease_lapsed_or_is_missing(tmp_path: Path) -> None:
    for name, (renewed, raw, _) in CASES.items():
        _folder(tmp_path, name, renewed, raw)
    (tmp_path / "a-file").write_bytes(b"not a folder")
    found = {Path(f.url).name: f.renewed for f in lapsed_folders(str(tmp_path), now=NOW)}
    assert sorted(found) == sorted(n for n, (_, _, lapsed) in CASES.items() if lapsed)
    assert found["lapsed"] == pytest.approx(NOW - LAPSE_SECONDS - 1)
    assert found["no-lease"] is None and found["unreadable-lease"] is None


def test_the_running_folder_is_never_lapsed(tmp_path: Path) -> None:
    _folder(tmp_path, "mine", None)  # not leased yet: the run is about to write it
    _folder(tmp_path, "dead", NOW - 86_400)
    found = lapsed_folders(str(tmp_path), keep="mine", now=NOW)
    assert [Path(f.url).name for f in found] == ["dead"]


def test_no_parent_no_folders(tmp_path: Path) -> None:
    assert lapsed_folders(str(tmp_path / "absent"), now=NOW) == []


def test_leases_on_an_object_store_like_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    root = "memory://lease-test/listing"
    try:
        fs.pipe(f"{root}/dead/piece-0", b"x\n")
        fs.pipe(f"{root}/alive/piece-0", b"x\n")
        renew_lease(f"{root}/alive", now=NOW)
        renew_lease(f"{root}/dead", now=NOW - 2 * LAPSE_SECONDS)
        found = lapsed_folders(root, now=NOW)
        assert [f.url for f in found] == [f"{root}/dead"]
        remove_folder(found[0].url)
        assert not fs.exists(f"{root}/dead") and fs.exists(f"{root}/alive/piece-0")
        remove_folder(found[0].url)  # gone already: nothing to do
    finally:
        fs.rm("memory://lease-test", recursive=True)


def test_a_held_lease_is_written_first_and_renewed(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    before = time.time()
    with held_lease(str(folder), renew_seconds=0.05):
        first = lease_time(str(folder))
        assert first is not None and first >= before - 1
        deadline = time.monotonic() + 10
        while (lease_time(str(folder)) or 0) <= first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (lease_time(str(folder)) or 0) > first
    ended = lease_time(str(folder))
    time.sleep(0.2)
    assert lease_time(str(folder)) == ended  # no renewal after the block


def test_a_failed_renewal_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recordio_core.storage.lease as lease

    errors: list[Exception] = []
    folder = str(tmp_path / "run")
    with held_lease(folder, renew_seconds=0.05, on_error=errors.append):
        monkeypatch.setattr(lease, "renew_lease", _broken)
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            time.sleep(0.02)
    assert errors and "storage unreachable" in str(errors[0])


def test_a_lease_that_cannot_be_written_at_the_start_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OSError), held_lease(str(blocker / "run")):
        pass


def _broken(*args: object, **kwargs: object) -> None:
    raise OSError("storage unreachable")
