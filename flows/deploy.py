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


def make_deployments(
    *,
    source: str | None = None,
    output: str | None = None,
    cron: str | None = DEFAULT_CRON,
    timezone: str = DEFAULT_TIMEZONE,
    extra_parameters: dict[str, Any] | None = None,
) -> list[Any]:
    """`RunnerDeployment`s for `prefect.serve`. The nightly schedule needs SOURCE and OUTPUT;
    without them (or with `cron=None`) it is served unscheduled, like the presets."""
    from flows.build import build_dataset

    base: dict[str, Any] = {}
    if source:
        base["source"] = source
    if output:
        base["output"] = output
    base.update(extra_parameters or {})
    out = []
    for name, preset in PRESETS.items():
        kwargs: dict[str, Any] = {}
        if name == "nightly" and cron and source and output:
            from prefect.schedules import Cron

            kwargs["schedule"] = Cron(cron, timezone=timezone)
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
