"""Run code as a role, and check that a denial is IAM's doing (admin may make the same call)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import Cloud
from tests.lambdas.conftest import forget_lambda_settings

DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
# moto answers JSON-protocol clients (CloudWatch, Logs, Secrets Manager, SSM) with a query-XML
# error body, which botocore reports as code "403" with the XML as the message.
XML_CODE = re.compile(r"<Code>([^<]+)</Code>")


def closed_loopback_host() -> str:
    """host:port on loopback where nothing listens (a /ready probe fails at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def as_lambda(monkeypatch: pytest.MonkeyPatch, cloud: Cloud, module: str) -> None:
    """The function's template environment, and its role's credentials for `boto3.client`."""
    environment = cloud.lambda_environment(module, ENDPOINT_HOST=closed_loopback_host())
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    forget_lambda_settings()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", cloud.lambda_session(module))


def assert_denied_but_admin_allowed(
    role: boto3.Session, admin: boto3.Session, call: Callable[[boto3.Session], object]
) -> None:
    """`call` fails with AccessDenied as `role`, then succeeds with admin credentials."""
    with pytest.raises(ClientError) as denied:
        call(role)
    assert error_code(denied.value) in DENIED_CODES, denied.value.response
    call(admin)


def error_code(error: ClientError) -> str:
    """The AWS error code, also when moto's XML error body reached a JSON-protocol client."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    found = XML_CODE.search(str(error.response.get("Error", {}).get("Message", "")))
    return found.group(1) if code == "403" and found else code
