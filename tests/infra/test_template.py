"""Template assertions on the one synthesized stack: resources, hardening, least privilege."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from infra_cdk.lambda_assets import REPO_ROOT
from lambdas.shared.instance import BOOT_REQUESTED_TAG, LAST_START_TAG
from tests.infra.conftest import Synthesized

# Actions AWS offers no resource-level permissions for: the only ones allowed Resource "*".
UNSCOPABLE_ACTIONS = {
    "ec2:DescribeInstances",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:GetMetricData",  # status: the boot history (lambdas/shared/boot_times.py)
    "cloudwatch:PutMetricData",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ssm:UpdateInstanceInformation",
    "ec2:DescribeSecurityGroups",
}
SESSION_MANAGER = {a for a in UNSCOPABLE_ACTIONS if a.startswith("ssm")}


def of_type(synthesized: Synthesized, kind: str) -> dict[str, Any]:
    return {k: v for k, v in synthesized.resources.items() if v["Type"] == kind}


def statements(synthesized: Synthesized, role_prefix: str) -> list[dict[str, Any]]:
    policies = of_type(synthesized, "AWS::IAM::Policy")
    return [
        statement
        for name, policy in policies.items()
        if name.startswith(role_prefix)
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def test_network_has_public_subnets_no_nat_and_flow_logs(synthesized: Synthesized) -> None:
    template = synthesized.template
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::Subnet", 2)
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    # Ingress comes only from the front door (tests/infra/test_front_door.py).
    group = of_type(synthesized, "AWS::EC2::SecurityGroup").popitem()[1]["Properties"]
    assert "SecurityGroupIngress" not in group


def test_gpu_instance_is_hardened(synthesized: Synthesized) -> None:
    template = synthesized.template
    template.has_resource_properties(
        "AWS::EC2::Instance",
        {
            "InstanceType": "g4dn.xlarge",
            "Monitoring": True,
            "KeyName": Match.absent(),
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": Match.object_like({"Encrypted": True, "VolumeType": "gp3"}),
                }
            ],
            "ImageId": {"Ref": Match.string_like_regexp("SsmParameterValuecvstackamiid")},
        },
    )
    template.has_parameter(
        "*",
        {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/cvstack/ami-id"},
    )
    template.resource_count_is("AWS::EC2::EIP", 0)
    template.resource_count_is("AWS::EC2::EIPAssociation", 0)
    # Session Manager through its minimal inline statement, not AmazonSSMManagedInstanceCore
    # (which would also allow ssm:GetParameter on every parameter).
    assert "AmazonSSMManagedInstanceCore" not in json.dumps(synthesized.resources)


def test_the_instance_reads_its_boot_request_tag_through_imds(synthesized: Synthesized) -> None:
    """The boot report reads cvstack:boot-requested from IMDS (instance-metadata tags), which
    EC2 allows only when no tag key holds "/" or a space."""
    synthesized.template.has_resource_properties(
        "AWS::EC2::Instance", {"MetadataOptions": {"InstanceMetadataTags": "enabled"}}
    )
    (instance,) = of_type(synthesized, "AWS::EC2::Instance").values()
    keys = [tag["Key"] for tag in instance["Properties"].get("Tags", [])]
    keys += [LAST_START_TAG, BOOT_REQUESTED_TAG]
    assert not [key for key in keys if "/" in key or " " in key], keys


def test_imds_is_v2_only_with_two_hops_for_containers(synthesized: Synthesized) -> None:
    """A container on a Docker bridge network is one hop further than the host: with the
    default hop limit of 1 its IMDSv2 token answer is dropped and it gets no credentials."""
    synthesized.template.has_resource_properties(
        "AWS::EC2::Instance",
        {
            "MetadataOptions": {
                "HttpEndpoint": "enabled",
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": 2,
            }
        },
    )


def test_model_store_is_private_encrypted_versioned_logged(synthesized: Synthesized) -> None:
    template = synthesized.template
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": Match.object_like({}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "model-store/"}),
        },
    )
    for policy in of_type(synthesized, "AWS::S3::BucketPolicy").values():
        denies = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in denies
        )


def test_instance_reads_only_the_models_prefix_and_its_secret(synthesized: Synthesized) -> None:
    by_action = {a: s for s in statements(synthesized, "GpuRole") for a in actions(s)}
    assert set(by_action) == {
        "s3:GetObject",
        "s3:ListBucket",
        "secretsmanager:GetSecretValue",
        "cloudwatch:PutMetricData",
        "ssm:GetParameter",
        *SESSION_MANAGER,
    }
    assert by_action["s3:GetObject"]["Resource"]["Fn::Join"][1][1] == "/models/*"
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    secrets = sorted(r["Ref"] for r in by_action["secretsmanager:GetSecretValue"]["Resource"])
    assert len(secrets) == 2
    assert secrets[0].startswith("OriginSecret") and secrets[1].startswith("SessionSecret")
    assert by_action["cloudwatch:PutMetricData"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "cvstack"}
    }


def test_lambdas_may_start_and_stop_only_the_gpu_instance(synthesized: Synthesized) -> None:
    expected = {
        ("LifecycleStartServerRole", "ec2:StartInstances"),
        ("LifecycleStartServerRole", "ec2:CreateTags"),
        ("LifecycleIdleStopRole", "ec2:StopInstances"),
    }
    for role, action in expected:
        scoped = [s for s in statements(synthesized, role) if action in actions(s)]
        assert len(scoped) == 1
        arn = json.dumps(scoped[0]["Resource"])
        assert ':instance/"' in arn and '{"Ref": "GpuInstance' in arn
    assert not any(
        a.startswith(("ec2:Start", "ec2:Stop"))
        for s in statements(synthesized, "LifecycleStatusRole")
        for a in actions(s)
    )


def deploy_time_roles(synthesized: Synthesized) -> set[str]:
    """Roles of aws-cdk-lib's deploy-time Lambdas, whose grants it writes (checked below)."""
    return {
        name
        for name, role in of_type(synthesized, "AWS::IAM::Role").items()
        if name.startswith(("CustomCDKBucketDeployment", "AWS679f53fac002430cb0da5b7982bd2287"))
    }


def test_no_wildcard_resource_where_one_can_be_named(synthesized: Synthesized) -> None:
    cdk_roles = deploy_time_roles(synthesized)
    for policy in of_type(synthesized, "AWS::IAM::Policy").values():
        if {r["Ref"] for r in policy["Properties"]["Roles"]} <= cdk_roles:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert all("*" not in a.split(":")[1] for a in actions(statement)), statement
            if statement["Resource"] == "*" or "*" in statement["Resource"]:
                assert actions(statement) <= UNSCOPABLE_ACTIONS, statement


def test_page_deployment_writes_only_the_site_bucket(synthesized: Synthesized) -> None:
    """BucketDeployment's grants (aws-cdk-lib's wildcards) stay on CDK's asset bucket, the site
    bucket and CloudFront invalidations."""
    found = statements(synthesized, "CustomCDKBucketDeployment")
    assert len(found) == 3
    for statement in found:
        resources = json.dumps(statement["Resource"])
        if any(a.startswith("cloudfront:") for a in actions(statement)):
            assert actions(statement) == {
                "cloudfront:CreateInvalidation",
                "cloudfront:GetInvalidation",
            }
        elif "cdk-hnb659fds-assets" in resources:
            assert all(a.startswith(("s3:Get", "s3:List")) for a in actions(statement))
        else:
            assert "FrontDoorSiteBucket" in resources and "ModelStore" not in resources
    (lookup,) = [r for r in deploy_time_roles(synthesized) if r.startswith("AWS679")]
    assert [actions(s) for s in statements(synthesized, "FrontDoorVpcOriginsSecurityGroup")] == [
        {"ec2:DescribeSecurityGroups"}
    ]
    assert lookup in json.dumps(synthesized.resources)


def test_functions_and_schedule(synthesized: Synthesized) -> None:
    template = synthesized.template
    for folder in ("start_server", "status", "idle_stop"):
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": f"lambdas.{folder}.handler.handler",
                "Runtime": "python3.14",
                "LoggingConfig": Match.object_like({"LogFormat": "JSON"}),
            },
        )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.idle_stop.handler.handler",
            "Environment": {"Variables": Match.object_like({"IDLE_MINUTES": "15"})},
        },
    )
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(1 minute)", "State": "ENABLED"}
    )
    template.resource_count_is("AWS::IAM::ManagedPolicy", 0)


def test_start_server_asset_bundles_the_backend_token_module(synthesized: Synthesized) -> None:
    token_module = (REPO_ROOT / "backend" / "security" / "session_token.py").read_bytes()
    staged = list(synthesized.outdir.glob("asset.*/backend/security/session_token.py"))
    assert len(staged) == 1
    assert staged[0].read_bytes() == token_module
    asset = staged[0].parents[2]
    assert (asset / "lambdas" / "start_server" / "handler.py").is_file()
    assert not list(Path(asset).rglob("__pycache__"))


def test_api_has_key_usage_plan_cors_and_access_logs(
    synthesized: Synthesized, resynthesized: Synthesized
) -> None:
    template = synthesized.template
    # The stack's page calls the API on its own origin: no preflight without other origins.
    assert not [
        m
        for m in of_type(synthesized, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    ]
    for method in ("POST", "GET"):
        template.has_resource_properties(
            "AWS::ApiGateway::Method",
            {
                "HttpMethod": method,
                "ApiKeyRequired": True,
                "Integration": Match.object_like({"Type": "AWS_PROXY"}),
            },
        )
    resynthesized.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "OPTIONS",
            "Integration": Match.object_like(
                {
                    "IntegrationResponses": [
                        Match.object_like(
                            {
                                "ResponseParameters": Match.object_like(
                                    {
                                        "method.response.header.Access-Control-Allow-Origin": (
                                            "'https://new.example.org'"
                                        )
                                    }
                                )
                            }
                        )
                    ]
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 10, "BurstLimit": 20},
            "Quota": {"Limit": 50000, "Period": "DAY"},
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {"AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()})},
    )


def test_monitoring_alarms_page_the_topic(synthesized: Synthesized) -> None:
    alarms = of_type(synthesized, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 10
    for alarm in alarms.values():
        (action,) = alarm["Properties"]["AlarmActions"]
        assert action["Ref"].startswith("MonitoringAlarms")
    synthesized.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    synthesized.template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                }
            )
        },
    )
