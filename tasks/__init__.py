"""Prefect tasks of the build-dataset pipeline (thin wrappers over recordio_core).

Importing the package installs the resolver that turns a credentials block named in storage
options into s3fs options (tasks/credentials.py), in every process that runs these tasks.
"""

from recordio_flow.tasks import credentials as _credentials  # noqa: F401
