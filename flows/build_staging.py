"""Where a streaming build's listing lives while it runs: `OUTPUT/.recflow/listing/<flow run>/`
(every worker reaches it), or for a dry run on this machine a local temporary folder
(`recflow-listing/<flow run>` under TMPDIR: a dry run writes nothing to OUTPUT). About 75 bytes
per image, so it must not outlive its run: it is removed when the run ends, and while the run
lives its lease (`recordio_core.storage.lease`) is renewed every minute, so a run that died
without cleaning up (kill -9, a lost machine) leaves a folder the next run removes once the
lease has lapsed for 10 minutes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

from prefect.runtime import flow_run

from recordio_core.storage.fsio import get_fs, join_url, url_basename, url_dirname
from recordio_core.storage.lease import LAPSE_SECONDS, held_lease, lapsed_folders, remove_folder
from recordio_flow.flows.params import BuildParameters

STAGING_FOLDER = ".recflow/listing"
LOCAL_STAGING_FOLDER = "recflow-listing"  # a dry run's, under the temporary folder


@contextlib.contextmanager
def staged(p: BuildParameters, logger: Any) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """This run's staging folder and its storage options, leased while the block runs and
    removed after it; the lapsed folders of dead runs beside it are removed first."""
    staging, options = _staging(p)
    _remove_lapsed(staging, options, logger)
    try:
        warn = lambda exc: logger.warning("could not renew the listing's lease: %s", exc)  # noqa: E731
        with held_lease(staging, options, on_error=warn):
            yield staging, options
    finally:  # after the lease's thread stopped, so nothing writes the folder again
        _remove(staging, options)


def _staging(p: BuildParameters) -> tuple[str, dict[str, Any] | None]:
    token = str(flow_run.id or uuid.uuid4().hex)
    if _stages_locally(p):
        return os.path.join(tempfile.gettempdir(), LOCAL_STAGING_FOLDER, token), None
    return join_url(p.output, STAGING_FOLDER, token), p.output_options


def _stages_locally(p: BuildParameters) -> bool:
    return p.dry_run and not p.dask_address


def _remove_lapsed(staging: str, options: dict[str, Any] | None, logger: Any) -> None:
    try:
        lapsed = lapsed_folders(url_dirname(staging), options, keep=url_basename(staging))
        for folder in lapsed:
            remove_folder(folder.url, options)
    except Exception as exc:  # noqa: BLE001 - leftovers never fail the run
        logger.warning("could not remove the listings of runs that stopped: %s", exc)
        return
    if lapsed:
        logger.info(
            "removed %d listing folder(s) of runs that stopped without cleaning up (lease not "
            "renewed for %d min): %s",
            len(lapsed),
            LAPSE_SECONDS // 60,
            ", ".join(f.url for f in lapsed),
        )


def _remove(staging: str, options: dict[str, Any] | None) -> None:
    with contextlib.suppress(Exception):  # never fail the run for its leftovers
        remove_folder(staging, options)
        with contextlib.suppress(Exception):  # the parent too, once no run uses it
            fs, parent = get_fs(url_dirname(staging), options)
            fs.rmdir(parent)
