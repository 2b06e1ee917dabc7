"""What every pipeline task shares: retry policy (delay, jitter, which errors are worth it)."""

from __future__ import annotations

import logging
from typing import Any

# Retry delays in seconds (then jitter of up to +/- 50% so parallel retries spread out).
IO_RETRY_DELAYS = [1.0, 5.0, 20.0]
IO_RETRIES = len(IO_RETRY_DELAYS)
RETRY_JITTER = 0.5

# Errors that say "this input or parameter is wrong": retrying cannot help.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes ListFileError, RecordIOError, pydantic's ValidationError
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    FileNotFoundError,  # a source folder or list that is not there; a reject for an image
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_transient(exc: BaseException | None) -> bool:
    """True for errors a retry may cure (I/O, network, timeouts, anything unknown)."""
    return exc is not None and not isinstance(exc, PERMANENT_ERRORS)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """`retry_condition_fn` for Prefect tasks: retry I/O trouble, not bad inputs."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return is_transient(exc)


RETRY_OPTIONS: dict[str, Any] = {
    "retries": IO_RETRIES,
    "retry_delay_seconds": IO_RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_if_transient,
}


def run_logger() -> Any:
    """The Prefect run logger inside a run; a plain logger when a task's `.fn` is called."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("recflow")


class Carry:
    """A large value passed between tasks as one opaque object.

    Prefect walks through task arguments (lists, tuples, dataclasses) to find futures; for a
    listing of N images that costs ~20 us per image per walk, twice per task. Wrapped, the
    value is a single leaf: a listing of a million images moves between tasks for free.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        size = len(self.value) if hasattr(self.value, "__len__") else "?"
        return f"Carry({type(self.value).__name__}, {size} items)"
