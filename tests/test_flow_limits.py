"""Concurrency limits and caching the Prefect way, on the shared Prefect test server.

- A tag concurrency limit of 1 on `PACK_TAG` (tasks/pack.py) lets one pack task run at a time,
  across two builds running at once (each of which would otherwise pack two shards at once).
  The pack task runs' start and end times are read back from the API.
- The limit holds on Dask too: the task engine asks the server for a slot in the worker.
- Without a limit, two pack tasks of one build do run at once (their `.idx` writes wait for
  each other on `meet://`), and the same timing check sees the overlap: the check can fail.
- `PREFECT_TASKS_REFRESH_CACHE=true` packs every shard of an unchanged dataset again.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pipeline_fixtures import (
    MeetingFileSystem,
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    read_tree,
)

from recordio_flow.tasks.pack import PACK_TAG

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def build_state(**kw: Any) -> Any:
    from recordio_flow.flows.build import build_dataset

    return build_dataset(**kw, return_state=True)


def shard_files(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in read_tree(out).items() if k.endswith((".rec", ".idx", ".lst"))}


def _forget_that_no_limit_exists() -> None:
    """Prefect's task engine remembers for 5 s that a set of tags has no limit
    (`prefect.concurrency.services._no_limits_cache`); a limit created within 5 s of an
    earlier pack task in this process would be missed until then."""
    from prefect.concurrency import services

    cache = getattr(services, "_no_limits_cache", None)
    if cache is not None:
        cache.clear()
    else:  # a Prefect without that cache, or with it renamed: outwait it
        time.sleep(5.5)


@pytest.fixture
def pack_limit() -> Iterator[Callable[[int], None]]:
    """`pack_limit(n)` sets the pack tag's concurrency limit to n; it is deleted afterwards
    (the server is shared by the whole session)."""
    from prefect.client.orchestration import get_client

    created = False

    def set_limit(n: int) -> None:
        nonlocal created
        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag=PACK_TAG, concurrency_limit=n)
        created = True
        _forget_that_no_limit_exists()

    yield set_limit
    if created:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag(PACK_TAG)


def pack_intervals(flow_run_ids: list[Any], expected: int) -> list[tuple[datetime, datetime]]:
    """(start, end) of every pack task run of these flow runs, sorted, once the server has
    recorded all `expected` of them as Completed (task run states arrive as events)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterTags,
    )

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
                task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=[PACK_TAG])),
            )
            done = [
                (r.start_time, r.end_time)
                for r in runs
                if r.state_type is not None
                and r.state_type.value == "COMPLETED"
                and r.start_time is not None
                and r.end_time is not None
            ]
            if len(done) == expected:
                return sorted(done)
            assert time.monotonic() < deadline, f"{len(done)} of {expected} pack runs recorded"
            time.sleep(0.2)


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at the same instant (an end before a start at the
    same timestamp: touching is not overlapping)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


def at_once(calls: list[dict[str, Any]]) -> list[Any]:
    """`build_state(**kw)` for each of `calls`, all at the same time, each on its own thread
    with a copy of this context (the harness's Prefect settings)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, build_state, **kw) for kw in calls]
        return [f.result() for f in futures]


def test_a_limit_of_one_on_the_pack_tag_packs_one_shard_at_a_time_in_two_runs(pack_limit, tmp_path):
    from recordio_flow.flows.build_options import SHARD_CONCURRENCY

    assert SHARD_CONCURRENCY >= 2  # without the limit, each run packs 2 shards at once
    src = tmp_path / "src"
    image_tree(src, classes=3, per_class=4)
    pack_limit(1)
    states = at_once(
        [
            dict(source=str(src), output=str(tmp_path / name), records_per_shard=4, resize=20)
            for name in ("a", "b")
        ]
    )
    assert all(s.is_completed() for s in states), states
    assert [s.result()["shards_packed"] for s in states] == [3, 3]
    intervals = pack_intervals([s.state_details.flow_run_id for s in states], expected=6)
    assert most_at_once(intervals) == 1, intervals
    assert shard_files(tmp_path / "a") == shard_files(tmp_path / "b")


def subflow_ids(flow_run_id: Any) -> list[Any]:
    """The flow runs started by this one (the Dask path runs its tasks in a subflow)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
    return [r.id for r in runs]


def test_the_limit_holds_on_dask_workers(pack_limit, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    from prefect.settings import PREFECT_API_URL

    src = tmp_path / "src"
    image_tree(src, classes=2, per_class=4)
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the workers' server
    pack_limit(1)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        state = build_state(
            source=str(src),
            output=str(tmp_path / "out"),
            records_per_shard=2,
            dask_address=cluster.scheduler_address,
        )
    assert state.is_completed(), state
    intervals = pack_intervals(subflow_ids(state.state_details.flow_run_id), expected=4)
    assert most_at_once(intervals) == 1, intervals


def test_without_a_limit_two_pack_tasks_run_at_once(tmp_path):
    """The control: the same timing check sees two pack tasks at once when nothing limits
    them (they are made to meet, so this is certain, not likely)."""
    src = tmp_path / "src"
    image_tree(src, classes=2, per_class=4)
    MeetingFileSystem.reset()
    state = build_state(source=str(src), output=f"meet://{tmp_path / 'out'}", records_per_shard=2)
    assert state.is_completed(), state
    assert len(MeetingFileSystem.met) == 2, "two pack tasks never wrote at the same time"
    intervals = pack_intervals([state.state_details.flow_run_id], expected=4)
    assert most_at_once(intervals) >= 2, intervals


def test_refresh_cache_setting_packs_every_shard_again(tmp_path):
    """PREFECT_TASKS_REFRESH_CACHE=true is how to force a full repack of unchanged inputs (the
    same bytes again); without it the rerun reuses every shard."""
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    src, out = tmp_path / "src", tmp_path / "out"
    image_tree(src, classes=2, per_class=4)
    kw = dict(source=str(src), output=str(out), records_per_shard=4)
    first = build_state(**kw).result()
    before = shard_files(out)
    with temporary_settings(updates={PREFECT_TASKS_REFRESH_CACHE: True}):
        forced = build_state(**kw).result()
    again = build_state(**kw).result()
    assert (first["shards_packed"], first["shards_cached"]) == (2, 0)
    assert (forced["shards_packed"], forced["shards_cached"]) == (2, 0)
    assert (again["shards_packed"], again["shards_cached"]) == (0, 2)
    assert shard_files(out) == before
