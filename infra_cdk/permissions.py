"""IAM statements shared by the instance and the Lambdas, each as narrow as AWS allows."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from lambdas.shared.metrics import NAMESPACE


def put_metrics() -> iam.PolicyStatement:
    """PutMetricData has no resource-level control; the namespace condition narrows it."""
    return iam.PolicyStatement(
        actions=["cloudwatch:PutMetricData"],
        resources=["*"],
        conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
    )


def read_metrics() -> iam.PolicyStatement:
    """GetMetricStatistics supports no resource-level permissions."""
    return iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])


def describe_instances() -> iam.PolicyStatement:
    """DescribeInstances supports no resource-level permissions."""
    return iam.PolicyStatement(actions=["ec2:DescribeInstances"], resources=["*"])


def on_instance(instance_arn: str, *actions: str) -> iam.PolicyStatement:
    """`actions` on the one GPU instance."""
    return iam.PolicyStatement(actions=list(actions), resources=[instance_arn])


def session_manager() -> iam.PolicyStatement:
    """What the SSM Agent needs for Session Manager shells, and nothing more (AWS's documented
    minimum; AmazonSSMManagedInstanceCore would also allow ssm:GetParameter on every
    parameter). ssmmessages has no resource types; UpdateInstanceInformation is left at "*"
    because naming the instance here would make the role depend on the instance it serves."""
    return iam.PolicyStatement(
        actions=[
            "ssm:UpdateInstanceInformation",
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ],
        resources=["*"],
    )


def tag_last_start(instance_arn: str, *tag_keys: str) -> iam.PolicyStatement:
    """ec2:CreateTags on the one instance, for these tag keys only."""
    return iam.PolicyStatement(
        actions=["ec2:CreateTags"],
        resources=[instance_arn],
        conditions={"ForAllValues:StringEquals": {"aws:TagKeys": list(tag_keys)}},
    )


def read_metric_data() -> iam.PolicyStatement:
    """GetMetricData supports no resource-level permissions."""
    return iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"])


def describe_fleet() -> iam.PolicyStatement:
    """Auto Scaling's Describe actions support no resource-level permissions."""
    return iam.PolicyStatement(
        actions=["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeWarmPool"],
        resources=["*"],
    )


def on_group(group_arn: str, *actions: str) -> iam.PolicyStatement:
    """`actions` on the one Auto Scaling group (its ARN by name: `fleet_group.group_arn`)."""
    return iam.PolicyStatement(actions=list(actions), resources=[group_arn])


def tag_group_last_start(group_arn: str, tag_key: str) -> iam.PolicyStatement:
    """autoscaling:CreateOrUpdateTags on the one group, for the one tag key."""
    return iam.PolicyStatement(
        actions=["autoscaling:CreateOrUpdateTags"],
        resources=[group_arn],
        conditions={"ForAllValues:StringEquals": {"aws:TagKeys": [tag_key]}},
    )
