"""The Dask scale-out path: build-dataset with `dask_address` on a distributed LocalCluster."""

from __future__ import annotations

import pytest
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    read_tree,
)

from recordio_core.format.manifest import read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_tasks_run_on_a_dask_cluster(prefect_harness, tmp_path, monkeypatch):  # noqa: F811
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    from recordio_flow.flows.build import build_dataset

    src = tmp_path / "src"
    image_tree(src, classes=2, per_class=5)
    # worker processes must report to the same Prefect server (and not start their own)
    monkeypatch.setenv("PREFECT_API_URL", prefect_harness)
    kw = dict(source=str(src), records_per_shard=4, resize=20)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        summary = build_dataset(
            output=str(tmp_path / "dask"), dask_address=cluster.scheduler_address, **kw
        )
        with distributed.Client(cluster) as client:
            # the pack tasks ran in the worker processes: they imported the task module
            ran = client.run(lambda: "recordio_flow.tasks.pack" in __import__("sys").modules)
    assert len(ran) == 2 and any(ran.values())
    assert summary["records"] == 10 and summary["shards"] == 3
    m = read_manifest(str(tmp_path / "dask"))
    assert m.parameters["dask_address"].startswith("tcp://")
    build_dataset(output=str(tmp_path / "local"), **kw)

    def shards(root):
        return {k: v for k, v in read_tree(root).items() if k.endswith((".rec", ".idx", ".lst"))}

    assert len(shards(tmp_path / "dask")) == 9
    assert shards(tmp_path / "dask") == shards(tmp_path / "local")  # same names, same bytes
