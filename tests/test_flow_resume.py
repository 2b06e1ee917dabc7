"""A build killed with SIGKILL half way resumes: finished shards are reused, the interrupted
one is redone, and the bytes equal those of an undisturbed build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    read_tree,
    subprocess_env,
)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import pipeline_fixtures  # registers slow://
from recordio_flow.flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def shards(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in read_tree(root).items() if k.endswith((".rec", ".idx", ".lst"))}


def finished(out: Path) -> int:
    """Shards whose three files are all committed (the .idx is committed last)."""
    return len(list(out.glob("all/*.idx")))


def kill_after_two_shards(tmp_path: Path, src: Path, out: Path, *extra: str) -> int:
    """Run `recflow build slow://SRC OUT` (shards of 6, ~0.5 s each) in a child process,
    SIGKILL it once two shards are committed, and return how many were."""
    args = ["build", f"slow://{src}", str(out), "--records-per-shard", "6", "--resize", "24"]
    env = subprocess_env()
    env["RECFLOW_TEST_SLOW_READ"] = "0.08"  # ~0.5 s per shard of 6 images
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = _CHILD.format(tests=str(ROOT / "tests"))
    log = tmp_path / "child.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args, *extra], cwd=ROOT, env=env, stdout=logf, stderr=logf
        )
    deadline = time.monotonic() + 120
    while finished(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(f"the build ended before it could be killed:\n{log.read_text()[-3000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return finished(out)


def test_killed_build_resumes_with_identical_bytes(tmp_path):
    from recordio_flow.flows.build import build_dataset

    src = tmp_path / "src"
    image_tree(src, classes=3, per_class=12)
    out = tmp_path / "out"
    done_before = kill_after_two_shards(tmp_path, src, out)
    assert 2 <= done_before < 6 and not (out / "manifest.json").exists()
    debris = [p for p in (out / "all").iterdir() if ".tmp-" in p.name]
    assert all(p.name.startswith(".") for p in debris)  # partial files are hidden temporaries
    for p in debris:  # as if the kill happened long ago (younger ones may be a live run's)
        os.utime(p, (time.time() - 3600, time.time() - 3600))

    summary = build_dataset(source=f"slow://{src}", output=str(out), records_per_shard=6, resize=24)
    assert summary["shards"] == 6 and summary["records"] == 36
    assert summary["shards_packed"] <= 6 - done_before + 1  # the finished ones were reused
    assert summary["shards_cached"] >= done_before - 1
    clean = tmp_path / "clean"
    build_dataset(source=f"slow://{src}", output=str(clean), records_per_shard=6, resize=24)
    assert shards(out) == shards(clean)
    assert not [p for p in read_tree(out) if ".tmp-" in p]  # the killed run's debris is gone


def test_killed_streaming_build_resumes_and_its_listing_is_removed_later(tmp_path):
    """`--streaming`, SIGKILLed while packing: the listing folder it leaves stays while its
    lease is fresh (it could be a live run's), and the first run after the lease lapsed
    removes it; the shards the killed run finished are reused and the bytes are a clean
    build's."""
    from recordio_core.storage.lease import LAPSE_SECONDS, lease_time, renew_lease
    from recordio_flow.flows.build import build_dataset

    src = tmp_path / "src"
    image_tree(src, classes=3, per_class=12)
    out = tmp_path / "out"
    opts = {"records_per_shard": 6, "resize": 24, "streaming": True}
    done_before = kill_after_two_shards(tmp_path, src, out, "--streaming")
    assert 2 <= done_before < 6 and not (out / "manifest.json").exists()
    listing = out / ".recflow" / "listing"
    (left,) = [p for p in listing.iterdir() if p.is_dir()]
    assert lease_time(str(left)) is not None

    summary = build_dataset(source=f"slow://{src}", output=str(out), **opts)
    assert left.is_dir()  # its lease is fresh: it may be a live run's
    assert summary["shards"] == 6 and summary["shards_cached"] >= done_before - 1
    renew_lease(str(left), now=time.time() - LAPSE_SECONDS - 60)  # as if killed long ago
    build_dataset(source=f"slow://{src}", output=str(out), **opts)
    assert not listing.exists() or not any(listing.iterdir())
    clean = tmp_path / "clean"
    build_dataset(source=f"slow://{src}", output=str(clean), **opts)
    assert shards(out) == shards(clean)
