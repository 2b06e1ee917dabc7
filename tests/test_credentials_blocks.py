"""Storage credentials from Prefect blocks (prefect-aws): AwsCredentials, MinIOCredentials and
S3Bucket blocks named by `credentials_block` / `source_credentials_block`.

The end-to-end test saves the blocks on a real `prefect server start` and builds from one
bucket to another of a moto server that checks access keys (IAM auth on): the build's
environment holds keys moto does not know, so it can only read and write with the blocks' keys.
Neither secret may then appear in the run's parameters, logs, artifacts, the manifest or the
command's output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from pipeline_fixtures import image_tree
from prefect_server import free_port

from recordio_core.building.validate import validate_manifest
from recordio_core.format.manifest import read_manifest
from recordio_core.storage import fsio
from recordio_flow.tasks import credentials

ROOT = Path(__file__).resolve().parent.parent


# --- pure conversions -------------------------------------------------------------------------


def _aws(**kw: Any) -> Any:
    from prefect_aws import AwsCredentials

    return AwsCredentials(**kw)


def _params(**kw: Any) -> Any:
    from prefect_aws.client_parameters import AwsClientParameters

    return AwsClientParameters(**kw)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, {}),
        (
            {"aws_access_key_id": "AK", "aws_secret_access_key": "SK"},
            {"key": "AK", "secret": "SK"},
        ),
        (
            {"aws_access_key_id": "AK", "aws_secret_access_key": "SK", "aws_session_token": "T"},
            {"key": "AK", "secret": "SK", "token": "T"},
        ),
        ({"profile_name": "prod"}, {"profile": "prod"}),
        ({"region_name": "eu-west-1"}, {"client_kwargs": {"region_name": "eu-west-1"}}),
        (
            {"aws_client_parameters": {"endpoint_url": "http://127.0.0.1:9000", "use_ssl": False}},
            {"endpoint_url": "http://127.0.0.1:9000", "use_ssl": False},
        ),
        (
            {"aws_client_parameters": {"verify": False}},
            {"client_kwargs": {"verify": False}},
        ),
        (
            {"aws_client_parameters": {"config": {"signature_version": "unsigned"}}},
            {"anon": True},
        ),
        (
            {"aws_client_parameters": {"config": {"retries": {"max_attempts": 7}}}},
            {"config_kwargs": {"retries": {"max_attempts": 7}}},
        ),
    ],
)
def test_aws_credentials_become_s3fs_options(kwargs, expected):
    assert credentials.aws_options(_aws(**kwargs)) == expected


def test_minio_credentials_and_s3_bucket_blocks_become_s3fs_options():
    from prefect_aws import MinIOCredentials, S3Bucket

    minio = MinIOCredentials(
        minio_root_user="U",
        minio_root_password="P",
        aws_client_parameters=_params(endpoint_url="http://127.0.0.1:9000"),
    )
    want = {"key": "U", "secret": "P", "endpoint_url": "http://127.0.0.1:9000"}
    assert credentials.minio_options(minio) == want
    bucket = S3Bucket(bucket_name="photos", credentials=minio)
    assert credentials.block_options(bucket, "s3-bucket/b", "s3://photos/raw") == want
    with pytest.raises(ValueError, match="not in bucket 'photos'"):
        credentials.block_options(bucket, "s3-bucket/b", "s3://other/raw")


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("aws-credentials/prod", True),
        ("minio-credentials/lab", True),
        ("s3-bucket/photos", True),
        ("prod", False),
        ("aws-credentials/", False),
        ("secret/prod", False),
        ("aws-credentials/a/b", False),
    ],
)
def test_block_names_are_checked_up_front(ref, ok):
    from recordio_flow.flows.params import parse_parameters

    values = {"source": "s3://a/in", "output": "s3://a/out", "credentials_block": ref}
    if ok:
        assert parse_parameters(values).output_options == {fsio.CREDENTIALS_KEY: ref}
    else:
        with pytest.raises(ValueError, match="TYPE/NAME with TYPE one of aws-credentials"):
            parse_parameters(values)


def test_source_and_output_name_their_own_blocks():
    from recordio_flow.flows.params import parse_parameters

    key = fsio.CREDENTIALS_KEY
    so = {"endpoint_url": "http://h"}
    one = parse_parameters(
        {
            "source": "s3://a/in",
            "output": "s3://b/out",
            "storage_options": so,
            "credentials_block": "s3-bucket/b",
        }  # fmt: skip
    )
    assert one.output_options == {**so, key: "s3-bucket/b"}
    assert one.source_options == {**so, key: "s3-bucket/b"}
    two = parse_parameters(
        {
            "source": "s3://a/in",
            "output": "s3://b/out",
            "credentials_block": "s3-bucket/b",
            "source_credentials_block": "aws-credentials/a",
        }  # fmt: skip
    )
    assert two.source_options == {key: "aws-credentials/a"}
    assert two.output_options == {key: "s3-bucket/b"}
    # the key cannot be smuggled in through storage_options (it reads as a credential)
    with pytest.raises(ValueError, match="must not hold credentials"):
        parse_parameters({"source": "/in", "output": "/out", "storage_options": {key: "x"}})


def test_resolved_options_merge_the_blocks_under_the_given_ones(monkeypatch):
    seen: list[tuple[str, str]] = []

    def fake(ref: str, url: str) -> dict[str, Any]:
        seen.append((ref, url))
        return {"key": "K", "secret": "S", "endpoint_url": "http://a", "client_kwargs": {"x": 1}}

    monkeypatch.setattr(fsio, "_credentials_resolver", fake)
    given = {fsio.CREDENTIALS_KEY: "aws-credentials/x", "endpoint_url": "http://b",
             "client_kwargs": {"y": 2}}  # fmt: skip
    assert fsio.resolve_options("s3://bk/p", given) == {
        "key": "K",
        "secret": "S",
        "endpoint_url": "http://b",
        "client_kwargs": {"x": 1, "y": 2},
    }
    assert seen == [("aws-credentials/x", "s3://bk/p")]
    assert fsio.resolve_options("s3://bk/p", {"anon": True}) == {"anon": True}
    monkeypatch.setattr(fsio, "_credentials_resolver", None)
    with pytest.raises(ValueError, match="nothing in this process can load them"):
        fsio.get_fs("s3://bk/p", given)


# --- end to end: blocks on a real server, a moto server that checks keys ----------------------


class AuthS3(NamedTuple):
    endpoint_url: str
    users: dict[str, tuple[str, str]]  # name -> (access key id, secret)

    def fs(self, user: str) -> Any:
        import s3fs

        key, secret = self.users[user]
        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint_url,
            key=key,
            secret=secret,
            use_listings_cache=False,
            skip_instance_cache=True,
        )


@pytest.fixture(scope="module")
def auth_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthS3]:
    """A moto server that refuses unknown access keys, with two IAM users allowed everything.

    moto answers the first INITIAL_NO_AUTH_ACTION_COUNT requests without checking keys: the
    three IAM calls per user that create it, then checks every request."""
    import boto3

    names = ("reader", "writer")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(3 * len(names))}
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            region_name="us-east-1",
        )
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # fmt: skip
        users = {}
        for name in names:
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=name)["AccessKey"]
            users[name] = (key["AccessKeyId"], key["SecretAccessKey"])
        yield AuthS3(endpoint, users)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _save_blocks(server: Any, s3: AuthS3, suffix: str) -> tuple[str, str]:
    """An AwsCredentials block for the reader and an S3Bucket (MinIOCredentials inside) for the
    writer, saved on `server`; their TYPE/NAME refs."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    client = AwsClientParameters(endpoint_url=s3.endpoint_url)
    key, secret = s3.users["reader"]
    wkey, wsecret = s3.users["writer"]
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        AwsCredentials(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            aws_client_parameters=client,
        ).save(f"reader-{suffix}", overwrite=True)
        S3Bucket(
            bucket_name=f"out-{suffix}",
            credentials=MinIOCredentials(
                minio_root_user=wkey, minio_root_password=wsecret, aws_client_parameters=client
            ),
        ).save(f"out-{suffix}", overwrite=True)
    return f"aws-credentials/reader-{suffix}", f"s3-bucket/out-{suffix}"


def _run_texts(server: Any, run_id: Any) -> list[str]:
    """What Prefect keeps about a flow run: its parameters, logs, artifacts, task run names."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with server.client() as client:
        run = client.read_flow_run(run_id)
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    texts = [json.dumps(run.parameters, default=str)]
    texts += [log.message for log in logs]
    texts += [json.dumps(a.data, default=str) for a in artifacts]
    texts += [t.name for t in tasks]
    assert any("dataset complete" in t for t in texts), "the run's logs were not found"
    assert artifacts and tasks
    return texts


@pytest.mark.slow
def test_a_build_reads_and_writes_s3_with_credentials_from_saved_blocks(
    tmp_path, prefect_server, auth_s3
):
    suffix = uuid.uuid4().hex[:8]
    src_bucket, out_bucket = f"src-{suffix}", f"out-{suffix}"
    reader, writer = auth_s3.fs("reader"), auth_s3.fs("writer")
    reader.mkdir(src_bucket)
    writer.mkdir(out_bucket)
    files = image_tree(tmp_path / "images", classes=2, per_class=4)
    for rel, data in files.items():
        reader.pipe(f"{src_bucket}/raw/{rel}", data)
    src_ref, out_ref = _save_blocks(prefect_server, auth_s3, suffix)

    # The build's own environment has keys moto does not know: only the blocks' work.
    env = prefect_server.env(AWS_ACCESS_KEY_ID="not-a-key", AWS_SECRET_ACCESS_KEY="not-a-key")
    for var in ("FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(var, None)
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    with pytest.raises(Exception, match="InvalidAccessKeyId|does not exist in our records"):
        import s3fs

        s3fs.S3FileSystem(
            endpoint_url=auth_s3.endpoint_url, key="not-a-key", secret="not-a-key",
            skip_instance_cache=True,
        ).ls(src_bucket)  # fmt: skip

    source, output = f"s3://{src_bucket}/raw", f"s3://{out_bucket}/ds"
    cmd = [
        str(Path(sys.executable).with_name("recflow")), "build", source, output,
        "--resize", "24", "--train-ratio", "0.5", "--test-ratio", "0.5",
        "--source-credentials-block", src_ref, "--credentials-block", out_ref,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    so = {"endpoint_url": auth_s3.endpoint_url, "key": writer.key, "secret": writer.secret}
    manifest = read_manifest(f"{output}/manifest.json", so)
    assert sum(s.records for s in manifest.splits.values()) == len(files)
    assert all(r.ok for r in validate_manifest(f"{output}/manifest.json", storage_options=so))
    assert manifest.parameters["credentials_block"] == out_ref

    with prefect_server.client() as client:
        runs = [r for r in client.read_flow_runs() if r.parameters.get("output") == output]
    assert len(runs) == 1 and runs[0].state_name == "Completed"
    kept = _run_texts(prefect_server, runs[0].id)
    kept += [proc.stdout, proc.stderr]
    kept += [writer.cat(p).decode(errors="replace") for p in writer.find(out_bucket)
             if not p.endswith(".rec")]  # fmt: skip
    secrets = [s for _, s in auth_s3.users.values()] + [k for k, _ in auth_s3.users.values()]
    for text in kept:
        for secret in secrets:
            assert secret not in text
