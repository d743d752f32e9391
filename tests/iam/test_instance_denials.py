"""Reads and writes outside the GPU instance's template role are denied (and allowed to admin)."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest

from backend.instance.boot_report import BOOT_REQUESTED_TAG
from backend.instance.settings import MODELS_S3_URI
from tests.iam.conftest import Cloud
from tests.iam.helpers import assert_denied_but_admin_allowed


def _settings(cloud: Cloud) -> dict[str, str]:
    """The settings parameter's JSON, read as admin."""
    name = next(
        line.split("=", 1)[1]
        for line in cloud.instance_env_lines()
        if line.startswith("CVSTACK_SETTINGS_PARAMETER=")
    )
    value = cloud.admin.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    settings: dict[str, str] = json.loads(value)
    return settings


def _bucket(cloud: Cloud) -> str:
    return _settings(cloud)[MODELS_S3_URI].removeprefix("s3://").split("/")[0]


DENIALS: dict[str, Callable[[boto3.Session, Cloud], object]] = {
    "read outside models/": lambda s, c: s.client("s3").get_object(
        Bucket=_bucket(c), Key="private/notes.txt"
    ),
    "list outside models/": lambda s, c: s.client("s3").list_objects_v2(
        Bucket=_bucket(c), Prefix="private/"
    ),
    "list the whole bucket": lambda s, c: s.client("s3").list_objects_v2(Bucket=_bucket(c)),
    "write to the model store": lambda s, c: s.client("s3").put_object(
        Bucket=_bucket(c), Key="models/manifest.json", Body=b"{}"
    ),
    "read another secret": lambda s, c: s.client("secretsmanager").get_secret_value(
        SecretId=c.other_secret_arn
    ),
    "read another parameter": lambda s, c: s.client("ssm").get_parameter(Name=c.other_parameter),
    "publish outside the cvstack namespace": lambda s, c: s.client("cloudwatch").put_metric_data(
        Namespace="AWS/EC2", MetricData=[{"MetricName": "Forged", "Value": 1.0}]
    ),
    "stop itself": lambda s, c: s.client("ec2").stop_instances(InstanceIds=[c.instance_id]),
    # It reads its boot-requested tag through IMDS; it may not forge one (or any tag).
    "tag itself": lambda s, c: s.client("ec2").create_tags(
        Resources=[c.instance_id], Tags=[{"Key": BOOT_REQUESTED_TAG, "Value": "x"}]
    ),
}


@pytest.mark.parametrize("name", DENIALS)
def test_the_instance_cannot(shared_cloud: Cloud, name: str) -> None:
    cloud = shared_cloud
    cloud.admin.client("s3").put_object(Bucket=_bucket(cloud), Key="private/notes.txt", Body=b"x")
    assert_denied_but_admin_allowed(
        cloud.instance_session, cloud.admin, lambda s: DENIALS[name](s, cloud)
    )
