"""`recflow serve [SOURCE OUTPUT]`: serve the build-dataset deployments from this process.

Registers the deployments of `flows/deploy.py` (nightly schedule, resize-256, pass-through)
with the Prefect server in `PREFECT_API_URL` and runs their flow runs — scheduled ones and
those started from the UI or `prefect deployment run` — until interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from recordio_flow.flows.cliargs import json_object


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the build-dataset deployments (nightly schedule, presets) to a Prefect server",
        description="Register the build-dataset deployments (nightly, resize-256, pass-through) "
        "with the Prefect server in PREFECT_API_URL and execute their runs until interrupted.",
    )
    parser.add_argument("source", nargs="?", help="default SOURCE for the deployments")
    parser.add_argument("output", nargs="?", help="default OUTPUT for the deployments")
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--cron",
        default="0 2 * * *",
        help="schedule of the nightly deployment (needs SOURCE and OUTPUT; '' for none) "
        "(default: %(default)s)",
    )
    when.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="run the nightly deployment every SECONDS (>= 1) instead of on the cron schedule",
    )
    parser.add_argument("--timezone", default="UTC", help="(default: %(default)s)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="another default parameter for every deployment, e.g. --param records_per_shard=500",
    )
    parser.add_argument(
        "--storage-options",
        type=json_object,
        metavar="JSON",
        help="default fsspec options (no credentials: give those to the serving process's "
        "environment)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many flow runs at once"
    )
    parser.set_defaults(func=run)


def parse_params(items: list[str]) -> dict[str, Any]:
    from recordio_flow.flows.params import BuildParameters

    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in BuildParameters.model_fields:
            raise ValueError(
                f"--param takes NAME=VALUE with NAME a build-dataset parameter, got {item!r}"
            )
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def run(args: argparse.Namespace) -> int:
    if (args.source is None) != (args.output is None):
        raise ValueError("give both SOURCE and OUTPUT, or neither")
    extra = parse_params(args.param)
    if args.storage_options:
        extra["storage_options"] = args.storage_options
    from recordio_flow.flows.params import parse_parameters

    # fail early on bad defaults (placeholders stand in for SOURCE/OUTPUT when not given)
    parse_parameters({"source": args.source or "/in", "output": args.output or "/out", **extra})
    from recordio_flow.flows.deploy import schedule_for

    schedule_for(args.cron or None, args.timezone, args.interval)  # a bad schedule fails here
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    from recordio_flow.flows.deploy import make_deployments

    if not PREFECT_API_URL.value():
        print(
            "recflow serve: PREFECT_API_URL is not set; deployments need a Prefect server: run "
            "`prefect server start` and `prefect config set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api`",
            file=sys.stderr,
        )
        return 2
    from recordio_flow.flows.zombies import install, set_heartbeat_default

    set_heartbeat_default()  # the run processes report every 30 s ...
    install(quiet=True)  # ... and the server marks one that stops Crashed
    deployments = make_deployments(
        source=args.source,
        output=args.output,
        cron=args.cron or None,
        timezone=args.timezone,
        interval_seconds=args.interval,
        extra_parameters=extra,
    )
    serve(*deployments, limit=args.limit, print_starting_message=True)
    return 0
