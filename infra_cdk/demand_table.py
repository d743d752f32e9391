"""Fleet mode's /start demand: a DynamoDB table counting /start calls per minute.

start_server adds 1 to the current minute's item with an atomic `UpdateItem ADD` and reads the
minutes of its demand window back, so a burst of visitors sizes the fleet before their sessions
exist (lambdas/shared/fleet_capacity.py). Items expire through DynamoDB's TTL.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

PARTITION_KEY = "minute"  # "2026-12-02T09:14" (UTC)
TTL_ATTRIBUTE = "expires_at"  # epoch seconds
# What start_server does with the table, and nothing else.
ACTIONS = ("dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:BatchGetItem")


class DemandTable(Construct):
    """`table`: on-demand, items expire at `expires_at`; its name is CloudFormation's."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            # Counts of the last minutes only, re-created by the next /start: nothing to keep.
            removal_policy=RemovalPolicy.DESTROY,
        )

    def counting(self) -> iam.PolicyStatement:
        """Count and read /start calls: the item actions start_server makes, on this table."""
        return iam.PolicyStatement(actions=list(ACTIONS), resources=[self.table.table_arn])
