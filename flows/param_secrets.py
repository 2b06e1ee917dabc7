"""Which storage-option keys hold credentials (never allowed in flow parameters, which Prefect
stores and shows), and how `recflow build` sets them apart to keep them in its own process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Storage-option keys that hold credentials (matched case-insensitively, at any depth).
_SECRET_EXACT = {"key", "secret", "token", "password", "passwd", "pwd", "sas_token"}
_SECRET_PARTS = (
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "access_key",
    "account_key",
    "private_key",
    "connection_string",
    "api_key",
    "apikey",
)


def is_secret_key(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_EXACT or any(part in low for part in _SECRET_PARTS)


def secret_paths(options: Any, prefix: str = "") -> list[str]:
    """Dotted paths of credential-looking keys in a (nested) storage-options mapping."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for k, v in options.items():
            path = f"{prefix}{k}"
            if is_secret_key(str(k)):
                found.append(path)
            else:
                found.extend(secret_paths(v, path + "."))
    return found


def split_secrets(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(public, secret)`: top-level credential keys (and nested dicts holding any) apart."""
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for k, v in options.items():
        if is_secret_key(str(k)) or secret_paths(v):
            secret[k] = v
        else:
            public[k] = v
    return public, secret
