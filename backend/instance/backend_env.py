"""The backend container's environment file and nginx's origin secret, written at boot from the
stack's configuration.

`cvstack instance settings` writes `/run/cvstack/stack.env` at every boot (secret ids, allowed
origins, fleet settings; backend/instance/settings.py). The secrets themselves live in Secrets
Manager and are fetched at every boot onto tmpfs, so they are never baked into the image or
left on the disk: the session-token secret into a root-only file (`/run/cvstack/backend.env`),
the origin secret CloudFront sends (X-Cvstack-Origin-Secret) into the map file nginx's origin
listener includes (`/run/cvstack/nginx/origin-secret.map`, ami/nginx/cvstack.conf.j2).
"""

from __future__ import annotations

import grp
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from backend.core.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ORIGIN_SECRET_MAP = "origin-secret.map"
# nginx's worker user's group on Debian and Ubuntu; gid 33 on both (base-passwd), so the backend
# image (Debian) resolves it to the host's group.
NGINX_GROUP = "www-data"
_ORIGIN_SECRET = re.compile(r"[A-Za-z0-9]{32,128}")


class BackendEnvError(RuntimeError):
    """The stack's configuration cannot produce a production backend."""


def backend_environment(
    secrets: SecretsManagerClient,
    secret_id: str,
    allowed_origins_csv: str,
    *,
    max_wait_s: str | None = None,
    drain_file: Path | None = None,
) -> dict[str, str]:
    """The production variables, checked with the backend's own settings validation; in fleet
    mode also the admission wait and the drain file the fleet agent writes."""
    secret = _secret_string(secrets, secret_id, "session-token", "CVSTACK_SESSION_SECRET_ID")
    origins = [origin.strip() for origin in allowed_origins_csv.split(",") if origin.strip()]
    values = {
        "CVSTACK_ENVIRONMENT": "production",
        "CVSTACK_SESSION_TOKEN_SECRET": secret,
        "CVSTACK_ALLOWED_ORIGINS": json.dumps(origins, separators=(",", ":")),
    }
    checked: dict[str, Any] = {
        "environment": "production",
        "session_token_secret": secret,
        "allowed_origins": origins,
        "drain_file": drain_file,
    }
    if max_wait_s is not None:
        values["CVSTACK_MAX_WAIT_S"] = checked["max_wait_s"] = max_wait_s
    if drain_file is not None:
        values["CVSTACK_DRAIN_FILE"] = str(drain_file)
    try:
        Settings(**checked)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise BackendEnvError(f"the backend would refuse to start: {problem}") from exc
    return values


def origin_secret(secrets: SecretsManagerClient, secret_id: str) -> str:
    """The secret CloudFront adds to every request it forwards to the instance: 32-128 letters
    and digits (the stack generates 48), so it is safe in a header and in nginx's map file."""
    secret = _secret_string(secrets, secret_id, "origin", "CVSTACK_ORIGIN_SECRET_ID")
    if not _ORIGIN_SECRET.fullmatch(secret):
        raise BackendEnvError(
            f"the origin secret {secret_id} (CVSTACK_ORIGIN_SECRET_ID) must be 32-128 letters "
            f"and digits (it has {len(secret)} characters): deploy the stack again (cdk deploy) "
            "so CloudFront and the instance share a generated one"
        )
    return secret


def write_origin_secret_map(secret: str, directory: Path, group: str = NGINX_GROUP) -> Path:
    """`"<secret>" 1;` in `<directory>/origin-secret.map`, the entry nginx's map
    `$cvstack_from_front_door` includes: readable by root and `group` only, replaced atomically
    (nginx reads the old file or the new one, never half of one)."""
    if not _ORIGIN_SECRET.fullmatch(secret):
        raise BackendEnvError("the origin secret must be 32-128 letters and digits")
    try:
        group_id = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise BackendEnvError(
            f"no group {group} for nginx's workers here: install nginx or name its group"
        ) from exc
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, -1, group_id)
    directory.chmod(0o750)
    path = directory / ORIGIN_SECRET_MAP
    _replace_atomically(path, f'"{secret}" 1;\n', mode=0o640, group_id=group_id)
    return path


def write_env_file(values: dict[str, str], path: Path) -> None:
    """`KEY=value` lines, readable by root only, replaced atomically."""
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise BackendEnvError(f"{key} contains a line break and cannot go in an env file")
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(path, "".join(f"{key}={value}\n" for key, value in values.items()), 0o600)


def _secret_string(secrets: SecretsManagerClient, secret_id: str, name: str, setting: str) -> str:
    try:
        return secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        raise BackendEnvError(
            f"cannot read the {name} secret {secret_id}: {exc}; check {setting} in "
            "/run/cvstack/stack.env and the instance role"
        ) from exc


def _replace_atomically(path: Path, text: str, mode: int, group_id: int = -1) -> None:
    """Write a temporary beside `path` with exactly `mode` (whatever the umask or a leftover
    temporary) and `group_id` (-1: unchanged), then rename it over `path`."""
    temporary = path.with_name(f".{path.name}.tmp")  # never matches nginx's `*.map` glob
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(descriptor, mode)
        os.fchown(descriptor, -1, group_id)
        handle.write(text)
    temporary.replace(path)
