"""`recflow build SOURCE OUTPUT [options]`: run the `build-dataset` flow from the command line.

Every flow parameter is an option (`--resize 256`, `--train-ratio 0.8`, `--no-recursive`, ...),
generated from `flows/params.py`, so the command line and the Prefect UI always agree.

Storage: `--storage-options JSON` (and `--source-storage-options JSON` when SOURCE needs other
options) are passed to fsspec. Credential keys in them (`key`, `secret`, `token`, ...) never
become flow parameters — Prefect stores parameters and shows them in its UI — but are put into
this process's fsspec configuration instead; everything else (`endpoint_url`, ...) is passed as
the `storage_options` parameter. Credentials can equally come from the environment
(`AWS_ACCESS_KEY_ID`, `FSSPEC_S3_ENDPOINT_URL`, ...) or AWS config files.

Without `PREFECT_API_URL` the flow runs on a temporary local Prefect API that the command
starts and stops itself (`flows/local_api.py`); with it, on that server.
`--dask-address tcp://host:8786` runs the tasks on a Dask cluster (prefect-dask); the workers
must reach a Prefect server, so `PREFECT_API_URL` must be set then.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from typing import Any

from recordio_flow.flows.cliargs import json_object
from recordio_flow.flows.local_api import configured_api_url, prefect_api
from recordio_flow.flows.param_secrets import split_secrets
from recordio_flow.flows.params import BuildParameters, parse_parameters

_SPECIAL = {"source", "output", "storage_options", "source_storage_options"}


def _base_type(annotation: Any) -> Any:
    """`X | None` -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _add_parameter_options(parser: argparse.ArgumentParser) -> None:
    for name, field in BuildParameters.model_fields.items():
        if name in _SPECIAL:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _base_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description or ''} (default: {default!r})".strip()
        help_text = help_text.replace("%", "%%")  # argparse formats help strings with %
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            parser.add_argument(flag, type=type(choices[0]), choices=choices, **kwargs)
        elif typing.get_origin(kind) is list:
            parser.add_argument(flag, nargs="+", metavar="X", **kwargs)
        elif kind in (int, float, str):
            parser.add_argument(flag, type=kind, metavar=kind.__name__.upper(), **kwargs)
        else:  # pragma: no cover - a new parameter type needs a line here
            raise TypeError(f"no command-line form for parameter {name} ({kind!r})")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build a dataset with the Prefect flow build-dataset (list, split, pack, validate)",
        description="Build an MXNet RecordIO dataset from an image folder with the Prefect flow "
        "build-dataset: list, split, pack shards in parallel, validate, write manifest.json. "
        "SOURCE and OUTPUT are local paths or fsspec URLs (s3://bucket/prefix).",
    )
    parser.add_argument("source", help="image folder (class sub-folders become labels)")
    parser.add_argument("output", help="dataset folder")
    _add_parameter_options(parser)
    parser.add_argument(
        "--storage-options",
        type=json_object,
        metavar="JSON",
        help='fsspec options for OUTPUT (and SOURCE), e.g. \'{"endpoint_url": "http://..."}\'',
    )
    parser.add_argument(
        "--source-storage-options",
        type=json_object,
        metavar="JSON",
        help="fsspec options for SOURCE when they differ from --storage-options",
    )
    parser.set_defaults(func=run)


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def _keep_secrets_local(secret: dict[str, Any], urls: list[str]) -> None:
    """Credentials go to this process's fsspec config for the protocols in use, not to Prefect."""
    import fsspec.config

    for proto in {_protocol(u) for u in urls} - {"file", "local"}:
        fsspec.config.conf.setdefault(proto, {}).update(secret)


def parameters_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flow parameters from parsed arguments (credentials moved to fsspec config)."""
    values = {
        k: v for k, v in vars(args).items() if k in BuildParameters.model_fields and k != "func"
    }
    so = values.pop("storage_options", None)
    src_so = values.pop("source_storage_options", None)
    if so:
        public, secret = split_secrets(so)
        values["storage_options"] = public
        if secret:
            urls = [args.output] + ([] if src_so is not None else [args.source])
            _keep_secrets_local(secret, urls)
    if src_so is not None:
        public, secret = split_secrets(src_so)
        values["source_storage_options"] = public
        if secret:
            _keep_secrets_local(secret, [args.source])
    return values


def lists_early(params: BuildParameters) -> bool:
    """Whether `recflow build` lists the source while Prefect imports and (without a
    configured API) starts, which takes seconds: in a child process for a local folder, the
    list task then takes it. Not from a `.lst`; not on Dask (the task runs elsewhere); not with
    a credentials block (loaded only once the API is up); not for a streaming build (it lists
    in parts of its own: a whole listing would walk the source twice)."""
    named_block = params.credentials_block or params.source_credentials_block
    return not (params.lst or params.dask_address or named_block or params.streaming)


def run(args: argparse.Namespace) -> int:
    values = parameters_from_args(args)
    params = parse_parameters(values)  # a ValueError here names the bad parameter
    if params.dask_address and not configured_api_url():
        raise ValueError(
            "--dask-address needs a Prefect server the Dask workers can reach: start one "
            "(`prefect server start`) and set PREFECT_API_URL here and on the workers"
        )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_api() as api:  # starts a temporary API while Prefect imports, if needed
        from recordio_flow.tasks.listing_prefetch import drop_prefetched, prefetch_listing

        try:
            if lists_early(params):
                prefetch_listing(
                    params.source,
                    recursive=params.recursive,
                    exts=list(params.exts),
                    storage_options=params.source_options,
                )
            from recordio_flow.flows.gcfreeze import frozen_imports

            with frozen_imports():  # Prefect's objects, out of every later collection
                from recordio_flow.flows.build import build_dataset
                from recordio_flow.flows.runner import run_flow_quietly, wait_for_api

            wait_for_api(api)
            if api is None:  # a long-lived server: a run killed on the way must not stay Running
                from recordio_flow.flows.zombies import install

                install(quiet=True)
            ok, result = run_flow_quietly(
                build_dataset, params.model_dump(exclude_unset=True), heartbeats=api is None
            )
        finally:
            drop_prefetched()  # a run that ended before its list task leaves no lister behind
    if not ok:
        print(f"recflow build: failed: {result}", file=sys.stderr)
        return 1
    print(format_summary(result))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    if summary.get("dry_run"):
        from recordio_core.building.dryrun import dry_run_text

        return dry_run_text(summary)
    splits = ", ".join(f"{k} {v['records']}" for k, v in summary["splits"].items())
    quality = ""
    if "quality" in summary:
        from recordio_flow.tasks.report import quality_text

        quality = "\n  data quality: " + quality_text(summary["quality"])
    return (
        f"dataset: {summary['manifest']}\n"
        f"  {summary['records']} records ({splits}) in {summary['shards']} shards "
        f"({summary['shards_packed']} packed, {summary['shards_cached']} reused), "
        f"{summary['bytes']} bytes, {summary['rejects']} rejects, "
        f"{summary['seconds']:.2f} s" + quality
    )
