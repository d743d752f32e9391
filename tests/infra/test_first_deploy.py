"""What a first deployment into a real account needs, checked on the template (issue 10):
the account-level API Gateway logging role, alarms that can publish and that AWS feeds,
settings read at every boot, API limits and answers a page can read, a deletable stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from infra_cdk.config import StackConfig
from tests.infra.conftest import Synthesized, synthesize

SETTINGS_NAME = "/cvstack/Cvstack/instance-settings"
ALLOW_ORIGIN = "gatewayresponse.header.Access-Control-Allow-Origin"
USER_DATA = (
    "#cloud-config\n"
    "write_files:\n"
    "  - path: /etc/cvstack/instance.env\n"
    '    permissions: "0644"\n'
    "    owner: root:root\n"
    "    content: |\n"
    "      CVSTACK_AWS_REGION={region}\n"
    f"      CVSTACK_SETTINGS_PARAMETER={SETTINGS_NAME}\n"
)


def only(synthesized: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, v) for k, v in synthesized.resources.items() if v["Type"] == kind]
    return found


def policy_statements(synthesized: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    return [
        statement
        for name, policy in synthesized.resources.items()
        if policy["Type"] == "AWS::IAM::Policy" and name.startswith(role_prefix)
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def user_data_text(instance: dict[str, Any]) -> str:
    """The user data with CloudFormation's pseudo parameters written as {region} etc."""
    parts = instance["Properties"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "{region}" for p in parts)


# 1. cdk deploy in a new account


def test_api_gateway_account_role_exists_before_the_stage_logs(synthesized: Synthesized) -> None:
    """A stage with access logs fails to create unless the account+region has API Gateway's
    CloudWatch role set; the stack sets it first and keeps it on destroy (other APIs use it)."""
    account_id, account = only(synthesized, "AWS::ApiGateway::Account")
    assert account["DeletionPolicy"] == "Retain"
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = synthesized.resources[role_id]
    assert role["DeletionPolicy"] == "Retain"
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    assert "service-role/AmazonAPIGatewayPushToCloudWatchLogs" in json.dumps(
        role["Properties"]["ManagedPolicyArns"]
    )
    _, stage = only(synthesized, "AWS::ApiGateway::Stage")
    assert "AccessLogSetting" in stage["Properties"]
    assert account_id in stage["DependsOn"]


# 2. alarm e-mails


def test_alarm_topic_lets_cloudwatch_alarms_of_this_account_publish(
    synthesized: Synthesized,
) -> None:
    _, policy = only(synthesized, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Resource"]["Ref"].startswith("MonitoringAlarms")
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = json.dumps(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    assert ':cloudwatch:", {"Ref": "AWS::Region"}' in source and ':alarm:*"' in source
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# 3. settings read at every boot


def test_user_data_only_points_at_the_settings_parameter(synthesized: Synthesized) -> None:
    _, instance = only(synthesized, "AWS::EC2::Instance")
    assert user_data_text(instance) == USER_DATA
    _, parameter = only(synthesized, "AWS::SSM::Parameter")
    assert (parameter["Properties"]["Name"], parameter["Properties"]["Type"]) == (
        SETTINGS_NAME,
        "String",
    )
    parts = parameter["Properties"]["Value"]["Fn::Join"][1]
    value = json.loads("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
    assert value == {
        "CVSTACK_MODELS_S3_URI": "s3://TOKEN/models/",
        "CVSTACK_SESSION_SECRET_ID": "TOKEN",
        "CVSTACK_ORIGIN_SECRET_ID": "TOKEN",
        # The page's own origin, whatever host CloudFront serves it from.
        "CVSTACK_FRONTEND_ORIGINS": "self",
    }
    secrets = [p["Ref"] for p in parts if isinstance(p, dict)][1:]
    assert secrets[0].startswith("SessionSecret") and secrets[1].startswith("OriginSecret")


def test_the_instance_may_read_exactly_its_settings_parameter(synthesized: Synthesized) -> None:
    parameter_id, _ = only(synthesized, "AWS::SSM::Parameter")
    reads = [
        s for s in policy_statements(synthesized, "GpuRole") if "ssm:GetParameter" in s["Action"]
    ]
    assert [r["Action"] for r in reads] == ["ssm:GetParameter"]
    assert reads[0]["Resource"]["Fn::Join"][1][-2:] == [":parameter", {"Ref": parameter_id}]
    assert not any(
        a.startswith("ssm:GetParameter")
        for s in policy_statements(synthesized, "Lifecycle")
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    _, instance = only(synthesized, "AWS::EC2::Instance")
    assert parameter_id in instance["DependsOn"]


def test_changed_origins_and_domain_change_only_the_parameter(
    synthesized: Synthesized, resynthesized: Synthesized
) -> None:
    """User data runs once per instance; the next boot reads the parameter instead, and since
    the instance's properties do not change, CloudFormation neither replaces nor stops it."""
    (name, before), (_, after) = (
        only(synthesized, "AWS::EC2::Instance"),
        only(resynthesized, "AWS::EC2::Instance"),
    )
    assert name in resynthesized.resources
    assert before["Properties"] == after["Properties"]
    old = only(synthesized, "AWS::SSM::Parameter")[1]["Properties"]["Value"]
    new = only(resynthesized, "AWS::SSM::Parameter")[1]["Properties"]["Value"]
    assert old != new
    assert "self,https://gpu.example.org,https://new.example.org,http://localhost:5173" in (
        json.dumps(new)
    )


# 4. safety alarms that do not depend on idle_stop


def alarms(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        name: a["Properties"]
        for name, a in synthesized.resources.items()
        if a["Type"] == "AWS::CloudWatch::Alarm"
    }


def find_alarm(synthesized: Synthesized, name: str) -> dict[str, Any]:
    (found,) = [a for k, a in alarms(synthesized).items() if k.startswith(f"Monitoring{name}")]
    return found


def test_idle_and_budget_alarms_read_what_ec2_itself_publishes(synthesized: Synthesized) -> None:
    budget = find_alarm(synthesized, "GpuBudgetReached")
    assert (budget["Namespace"], budget["MetricName"], budget["Statistic"]) == (
        "AWS/EC2",
        "StatusCheckFailed",
        "SampleCount",
    )
    assert (budget["Period"], budget["Threshold"]) == (86400, 240)
    idle = find_alarm(synthesized, "IdleNotStopped")
    by_id = {m["Id"]: m for m in idle["Metrics"]}
    running = by_id["running"]["MetricStat"]
    assert (running["Metric"]["Namespace"], running["Metric"]["MetricName"]) == (
        "AWS/EC2",
        "StatusCheckFailed",
    )
    assert (running["Stat"], running["Period"]) == ("SampleCount", 60)
    assert by_id["sessions"]["MetricStat"]["Metric"]["MetricName"] == "ActiveSessions"
    assert "InstanceRunning" not in json.dumps([budget, idle])


def test_lambda_failures_and_a_silent_idle_stop_raise_alarms(synthesized: Synthesized) -> None:
    for function in ("StartServer", "Status", "IdleStop"):
        errors = find_alarm(synthesized, f"{function}Errors")
        assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == (
            "AWS/Lambda",
            "Errors",
            "Sum",
        )
        assert errors["Dimensions"][0]["Value"]["Ref"].startswith(f"Lifecycle{function}")
        assert errors["Threshold"] == 1
    silent = find_alarm(synthesized, "IdleStopNotInvoked")
    assert (silent["MetricName"], silent["Statistic"], silent["Period"]) == (
        "Invocations",
        "Sum",
        300,
    )
    assert silent["Dimensions"][0]["Value"]["Ref"].startswith("LifecycleIdleStop")
    assert (silent["ComparisonOperator"], silent["TreatMissingData"]) == (
        "LessThanThreshold",
        "breaching",
    )
    api = find_alarm(synthesized, "ApiServerErrors")
    assert (api["Namespace"], api["MetricName"]) == ("AWS/ApiGateway", "5XXError")


# 6. API limits and API Gateway's own answers


def test_api_limits_fit_a_team_polling_every_two_seconds(synthesized: Synthesized) -> None:
    config = StackConfig()
    poll_rate = 1 / 2  # the page's /status polling, requests per second per visitor
    assert config.api_rate_per_second / poll_rate >= 20  # 20 visitors waiting at once
    assert config.api_burst >= 2 * config.api_rate_per_second
    assert config.api_daily_quota >= 100 * (5 * 60 * poll_rate)  # 100 five-minute waits a day
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "MethodSettings": [
                Match.object_like({"ThrottlingRateLimit": 10, "ThrottlingBurstLimit": 20})
            ]
        },
    )


@pytest.mark.parametrize(
    ("response_type", "retryable"),
    [
        ("THROTTLED", True),
        ("QUOTA_EXCEEDED", False),
        ("INVALID_API_KEY", False),
        ("DEFAULT_4XX", False),
        ("DEFAULT_5XX", True),
    ],
)
def test_api_gateway_refusals_carry_cors_and_the_error_shape(
    synthesized: Synthesized, response_type: str, retryable: bool
) -> None:
    """Without CORS headers the browser hides API Gateway's 429/403 as a network error."""
    (response,) = [
        r["Properties"]
        for r in synthesized.resources.values()
        if r["Type"] == "AWS::ApiGateway::GatewayResponse"
        and r["Properties"]["ResponseType"] == response_type
    ]
    headers = response["ResponseParameters"]
    # The stack's page is same-origin: no CORS headers unless other origins are configured.
    assert ALLOW_ORIGIN not in headers
    assert headers["gatewayresponse.header.Cache-Control"] == "'no-store'"
    template = response["ResponseTemplates"]["application/json"]
    body = json.loads(template.replace("$context.error.messageString", '"API Gateway text"'))
    assert set(body) == {"error", "message", "retryable", "retry_after_s"}
    assert body["retryable"] is retryable
    if retryable:
        assert headers["gatewayresponse.header.Retry-After"] == f"'{body['retry_after_s']}'"


def test_several_origins_are_answered_by_echoing_the_request_origin(
    resynthesized: Synthesized,
) -> None:
    resynthesized.template.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {
            "ResponseType": "THROTTLED",
            "ResponseParameters": Match.object_like({ALLOW_ORIGIN: "method.request.header.Origin"}),
        },
    )


# 8, 9. availability zone, and a stack that `cdk destroy` removes and a redeploy recreates


def test_default_zone_is_the_regions_first(synthesized: Synthesized) -> None:
    _, instance = only(synthesized, "AWS::EC2::Instance")
    assert instance["Properties"]["AvailabilityZone"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}


def test_the_instance_goes_to_the_configured_zone(tmp_path: Path) -> None:
    zoned = synthesize(
        tmp_path,
        availabilityZones=["eu-west-1a", "eu-west-1c"],
        availabilityZone="eu-west-1c",
        terminationProtection=True,
    )
    _, instance = only(zoned, "AWS::EC2::Instance")
    assert instance["Properties"]["AvailabilityZone"] == "eu-west-1c"
    subnet = zoned.resources[instance["Properties"]["SubnetId"]["Ref"]]
    assert subnet["Properties"]["AvailabilityZone"] == "eu-west-1c"
    zones = sorted(
        r["Properties"]["AvailabilityZone"]
        for r in zoned.resources.values()
        if r["Type"] == "AWS::EC2::Subnet"
    )
    assert zones == ["eu-west-1a", "eu-west-1c"]
    assert instance["Properties"]["DisableApiTermination"] is True


def test_cdk_destroy_and_redeploy_are_not_blocked(synthesized: Synthesized) -> None:
    _, instance = only(synthesized, "AWS::EC2::Instance")
    assert instance["Properties"]["DisableApiTermination"] is False
    secrets = [
        r for r in synthesized.resources.values() if r["Type"] == "AWS::SecretsManager::Secret"
    ]
    assert len(secrets) == 2
    for secret in secrets:
        assert "Name" not in secret["Properties"]
        assert secret["DeletionPolicy"] == "Delete"
    # The page's bucket is emptied and removed with the stack (the model store is kept).
    (site,) = [
        r
        for name, r in synthesized.resources.items()
        if r["Type"] == "AWS::S3::Bucket" and name.startswith("FrontDoorSiteBucket")
    ]
    assert site["DeletionPolicy"] == "Delete"
    auto_delete = [
        r for r in synthesized.resources.values() if r["Type"] == "Custom::S3AutoDeleteObjects"
    ]
    assert len(auto_delete) == 1
