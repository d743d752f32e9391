"""The instance's settings, read at every boot (systemd/cvstack-settings.service).

User data writes only the immutable bootstrap lines to `/etc/cvstack/instance.env`
(`CVSTACK_AWS_REGION`, `CVSTACK_SETTINGS_PARAMETER`). Everything that can change after launch
(model store, secret ids, allowed origins; in fleet mode the group, its lifecycle hooks and
the drain limit, and the admission wait) lives in an SSM String parameter holding a JSON
object, so a `cdk deploy` that changes it reaches the instance at its next boot. This module
reads and validates that parameter and writes `/run/cvstack/stack.env` (tmpfs, 0600, atomic):
the bootstrap lines, the parameter's lines, then the optional AWS endpoint overrides of
`/etc/cvstack/aws.env` (VPC endpoints, or the boot rehearsal's moto_server). Every other unit
reads that one file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from backend.instance.backend_env import BackendEnvError, write_env_file

INSTANCE_ENV = Path("/etc/cvstack/instance.env")
AWS_ENV = Path("/etc/cvstack/aws.env")
STACK_ENV = Path("/run/cvstack/stack.env")
REGION = "CVSTACK_AWS_REGION"
PARAMETER = "CVSTACK_SETTINGS_PARAMETER"
BOOTSTRAP_KEYS = (REGION, PARAMETER)
MODELS_S3_URI = "CVSTACK_MODELS_S3_URI"
SESSION_SECRET_ID = "CVSTACK_SESSION_SECRET_ID"
ORIGIN_SECRET_ID = "CVSTACK_ORIGIN_SECRET_ID"
FRONTEND_ORIGINS = "CVSTACK_FRONTEND_ORIGINS"
SETTING_KEYS = (MODELS_S3_URI, SESSION_SECRET_ID, ORIGIN_SECRET_ID, FRONTEND_ORIGINS)
# Fleet mode only: all three or none (backend/instance/fleet_agent.py reads them).
FLEET_GROUP_NAME = "CVSTACK_FLEET_GROUP_NAME"
FLEET_HOOK_NAME = "CVSTACK_FLEET_HOOK_NAME"
DRAIN_LIMIT_S = "CVSTACK_DRAIN_LIMIT_S"
FLEET_KEYS = (FLEET_GROUP_NAME, FLEET_HOOK_NAME, DRAIN_LIMIT_S)
# Fleet mode, optional: the group's launch lifecycle hook, which the agent completes once the
# backend is ready (a stack without that hook leaves it out).
FLEET_LAUNCH_HOOK_NAME = "CVSTACK_FLEET_LAUNCH_HOOK_NAME"
# Optional in either mode: the backend's admission wait (fleet mode sets 5 s), for backend.env.
MAX_WAIT_S = "CVSTACK_MAX_WAIT_S"
OPTIONAL_KEYS = (*FLEET_KEYS, FLEET_LAUNCH_HOOK_NAME, MAX_WAIT_S)
# A lifecycle action waits at most 48 hours, heartbeats or not.
MAX_DRAIN_LIMIT_S = 48 * 3600

_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
# Values go into env files that both systemd and `docker run --env-file` read; those two
# disagree on quotes, backslashes and spaces, so no value may contain any.
_PLAIN = re.compile(r"[^\s\"'\\`$]*")
_S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?")
# An origin, or `self`: the page's own origin (backend/security/origins.py).
_ORIGIN = re.compile(r"self|https?://[A-Za-z0-9.-]+(:\d{1,5})?")
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_HOOK_NAME = re.compile(r"[A-Za-z0-9_/-]{1,255}")  # Auto Scaling's own pattern
_WHOLE_SECONDS = re.compile(r"[0-9]{1,6}")
_SECONDS = re.compile(r"[0-9]{1,4}(\.[0-9]+)?")


class ParameterReader(Protocol):
    """The one SSM call the instance makes (a boto3 `ssm` client)."""

    def get_parameter(self, *, Name: str) -> Any: ...  # noqa: N803 (boto3's name)


class SettingsError(RuntimeError):
    """The instance's settings are missing or invalid; the message says what to fix."""


@dataclass(frozen=True)
class FleetSettings:
    """What the fleet agent needs: the group, its termination hook, the drain limit, and its
    launch hook when the stack has one."""

    group_name: str
    hook_name: str
    drain_limit_s: int
    launch_hook_name: str | None = None


def fleet_settings(
    values: Mapping[str, str], where: str = "the environment"
) -> FleetSettings | None:
    """The fleet keys of `values` (stack.env's lines, or the agent's environment), checked;
    None when the instance is not in a fleet (none of them set)."""
    present = [key for key in FLEET_KEYS if values.get(key)]
    launch_hook = values.get(FLEET_LAUNCH_HOOK_NAME) or None
    if not present:
        if launch_hook:
            raise SettingsError(
                f"{where}: {FLEET_LAUNCH_HOOK_NAME} is set but {FLEET_GROUP_NAME} is not: the "
                f"launch hook belongs to fleet mode, which needs {', '.join(FLEET_KEYS)} too "
                "(cdk.json context.cvstack mode: fleet)"
            )
        return None
    missing = [key for key in FLEET_KEYS if key not in present]
    if missing:
        raise SettingsError(
            f"{where}: {missing[0]} is not set but {present[0]} is: fleet mode needs "
            f"{', '.join(FLEET_KEYS)} together (cdk.json context.cvstack mode: fleet)"
        )
    for key in FLEET_KEYS:
        _checked(key, values[key], where)
    if launch_hook:
        _checked(FLEET_LAUNCH_HOOK_NAME, launch_hook, where)
        if launch_hook == values[FLEET_HOOK_NAME]:
            raise SettingsError(
                f"{where}: {FLEET_LAUNCH_HOOK_NAME} and {FLEET_HOOK_NAME} are both "
                f"{launch_hook!r}: the launch and the termination hook are two hooks of the group "
                "with their own names (cdk.json context.cvstack)"
            )
    return FleetSettings(
        group_name=values[FLEET_GROUP_NAME],
        hook_name=values[FLEET_HOOK_NAME],
        drain_limit_s=int(values[DRAIN_LIMIT_S]),
        launch_hook_name=launch_hook,
    )


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines (blank lines and `#` comments skipped), checked as plain values."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not _KEY.fullmatch(key):
            raise SettingsError(f"{path}:{number}: expected KEY=value, got {line!r}")
        values[key] = _plain(key, value, str(path))
    return values


def bootstrap(instance_env: Path) -> dict[str, str]:
    """The user-data lines: region and parameter name, nothing else."""
    values = read_env_file(instance_env)
    for key in BOOTSTRAP_KEYS:
        if not values.get(key):
            raise SettingsError(
                f"{instance_env} has no {key}: the stack's user data writes it; relaunch the "
                "instance from the stack (cdk deploy) or add the line by hand"
            )
    unknown = sorted(set(values) - set(BOOTSTRAP_KEYS))
    if unknown:
        raise SettingsError(
            f"{instance_env} has unexpected keys {', '.join(unknown)}: it holds only "
            f"{' and '.join(BOOTSTRAP_KEYS)}; settings that can change belong in the SSM "
            "parameter"
        )
    return values


def fetch_parameter(ssm: ParameterReader, name: str) -> str:
    """The parameter's text; a missing parameter or a denied call names what to check."""
    try:
        return str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            raise SettingsError(
                f"SSM parameter {name} does not exist: deploy the stack (cdk deploy) in this "
                f"region, or fix {PARAMETER} in {INSTANCE_ENV}"
            ) from exc
        raise SettingsError(
            f"cannot read SSM parameter {name} ({code or exc}): check the instance role's "
            "ssm:GetParameter permission and the network path to SSM"
        ) from exc
    except BotoCoreError as exc:
        raise SettingsError(f"cannot reach SSM for parameter {name}: {exc}") from exc


def parse_settings(text: str, name: str) -> dict[str, str]:
    """The parameter's JSON object, checked key by key (see the module docstring)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"SSM parameter {name} is not JSON ({exc.msg} at character {exc.pos}): set it to "
            f"an object with the keys {', '.join(SETTING_KEYS)}"
        ) from exc
    if not isinstance(document, dict):
        raise SettingsError(f"SSM parameter {name} must hold a JSON object, not {text[:40]!r}")
    unknown = sorted(set(document) - set(SETTING_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise SettingsError(
            f"SSM parameter {name} has unknown key {unknown[0]}: remove it; the keys are "
            f"{', '.join(SETTING_KEYS)}, and optionally {', '.join(OPTIONAL_KEYS)}"
        )
    missing = [key for key in SETTING_KEYS if key not in document]
    if missing:
        raise SettingsError(
            f"SSM parameter {name} has no {missing[0]}: deploy the stack again (cdk deploy) "
            "so it writes every key"
        )
    values: dict[str, str] = {}
    where = f"SSM parameter {name}"
    for key in (*SETTING_KEYS, *(key for key in OPTIONAL_KEYS if key in document)):
        value = document[key]
        if not isinstance(value, str):
            raise SettingsError(f"{where}: {key} must be a string, not {json.dumps(value)}")
        values[key] = _checked(key, _plain(key, value, where), where)
    fleet_settings(values, where)
    return values


def stack_environment(instance_env: Path, ssm: ParameterReader, aws_env: Path) -> dict[str, str]:
    """Every line of stack.env, in order: bootstrap, the parameter's settings, AWS overrides."""
    values = bootstrap(instance_env)
    values.update(parse_settings(fetch_parameter(ssm, values[PARAMETER]), values[PARAMETER]))
    if aws_env.exists():
        overrides = read_env_file(aws_env)
        clash = sorted(set(overrides) & set(values))
        if clash:
            raise SettingsError(f"{aws_env} may not set {', '.join(clash)}")
        values.update(overrides)
    return values


def write_stack_env(values: dict[str, str], path: Path) -> None:
    """Root-only, replaced atomically: a reader sees the old file or the new one."""
    try:
        write_env_file(values, path)
    except (BackendEnvError, OSError) as exc:
        raise SettingsError(f"cannot write {path}: {exc}") from exc


def _plain(key: str, value: str, where: str) -> str:
    if not _PLAIN.fullmatch(value):
        raise SettingsError(
            f"{where}: {key} has a space, quote, backslash or $ in {value!r}; env files "
            "cannot carry it"
        )
    return value


def _checked(key: str, value: str, where: str) -> str:
    problem = None
    if key == MODELS_S3_URI and not _S3_URI.fullmatch(value):
        problem = "must be an s3://bucket/prefix/ URI (the stack's model bucket)"
    elif key == SESSION_SECRET_ID and not value:
        problem = "must name the session-token secret (its ARN)"
    elif key == ORIGIN_SECRET_ID and not value:
        problem = "must name the secret CloudFront sends to the instance (its ARN)"
    elif key == FRONTEND_ORIGINS:
        origins = value.split(",")
        bad = [origin for origin in origins if not _ORIGIN.fullmatch(origin)]
        if not value or bad:
            problem = (
                f"must be comma-separated origins like self,https://app.example.com (no path); "
                f"got {bad[0] if bad else 'nothing'!r}"
            )
    elif key == FLEET_GROUP_NAME and not _GROUP_NAME.fullmatch(value):
        problem = f"must name the Auto Scaling group (letters, digits, . _ -), not {value!r}"
    elif key == FLEET_HOOK_NAME and not _HOOK_NAME.fullmatch(value):
        problem = f"must name the group's termination lifecycle hook, not {value!r}"
    elif key == FLEET_LAUNCH_HOOK_NAME and not _HOOK_NAME.fullmatch(value):
        problem = f"must name the group's launch lifecycle hook, not {value!r}"
    elif key == DRAIN_LIMIT_S and not (
        _WHOLE_SECONDS.fullmatch(value) and 1 <= int(value) <= MAX_DRAIN_LIMIT_S
    ):
        problem = (
            f"must be whole seconds from 1 to {MAX_DRAIN_LIMIT_S} (a lifecycle action's "
            f"limit), not {value!r}"
        )
    elif key == MAX_WAIT_S and not _SECONDS.fullmatch(value):
        problem = f"must be seconds, e.g. 5 (a session's wait for a slot), not {value!r}"
    if problem:
        raise SettingsError(f"{where}: {key} {problem} (cdk.json context.cvstack)")
    return value
