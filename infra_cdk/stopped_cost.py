"""What the stack bills while the GPU instance is stopped (fleet mode: while the fleet is at
zero), counted from the synthesized template.

`docs/infrastructure.md` shows `markdown_table(stopped_cost(template))` for both modes; a test
regenerates them from the templates the tests synthesize, so the figures follow every change to
the stack. Prices are AWS's us-east-1 list prices (USD); other regions differ by a few percent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

HOURS_PER_MONTH = 730
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60
GP3_GB_MONTH = 0.08
PUBLIC_IPV4_HOUR = 0.005
SECRET_MONTH = 0.40
ALARM_METRIC_MONTH = 0.10
DASHBOARD_MONTH = 3.00
CUSTOM_METRIC_MONTH = 0.30
PUT_METRIC_DATA_PER_1000 = 0.01
LAMBDA_REQUEST_PER_MILLION = 0.20
LAMBDA_ARM_GB_SECOND = 0.0000133334
LOGS_INGEST_GB = 0.50
S3_STANDARD_GB_MONTH = 0.023
PAGE_MB = 0.1  # frontend/ plus config.json: well under a megabyte
ALB_HOUR = 0.0225  # plus LCUs, billed only for traffic
# Assumptions a template cannot say; each is stated in the table's "counted" column.
IDLE_CHECK_SECONDS = 0.3  # idle_stop of a stopped instance: one DescribeInstances, one put
IDLE_CHECK_LOG_BYTES = 1_500  # Lambda's START/END/REPORT lines plus one JSON report line
# While stopped, idle_stop publishes only InstanceRunning (0); every other custom metric is
# published by the instance, and CloudWatch bills a metric only for hours it receives data.
METRICS_PUBLISHED_WHILE_STOPPED = 1
RATE_PER_MINUTE = re.compile(r"rate\((\d+) minutes?\)")


@dataclass(frozen=True)
class CostItem:
    """One billed thing: what, how it was counted, and USD per month."""

    item: str
    counted: str
    usd_month: float


def stopped_cost(template: Mapping[str, Any]) -> list[CostItem]:
    """The monthly bill of a stack whose instance never runs, item by item."""
    resources: dict[str, dict[str, Any]] = dict(template["Resources"])

    def of_type(kind: str) -> list[dict[str, Any]]:
        return [r.get("Properties", {}) for r in resources.values() if r["Type"] == kind]

    volume_gib = sum(
        int(mapping["Ebs"]["VolumeSize"])
        for instance in of_type("AWS::EC2::Instance")
        for mapping in instance.get("BlockDeviceMappings", [])
        if "Ebs" in mapping
    )
    groups = of_type("AWS::AutoScaling::AutoScalingGroup")
    addresses = len(of_type("AWS::EC2::EIP"))
    secrets = len(of_type("AWS::SecretsManager::Secret"))
    distributions = len(of_type("AWS::CloudFront::Distribution"))
    page_copies = len(of_type("Custom::CDKBucketDeployment"))
    alarm_metrics = sum(_alarm_metric_count(alarm) for alarm in of_type("AWS::CloudWatch::Alarm"))
    dashboards = len(of_type("AWS::CloudWatch::Dashboard"))
    checks = _scheduled_invocations_per_month(resources)
    memory_gb = _scheduled_memory_mb(resources) / 1024
    gpu = (
        _fleet_items(of_type)
        if groups
        else [CostItem("EBS gp3 root volume", f"{volume_gib} GiB", volume_gib * GP3_GB_MONTH)]
    )
    running_metric = "InstancesRunning" if groups else "InstanceRunning"
    return [
        *gpu,
        CostItem(
            "Elastic IP (the instance's auto-assigned public IPv4 is released on stop)",
            f"{addresses} x {HOURS_PER_MONTH} h",
            addresses * HOURS_PER_MONTH * PUBLIC_IPV4_HOUR,
        ),
        CostItem(
            "CloudFront distribution and VPC origin (billed per request and GB only)",
            f"{distributions}, no requests while nobody visits",
            0.0,
        ),
        CostItem(
            "the page in the S3 site bucket",
            f"{page_copies} x ~{PAGE_MB:g} MB",
            page_copies * PAGE_MB / 1024 * S3_STANDARD_GB_MONTH,
        ),
        CostItem(
            "CloudWatch alarms",
            f"{alarm_metrics} alarm metrics",
            alarm_metrics * ALARM_METRIC_MONTH,
        ),
        CostItem(
            "CloudWatch dashboard (the first 3 of an account are free)",
            f"{dashboards}",
            dashboards * DASHBOARD_MONTH,
        ),
        CostItem(
            "Secrets Manager secrets (session token key, origin secret)",
            f"{secrets}",
            secrets * SECRET_MONTH,
        ),
        CostItem(
            f"custom metric published while stopped ({running_metric})",
            f"{METRICS_PUBLISHED_WHILE_STOPPED}",
            METRICS_PUBLISHED_WHILE_STOPPED * CUSTOM_METRIC_MONTH,
        ),
        CostItem(
            "idle_stop's PutMetricData calls",
            f"{checks:,} a month",
            checks / 1000 * PUT_METRIC_DATA_PER_1000,
        ),
        CostItem(
            "idle_stop invocations (before the free tier)",
            f"{checks:,} x {memory_gb * 1024:.0f} MB x {IDLE_CHECK_SECONDS} s",
            checks / 1e6 * LAMBDA_REQUEST_PER_MILLION
            + checks * memory_gb * IDLE_CHECK_SECONDS * LAMBDA_ARM_GB_SECOND,
        ),
        CostItem(
            "idle_stop's log lines",
            f"{checks:,} x {IDLE_CHECK_LOG_BYTES / 1000:.1f} kB",
            checks * IDLE_CHECK_LOG_BYTES / 1e9 * LOGS_INGEST_GB,
        ),
    ]


def _fleet_items(of_type: Callable[[str], list[dict[str, Any]]]) -> list[CostItem]:
    """At zero, the warm pool's stopped instances keep their root volumes (its MinSize, or
    AWS's default: maxSize of them), and the load balancer bills by the hour."""
    (group,) = of_type("AWS::AutoScaling::AutoScalingGroup")
    pools = of_type("AWS::AutoScaling::WarmPool")
    warm = int(pools[0].get("MinSize", group["MaxSize"])) if pools else 0
    (template,) = of_type("AWS::EC2::LaunchTemplate")
    volume_gib = sum(
        int(mapping["Ebs"]["VolumeSize"])
        for mapping in template["LaunchTemplateData"].get("BlockDeviceMappings", [])
        if "Ebs" in mapping
    )
    balancers = len(of_type("AWS::ElasticLoadBalancingV2::LoadBalancer"))
    return [
        CostItem(
            "EBS gp3 root volumes of the warm pool's stopped instances",
            f"{warm} x {volume_gib} GiB",
            warm * volume_gib * GP3_GB_MONTH,
        ),
        CostItem(
            "Application Load Balancer (hourly; LCUs only for traffic)",
            f"{balancers} x {HOURS_PER_MONTH} h",
            balancers * HOURS_PER_MONTH * ALB_HOUR,
        ),
        CostItem(
            "DynamoDB demand table (on-demand: billed per /start only)",
            f"{len(of_type('AWS::DynamoDB::Table'))}, no requests while nobody visits",
            0.0,
        ),
    ]


def markdown_table(items: list[CostItem]) -> str:
    """The table docs/infrastructure.md shows, with the total."""
    lines = ["| item | counted | USD / month |", "|---|---|---|"]
    lines += [f"| {i.item} | {i.counted} | {i.usd_month:.2f} |" for i in items]
    lines.append(f"| **total** | | **{sum(i.usd_month for i in items):.2f}** |")
    return "\n".join(lines)


def _alarm_metric_count(alarm: Mapping[str, Any]) -> int:
    """CloudWatch bills an alarm per metric it reads; a math expression's inputs each count."""
    metrics = alarm.get("Metrics")
    if not metrics:
        return 1
    return sum(1 for query in metrics if "MetricStat" in query)


def _scheduled_rule(resources: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    rules: list[Mapping[str, Any]] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in r.get("Properties", {})
    ]
    if len(rules) != 1:
        raise ValueError(f"expected one scheduled rule (idle_stop), found {len(rules)}")
    return rules[0]


def _scheduled_invocations_per_month(resources: Mapping[str, Mapping[str, Any]]) -> int:
    expression = _scheduled_rule(resources)["ScheduleExpression"]
    match = RATE_PER_MINUTE.fullmatch(expression)
    if match is None:
        raise ValueError(f"idle_stop's schedule {expression!r} is not rate(N minutes)")
    return MINUTES_PER_MONTH // int(match.group(1))


def _scheduled_memory_mb(resources: Mapping[str, Mapping[str, Any]]) -> int:
    target = _scheduled_rule(resources)["Targets"][0]["Arn"]["Fn::GetAtt"][0]
    return int(resources[target]["Properties"]["MemorySize"])
