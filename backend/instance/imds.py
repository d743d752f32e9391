"""Reads from EC2's instance metadata service, IMDSv2 only (the stack requires tokens).

Each read is a PUT for a short-lived session token, then the GET with it. The endpoint is
botocore's own `AWS_EC2_METADATA_SERVICE_ENDPOINT` when set (as for credentials; the boot
rehearsal and the tests point it at their own server), else the link-local address.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

IMDS_URL = "http://169.254.169.254"
IMDS_ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_TTL_S = 60
INSTANCE_ID = "instance-id"
TARGET_LIFECYCLE_STATE = "autoscaling/target-lifecycle-state"


def imds_base_url(explicit: str | None = None) -> str:
    """`explicit`, else the endpoint variable, else the link-local address; no trailing slash."""
    return (explicit or os.environ.get(IMDS_ENDPOINT_VARIABLE) or IMDS_URL).rstrip("/")


def read_metadata(base_url: str, path: str, timeout_s: float = 2.0) -> str | None:
    """`latest/meta-data/<path>`, stripped; None when IMDS has no such item (404), e.g. the
    target lifecycle state of an instance outside an Auto Scaling group. Any other failure
    raises OSError (urllib's URLError and HTTPError are OSErrors)."""
    token_request = urllib.request.Request(
        f"{base_url}/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
    )
    with urllib.request.urlopen(token_request, timeout=timeout_s) as response:
        token = response.read().decode()
    request = urllib.request.Request(
        f"{base_url}/latest/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return str(response.read().decode().strip())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
