"""Storage credentials from saved Prefect blocks (prefect-aws), resolved where the I/O happens.

A build names a block instead of carrying credentials: `credentials_block="aws-credentials/
photos"` (or `minio-credentials/NAME`, `s3-bucket/NAME`). The flow puts that name into the
storage options it hands to its tasks, under `recordio_core.storage.fsio.CREDENTIALS_KEY`; when a
task opens a filesystem, wherever it runs (the flow's process, a Dask worker), the resolver
installed here loads the block from the Prefect API and turns it into s3fs options. So the
credentials are never in the flow's parameters, in a task's arguments, in logs, artifacts or
the manifest: only the block's name is.

Importing `tasks` installs the resolver (tasks/__init__.py). Loaded blocks are kept for
`CACHE_SECONDS` per process, so a shard task does not ask the API once per file it opens,
and a rotated secret is picked up within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from recordio_core.storage.fsio import register_credentials

# The block types a credentials parameter may name: "TYPE/NAME".
BLOCK_TYPES = ("aws-credentials", "minio-credentials", "s3-bucket")
CACHE_SECONDS = 300.0

_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def check_block_ref(ref: str) -> str:
    """`ref` if it reads `TYPE/NAME` with a supported TYPE; a ValueError that says so if not."""
    kind, sep, name = ref.partition("/")
    if not sep or not name or "/" in name or kind not in BLOCK_TYPES:
        raise ValueError(
            f"a credentials block is named TYPE/NAME with TYPE one of {', '.join(BLOCK_TYPES)} "
            f"(as `prefect block ls` shows it); got {ref!r}"
        )
    return ref


def _secret(value: Any) -> str | None:
    """The plain text of a pydantic SecretStr (or a plain string), None when unset."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def client_options(params: Any, region_name: str | None) -> dict[str, Any]:
    """s3fs options from prefect-aws's `AwsClientParameters` and a region."""
    options: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    if region_name:
        client_kwargs["region_name"] = region_name
    if params is not None:
        if params.endpoint_url:
            options["endpoint_url"] = params.endpoint_url
        if params.use_ssl is False:
            options["use_ssl"] = False
        if params.verify_cert_path:
            client_kwargs["verify"] = str(params.verify_cert_path)
        elif params.verify is not None:
            client_kwargs["verify"] = params.verify
        if params.config:
            config = dict(params.config)
            if config.get("signature_version") == "unsigned":
                config.pop("signature_version")
                options["anon"] = True
            if config:
                options["config_kwargs"] = config
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def aws_options(creds: Any) -> dict[str, Any]:
    """s3fs options from an `AwsCredentials` block: keys (or a profile), region, endpoint.
    With `assume_role_arn` the role is assumed here and its temporary keys are used."""
    if creds.assume_role_arn:
        frozen = creds.get_boto3_session().get_credentials().get_frozen_credentials()
        keys = {"key": frozen.access_key, "secret": frozen.secret_key, "token": frozen.token}
    else:
        keys = {
            "key": creds.aws_access_key_id,
            "secret": _secret(creds.aws_secret_access_key),
            "token": _secret(creds.aws_session_token),
            "profile": creds.profile_name,
        }
    options = {k: v for k, v in keys.items() if v}
    options.update(client_options(creds.aws_client_parameters, creds.region_name))
    return options


def minio_options(creds: Any) -> dict[str, Any]:
    """s3fs options from a `MinIOCredentials` block (root user and password as the keys)."""
    options = {"key": creds.minio_root_user, "secret": _secret(creds.minio_root_password)}
    options.update(client_options(creds.aws_client_parameters, creds.region_name))
    return options


def _bucket_of(url: str) -> str | None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("s3", "s3a"):
        return None
    return rest.split("/", 1)[0]


def block_options(block: Any, ref: str, url: str) -> dict[str, Any]:
    """s3fs options for `url` from a loaded block; an `S3Bucket` block's bucket must be the
    URL's (its `bucket_folder` is not used: URLs name their full path)."""
    from prefect_aws import AwsCredentials, MinIOCredentials, S3Bucket

    if isinstance(block, S3Bucket):
        bucket = _bucket_of(url)
        if bucket != block.bucket_name:
            raise ValueError(
                f"{url} is not in bucket {block.bucket_name!r}, the bucket of block {ref}: "
                "name a credentials block (aws-credentials/..., minio-credentials/...) to use "
                "the same credentials for other buckets"
            )
        block = block.credentials
    if isinstance(block, MinIOCredentials):
        return minio_options(block)
    if isinstance(block, AwsCredentials):
        return aws_options(block)
    raise ValueError(f"block {ref} is a {type(block).__name__}, not one of {BLOCK_TYPES}")


def load_block(ref: str) -> Any:
    """The saved block `ref` (TYPE/NAME) from the Prefect API, kept for CACHE_SECONDS."""
    check_block_ref(ref)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(ref)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
    import prefect_aws  # noqa: F401  (registers the block types Block.load dispatches to)
    from prefect.blocks.core import Block

    try:
        block = Block.load(ref, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        raise ValueError(f"credentials block {ref}: {exc}") from None
    with _lock:
        _cache[ref] = (now, block)
    return block


def resolve(ref: str, url: str) -> Mapping[str, Any]:
    """The resolver for `recordio_core.storage.fsio`: block `ref` -> s3fs options for `url`."""
    return block_options(load_block(ref), ref, url)


register_credentials(resolve)
