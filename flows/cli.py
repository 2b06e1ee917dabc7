"""`recflow`: the command line. Each subcommand lives in its own module `flows/cmd_<name>.py`
with `register(subparsers)` adding its parser and setting `func(args) -> int`. Modules import
heavy dependencies (Prefect) inside `func`, so `recflow --help` stays fast."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# subcommand name -> module; order is the order shown in --help
COMMANDS: dict[str, str] = {
    "build": "recordio_flow.flows.cmd_build",
    "serve": "recordio_flow.flows.cmd_serve",
    "im2rec": "recordio_flow.flows.cmd_im2rec",
    "pack": "recordio_flow.flows.cmd_pack",
    "index": "recordio_flow.flows.cmd_index",
    "merge": "recordio_flow.flows.cmd_merge",
    "inspect": "recordio_flow.flows.cmd_inspect",
    "validate": "recordio_flow.flows.cmd_validate",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `recflow` parser; with `only` (a command name), just that subcommand's parser, so a
    run imports only its own module (`build`'s pulls in pydantic: ~0.1 s of start-up)."""
    parser = argparse.ArgumentParser(
        prog="recflow",
        description="Build, validate and read MXNet RecordIO image datasets (.rec/.idx/.lst).",
    )
    from recordio_core import __version__

    parser.add_argument("--version", action="version", version=f"recflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = args_list[0] if args_list and args_list[0] in COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("recflow: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        print(f"recflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


def entry() -> None:
    """The `recflow` console script: `main()`, then `exit_now` with its code."""
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help/--version/usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Leave at once, after flushing what Python would flush (logging, stdout, stderr).

    Once a command has returned, everything it wrote is committed and closed (and `recflow
    build` has drained Prefect's log and event queues and stopped its temporary API). Tearing
    down the interpreter after Prefect's imports would take ~0.5 s of nothing.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
