"""build-dataset with source and output in S3 (moto on loopback), and no credential leaks."""

from __future__ import annotations

import json

import pytest
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
)

from recordio_core.format.manifest import read_manifest
from recordio_core.format.recordio import MXIndexedRecordIO, unpack_img

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SECRET = "sEcReT-0123456789-should-never-leak"


@pytest.fixture
def s3_source(s3_server, tmp_path):
    bucket = s3_server.make_bucket()
    local = tmp_path / "imgs"
    image_tree(local, classes=2, per_class=5)
    fs = s3_server.fs()
    fs.put(str(local) + "/", f"{bucket}/images/", recursive=True)
    return bucket


def test_source_and_output_in_s3(s3_server, s3_source):
    from recordio_flow.flows.build import build_dataset

    so = {"endpoint_url": s3_server.endpoint_url}  # credentials come from the environment
    src, out = f"s3://{s3_source}/images", f"s3://{s3_source}/datasets/v1"
    kw = dict(source=src, output=out, storage_options=so, records_per_shard=4, resize=16)
    summary = build_dataset(**kw)
    assert summary["records"] == 10 and summary["shards"] == 3
    fs = s3_server.fs()
    m = read_manifest(out, so)
    assert m.class_map == {"class0": 0, "class1": 1}
    assert fs.exists(f"{s3_source}/datasets/v1/rejects.jsonl")
    assert not fs.exists(f"{s3_source}/datasets/v1/.recflow.lock")
    for _, shard in m.shards():
        rec = fs.cat(f"{s3_source}/datasets/v1/{shard.rec}")
        assert len(rec) == shard.bytes
    # read back through the MXNet-compatible reader with fsspec URLs
    _, shard = m.shards()[0]
    r = MXIndexedRecordIO(f"{out}/{shard.idx}", f"{out}/{shard.rec}", "r", storage_options=so)
    header, img = unpack_img(r.read_idx(r.keys[0]))
    assert min(img.shape[:2]) == 16
    r.close()
    # a rerun from S3 reuses every shard and leaves the bytes alone
    before = {p: fs.cat(p) for p in fs.find(f"{s3_source}/datasets/v1")}
    again = build_dataset(**kw)
    assert again["shards_packed"] == 0
    assert {p: fs.cat(p) for p in fs.find(f"{s3_source}/datasets/v1")} == before


def test_credentials_never_reach_prefect_or_the_dataset(s3_server, s3_source, monkeypatch, capsys):
    """`--storage-options` with credentials: used for the work, never stored or shown."""
    import fsspec.config
    from prefect.client.orchestration import get_client

    from recordio_flow.flows.cli import main

    monkeypatch.setattr(fsspec.config, "conf", {})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-on-purpose")  # the CLI's must be used
    out = f"s3://{s3_source}/datasets/cli"
    so = json.dumps({"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": SECRET})
    rc = main(["build", f"s3://{s3_source}/images", out, "--storage-options", so])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert SECRET not in captured.out + captured.err
    fs = s3_server.fs()
    for path in fs.find(f"{s3_source}/datasets/cli"):
        if path.endswith((".json", ".jsonl", ".lst", ".idx")):
            assert SECRET.encode() not in fs.cat(path), path
    manifest = json.loads(fs.cat(f"{s3_source}/datasets/cli/manifest.json"))
    assert manifest["parameters"]["storage_options"] == {"endpoint_url": s3_server.endpoint_url}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        assert runs
        for run in runs:
            assert SECRET not in json.dumps(run.parameters, default=str)
        for offset in range(0, 2000, 200):
            artifacts = client.read_artifacts(limit=200, offset=offset)
            for artifact in artifacts:
                assert SECRET not in json.dumps(artifact.data, default=str)
            logs = client.read_logs(limit=200, offset=offset)
            for log in logs:
                assert SECRET not in log.message
            if not artifacts and not logs:
                break
