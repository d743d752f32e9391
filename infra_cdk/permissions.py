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
