"""Deployments of `build-dataset`: the presets and schedule, defined once.

Used by `recflow serve` (one long-running process that runs scheduled and UI-triggered runs)
and mirrored by `deployments/prefect.yaml` (for `prefect deploy` with a work pool; a test
checks the two agree).

- `nightly`: the cron schedule (default 02:00 UTC) rebuilding SOURCE into OUTPUT with
  shorter side 256; reruns reuse every unchanged shard, so a night without new images packs
  nothing.
- `resize-256`: shorter side 256, JPEG quality 95.
- `pass-through`: the files' bytes stored untouched.

Every parameter stays editable per run (UI "Custom run", `prefect deployment run
build-dataset/resize-256 --param resize=128`).
"""

from __future__ import annotations

from typing import Any

DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
FLOW_NAME = "build-dataset"

PRESETS: dict[str, dict[str, Any]] = {
    "nightly": {"resize": 256},
    "resize-256": {"resize": 256, "quality": 95},
    "pass-through": {"pass_through": True},
}
DESCRIPTIONS: dict[str, str] = {
    "nightly": "Scheduled rebuild (shorter side 256); unchanged shards are reused.",
    "resize-256": "Shorter side 256, JPEG quality 95.",
    "pass-through": "Store the image files' bytes untouched.",
}


def schedule_for(cron: str | None, timezone: str, interval_seconds: float | None) -> Any:
    """The nightly deployment's schedule: every `interval_seconds` if given, else `cron`, else
    None. A ValueError names a bad cron string, time zone or interval."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from prefect.schedules import Cron, Interval

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r} (an IANA name such as 'UTC')") from None
    if interval_seconds is not None:
        if isinstance(interval_seconds, bool) or not interval_seconds >= 1:
            raise ValueError(f"the interval must be at least 1 second, got {interval_seconds!r}")
        return Interval(interval_seconds, timezone=timezone)
    if not cron:
        return None
    try:
        return Cron(cron, timezone=timezone)
    except ValueError as exc:
        raise ValueError(
            f"invalid schedule (cron {cron!r}, timezone {timezone!r}): {exc}; a cron string has "
            "five fields, e.g. '0 2 * * *'"
        ) from None


def make_deployments(
    *,
    source: str | None = None,
    output: str | None = None,
    cron: str | None = DEFAULT_CRON,
    timezone: str = DEFAULT_TIMEZONE,
    interval_seconds: float | None = None,
    extra_parameters: dict[str, Any] | None = None,
) -> list[Any]:
    """`RunnerDeployment`s for `prefect.serve`. The nightly deployment runs on `cron` or, when
    given, every `interval_seconds` instead; its schedule needs SOURCE and OUTPUT. Without them
    (or with neither cron nor interval) it is served unscheduled, like the presets."""
    schedule = schedule_for(cron, timezone, interval_seconds)
    from recordio_flow.flows.build import build_dataset

    base: dict[str, Any] = {}
    if source:
        base["source"] = source
    if output:
        base["output"] = output
    base.update(extra_parameters or {})
    out = []
    for name, preset in PRESETS.items():
        kwargs: dict[str, Any] = {}
        if name == "nightly" and schedule is not None and source and output:
            kwargs["schedule"] = schedule
        out.append(
            build_dataset.to_deployment(
                name=name,
                parameters={**base, **preset},
                description=DESCRIPTIONS[name],
                tags=["recordio-flow"],
                **kwargs,
            )
        )
    return out
