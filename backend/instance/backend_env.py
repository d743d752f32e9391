"""The backend container's environment file, written at boot from the stack's configuration.

`cvstack instance settings` writes `/run/cvstack/stack.env` at every boot (secret id, allowed
origins; backend/instance/settings.py); the session-token secret
itself lives in Secrets Manager and is fetched at every boot into a root-only file on tmpfs
(`/run/cvstack/backend.env`), so it is never baked into the image or left on the disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from backend.core.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class BackendEnvError(RuntimeError):
    """The stack's configuration cannot produce a production backend."""


def backend_environment(
    secrets: SecretsManagerClient, secret_id: str, allowed_origins_csv: str
) -> dict[str, str]:
    """The production variables, checked with the backend's own settings validation."""
    try:
        secret = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        raise BackendEnvError(
            f"cannot read the session-token secret {secret_id}: {exc}; check "
            "CVSTACK_SESSION_SECRET_ID in /run/cvstack/stack.env and the instance role"
        ) from exc
    origins = [origin.strip() for origin in allowed_origins_csv.split(",") if origin.strip()]
    values = {
        "CVSTACK_ENVIRONMENT": "production",
        "CVSTACK_SESSION_TOKEN_SECRET": secret,
        "CVSTACK_ALLOWED_ORIGINS": json.dumps(origins, separators=(",", ":")),
    }
    try:
        Settings(environment="production", session_token_secret=secret, allowed_origins=origins)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise BackendEnvError(f"the backend would refuse to start: {problem}") from exc
    return values


def write_env_file(values: dict[str, str], path: Path) -> None:
    """`KEY=value` lines, readable by root only, replaced atomically."""
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise BackendEnvError(f"{key} contains a line break and cannot go in an env file")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items())
    temporary.replace(path)
