"""The boot estimate /status answers: the median of recent boots the instance published to
CloudWatch (moto), the configured default without history or when it cannot be read, and the
seconds since start_server asked EC2 to start the instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config

from lambdas.shared.boot_times import BOOT_SECONDS, RECENT_BOOTS, boot_estimate
from lambdas.shared.instance import BOOT_REQUESTED_TAG, LAST_START_TAG, record_start
from lambdas.shared.metrics import DIMENSION, NAMESPACE
from lambdas.status.logic import instance_status
from tests.lambdas.conftest import REGION, ReadyServer

NOW = datetime.now(UTC).replace(second=30, microsecond=0)


def publish_boots(instance_id: str, seconds: list[float]) -> None:
    """One BootSeconds datapoint per boot, an hour apart, the last one the newest."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for hours_ago, value in zip(range(len(seconds), 0, -1), seconds, strict=True):
        cloudwatch.put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {
                    "MetricName": BOOT_SECONDS,
                    "Dimensions": [{"Name": DIMENSION, "Value": instance_id}],
                    "Timestamp": NOW - timedelta(hours=hours_ago),
                    "Value": value,
                    "Unit": "Seconds",
                }
            ],
        )


def estimate(instance_id: str) -> dict[str, object]:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    return boot_estimate(cloudwatch, (DIMENSION, instance_id), default_s=120, now=NOW).fields()


def test_no_boot_yet_answers_the_configured_estimate(instance_id: str) -> None:
    assert estimate(instance_id) == {"boot_estimate_s": 120, "boot_samples": 0}


def test_the_median_of_the_newest_boots_and_implausible_values_left_out(instance_id: str) -> None:
    """Older boots fall out of the window of RECENT_BOOTS; 0, negative and over-an-hour values
    (not boots this estimate should follow) are skipped."""
    old = [300.0] * 5
    recent = [40.0, 44.0, 0.0, 38.0, -3.0, 9000.0, 41.0, 39.0, 60.0, 42.0, 43.0, 45.0, 37.0]
    publish_boots(instance_id, old + recent)
    plausible_newest = [s for s in reversed(old + recent) if 0 < s <= 3600][:RECENT_BOOTS]
    assert 300.0 not in plausible_newest, "the test's old boots are outside the window"
    assert estimate(instance_id) == {"boot_estimate_s": 42, "boot_samples": RECENT_BOOTS}


def test_an_unreadable_history_still_answers_with_the_default_and_the_reason() -> None:
    unreachable = boto3.client(
        "cloudwatch",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    answer = boot_estimate(
        unreachable, (DIMENSION, "i-0123456789abcdef0"), default_s=90, now=NOW
    ).fields()
    assert (answer["boot_estimate_s"], answer["boot_samples"]) == (90, 0)
    assert "boot history unreadable (aws_unreachable: cloudwatch:GetMetricData failed" in str(
        answer["boot_estimate_problem"]
    )


def status_at(instance_id: str, ready_server: ReadyServer, now: datetime) -> dict[str, object]:
    return instance_status(
        boto3.client("ec2", region_name=REGION),
        boto3.client("cloudwatch", region_name=REGION),
        instance_id,
        ready_server.host,
        scheme="http",
        timeout_s=1,
        boot_default_s=120,
        now=now,
    )


def test_while_booting_status_counts_from_the_start_request(
    instance_id: str, ready_server: ReadyServer
) -> None:
    """start_server tags the boot request only when it starts the instance; /status answers
    the seconds since then while the backend is not ready, and none once it is."""
    ec2 = boto3.client("ec2", region_name=REGION)
    record_start(ec2, instance_id, NOW - timedelta(seconds=25), boot=True)
    record_start(ec2, instance_id, NOW - timedelta(seconds=5))  # a later /start: not a boot
    tags = {t["Key"]: t["Value"] for t in ec2.describe_tags()["Tags"]}
    assert tags[BOOT_REQUESTED_TAG] < tags[LAST_START_TAG]
    publish_boots(instance_id, [50.0, 70.0])

    ready_server.status = 503
    booting = status_at(instance_id, ready_server, NOW)
    assert (booting["state"], booting["ready"]) == ("running", False)
    assert booting["boot_elapsed_s"] == 25
    assert (booting["boot_estimate_s"], booting["boot_samples"]) == (60, 2)

    ready_server.status = 200
    ready = status_at(instance_id, ready_server, NOW)
    assert (ready["ready"], ready["boot_elapsed_s"]) == (True, None)


@pytest.mark.parametrize("value", ["yesterday", "", (NOW + timedelta(minutes=5)).isoformat()])
def test_a_bad_or_future_boot_tag_gives_no_elapsed_time_and_status_still_answers(
    instance_id: str, ready_server: ReadyServer, value: str
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": BOOT_REQUESTED_TAG, "Value": value}])
    ready_server.status = 503
    body = status_at(instance_id, ready_server, NOW)
    assert (body["state"], body["boot_elapsed_s"], body["boot_estimate_s"]) == (
        "running",
        None,
        120,
    )
