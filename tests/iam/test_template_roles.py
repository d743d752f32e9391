"""Every role in the template is live in moto with exactly its template policies, and has
its behaviour proven in this package; the service roles deliver logs and nothing else."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.iam.conftest import Cloud, Synthesized, live_cloud
from tests.iam.helpers import assert_denied_but_admin_allowed
from tests.iam.template_iam import (
    custom_resource_role,
    instance_role,
    lambda_role,
    role_of,
    template_roles,
)

LAMBDAS = ("start_server", "status", "idle_stop")
DEPLOY_TIME = ("Custom::CDKBucketDeployment", "Custom::AWS", "Custom::S3AutoDeleteObjects")
# (resource type, property naming the role, property naming the log group it writes)
SERVICE_ROLES = {
    "vpc flow logs": ("AWS::EC2::FlowLog", "DeliverLogsPermissionArn"),
    "api gateway account": ("AWS::ApiGateway::Account", "CloudWatchRoleArn"),
}


def service_log_group(resources: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The log group each service role delivers to, as the template names it."""
    if name == "vpc flow logs":
        (flow_log,) = [r for r in resources.values() if r["Type"] == "AWS::EC2::FlowLog"]
        return dict(flow_log["Properties"]["LogGroupName"])
    (stage,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    return {"Ref": stage["Properties"]["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]}


@pytest.fixture(params=["synthesized", "fleet_synthesized"])
def either_mode(request: pytest.FixtureRequest) -> Synthesized:
    """Single mode's template, then fleet mode's."""
    synthesized: Synthesized = request.getfixturevalue(request.param)
    return synthesized


@pytest.fixture
def either_cloud(either_mode: Synthesized) -> Iterator[Cloud]:
    with live_cloud(either_mode) as built:
        yield built


def test_every_template_role_is_proven_here(either_mode: Synthesized) -> None:
    """A new role fails this until its calls and denials have tests in tests/iam (fleet mode's:
    test_fleet_roles.py)."""
    resources = either_mode.resources
    covered = {lambda_role(resources, module)[1] for module in LAMBDAS}
    covered.add(instance_role(resources)[1])
    # aws-cdk-lib's deploy-time Lambdas: tests/iam/test_deploy_time_roles.py
    covered |= {custom_resource_role(resources, kind)[1] for kind in DEPLOY_TIME}
    for kind, prop in SERVICE_ROLES.values():
        role = role_of(resources, kind, prop)
        if role is not None:
            covered.add(role)
    assert set(template_roles(resources)) == covered


def test_each_role_holds_exactly_its_template_policies(either_cloud: Cloud) -> None:
    cloud = either_cloud
    iam = cloud.admin.client("iam")
    for logical, role in template_roles(cloud.resources).items():
        name = cloud.resolver.ref(logical)
        live = {
            policy: iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
        }
        assert live == {
            policy: cloud.resolver.resolve(document) for policy, document in role.inline.items()
        }
        attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        assert len(attached) == len(role.managed_arns)


@pytest.mark.parametrize("name", SERVICE_ROLES)
def test_service_roles_deliver_their_logs_and_nothing_else(cloud: Cloud, name: str) -> None:
    role = role_of(cloud.resources, *SERVICE_ROLES[name])
    if role is None:
        pytest.skip(f"the template has no {SERVICE_ROLES[name][0]}")
    group = str(cloud.resolver.resolve(service_log_group(cloud.resources, name)))
    logs = cloud.role_session(role).client("logs")
    logs.create_log_stream(logGroupName=group, logStreamName="delivery")
    logs.put_log_events(
        logGroupName=group,
        logStreamName="delivery",
        logEvents=[{"timestamp": 1_700_000_000_000, "message": "delivered"}],
    )
    secret = cloud.lambda_environment("start_server")["SESSION_SECRET_ARN"]
    assert_denied_but_admin_allowed(
        cloud.role_session(role),
        cloud.admin,
        lambda s: s.client("secretsmanager").get_secret_value(SecretId=secret),
    )
