"""Fleet mode's template (`make synth MODE=fleet`): the group, its warm pool, hook and scaling
policy, the internal load balancer behind the front door, the security group chain, the
Lambdas' environment and least privilege, the demand table and the fleet's monitoring; and
single mode has none of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from backend.instance.nginx_config import FRONT_DOOR_KEEPALIVE_S, HEALTH_PORT
from backend.instance.settings import FleetSettings, fleet_settings, parse_settings
from infra_cdk.fleet_load_balancer import IDLE_TIMEOUT
from lambdas.idle_stop.settings import IdleStopSettings
from lambdas.start_server.settings import StartServerSettings
from lambdas.status.settings import StatusSettings
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.test_template import UNSCOPABLE_ACTIONS, actions, of_type, statements

GROUP = "Cvstack-gpu-fleet"
GROUP_ARN_SUFFIX = f":autoScalingGroup:*:autoScalingGroupName/{GROUP}"
FLEET_UNSCOPABLE = UNSCOPABLE_ACTIONS | {
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeWarmPool",
    "cloudwatch:GetMetricData",
}
FLEET_ONLY = (
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::AutoScaling::WarmPool",
    "AWS::AutoScaling::LifecycleHook",
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::EC2::LaunchTemplate",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::DynamoDB::Table",
)


def one(synthesized: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    """(logical id, properties) of the one resource of `kind`."""
    ((logical, resource),) = of_type(synthesized, kind).items()
    return logical, resource.get("Properties", {})


def group_arn(value: Any) -> bool:
    """Whether `value` is the fleet group's ARN by name (the only place it may be named)."""
    return json.dumps(value).endswith(f'{GROUP_ARN_SUFFIX}"]]}}')


def variables(synthesized: Synthesized, module: str) -> dict[str, Any]:
    (function,) = [
        f["Properties"]
        for f in of_type(synthesized, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == f"lambdas.{module}.handler.handler"
    ]
    return dict(function["Environment"]["Variables"])


@pytest.fixture(scope="module")
def tuned_fleet(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """A fleet with every fleet key changed: the values reach the template."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out-fleet-tuned"),
        mode="fleet",
        availabilityZones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        fleetMaxSize=6,
        fleetWarmPoolSize=2,
        fleetDrainMinutes=45,
        fleetTargetSessions=2.5,
        sessionsPerInstance=3,
        fleetDemandWindowMinutes=5,
    )


def test_the_group_goes_from_zero_to_max_and_never_has_its_desired_capacity_reset(
    fleet_synthesized: Synthesized,
) -> None:
    _, group = one(fleet_synthesized, "AWS::AutoScaling::AutoScalingGroup")
    assert (group["AutoScalingGroupName"], group["MinSize"], group["MaxSize"]) == (GROUP, "0", "4")
    assert "DesiredCapacity" not in group
    assert len(group["VPCZoneIdentifier"]) == 2
    assert all(s["Ref"].startswith("NetworkVpcpublicSubnet") for s in group["VPCZoneIdentifier"])
    assert group["MetricsCollection"] == [{"Granularity": "1Minute"}]
    assert (group["HealthCheckType"], group["HealthCheckGracePeriod"]) == ("ELB", 900)
    assert group["DefaultInstanceWarmup"] == 300
    (target_group,) = group["TargetGroupARNs"]
    assert target_group["Ref"].startswith("FleetLoadBalancerTargets")


def test_the_launch_template_is_the_single_instance_hardened_the_same_way(
    fleet_synthesized: Synthesized, synthesized: Synthesized
) -> None:
    _, template = one(fleet_synthesized, "AWS::EC2::LaunchTemplate")
    data = template["LaunchTemplateData"]
    _, instance = one(synthesized, "AWS::EC2::Instance")
    assert data["ImageId"] == instance["ImageId"]
    assert data["InstanceType"] == "g4dn.xlarge"
    assert data["UserData"] == instance["UserData"]  # the same #cloud-config
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpPutResponseHopLimit": 2,
        "HttpTokens": "required",
    }
    assert data["BlockDeviceMappings"] == instance["BlockDeviceMappings"]
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert data["Monitoring"] == {"Enabled": True}
    assert "DisableApiTermination" not in data  # Auto Scaling must be able to terminate
    assert "KeyName" not in data
    profile = data["IamInstanceProfile"]["Arn"]["Fn::GetAtt"][0]
    (role,) = fleet_synthesized.resources[profile]["Properties"]["Roles"]
    assert role["Ref"].startswith("GpuRole")


def test_the_warm_pool_keeps_stopped_instances_and_takes_them_back_on_scale_in(
    fleet_synthesized: Synthesized, tuned_fleet: Synthesized
) -> None:
    _, pool = one(fleet_synthesized, "AWS::AutoScaling::WarmPool")
    assert pool["PoolState"] == "Stopped"  # g4dn cannot hibernate
    assert pool["InstanceReusePolicy"] == {"ReuseOnScaleIn": True}
    # -1: AWS's default, maxSize - desired.
    assert "MaxGroupPreparedCapacity" not in pool and "MinSize" not in pool
    # N: N stopped whatever the desired capacity (max(N - desired, MinSize N)).
    tuned = one(tuned_fleet, "AWS::AutoScaling::WarmPool")[1]
    assert (tuned["MinSize"], tuned["MaxGroupPreparedCapacity"]) == (2, 2)


def test_no_warm_pool_when_its_size_is_zero(tmp_path_factory: pytest.TempPathFactory) -> None:
    cold = synthesize(tmp_path_factory.mktemp("cdk.out-cold"), mode="fleet", fleetWarmPoolSize=0)
    cold.template.resource_count_is("AWS::AutoScaling::WarmPool", 0)
    cold.template.resource_count_is("AWS::AutoScaling::AutoScalingGroup", 1)


def lifecycle_hooks(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """The group's lifecycle hooks by name."""
    hooks = synthesized.template.find_resources("AWS::AutoScaling::LifecycleHook")
    return {h["Properties"]["LifecycleHookName"]: h["Properties"] for h in hooks.values()}


def test_a_leaving_instance_is_held_by_the_drain_hook(fleet_synthesized: Synthesized) -> None:
    hook = lifecycle_hooks(fleet_synthesized)["cvstack-drain"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert (hook["DefaultResult"], hook["HeartbeatTimeout"]) == ("CONTINUE", 300)
    assert "NotificationTargetARN" not in hook  # the instance reads its state from IMDS


def test_a_launch_waits_for_the_ready_backend_and_a_boot_that_never_gets_there_is_replaced(
    fleet_synthesized: Synthesized,
) -> None:
    hooks = lifecycle_hooks(fleet_synthesized)
    assert sorted(hooks) == ["cvstack-drain", "cvstack-ready"]
    hook = hooks["cvstack-ready"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert (hook["DefaultResult"], hook["HeartbeatTimeout"]) == ("ABANDON", 1800)
    assert "NotificationTargetARN" not in hook


def test_target_tracking_holds_sessions_per_instance_below_the_slots(
    fleet_synthesized: Synthesized, tuned_fleet: Synthesized
) -> None:
    _, policy = one(fleet_synthesized, "AWS::AutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    tracking = policy["TargetTrackingConfiguration"]
    assert tracking["CustomizedMetricSpecification"] == {
        "Namespace": "cvstack",
        "MetricName": "SessionLoad",
        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": GROUP}],
        "Statistic": "Average",
    }
    assert tracking["TargetValue"] == 3
    assert not tracking.get("DisableScaleIn", False)
    tuned = one(tuned_fleet, "AWS::AutoScaling::ScalingPolicy")[1]
    assert tuned["TargetTrackingConfiguration"]["TargetValue"] == 2.5


def test_the_internal_load_balancer_checks_ready_and_drains_as_long_as_a_session_may_last(
    fleet_synthesized: Synthesized, tuned_fleet: Synthesized
) -> None:
    _, balancer = one(fleet_synthesized, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert (balancer["Scheme"], balancer["Type"]) == ("internal", "application")
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    assert attributes["routing.http.xff_header_processing.mode"] == "preserve"
    assert attributes["routing.http.preserve_host_header.enabled"] == "true"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    # WebSockets outlive the backend's 15 s pings; nginx outlives the idle connections.
    idle = int(attributes["idle_timeout.timeout_seconds"])
    assert idle == IDLE_TIMEOUT.to_seconds()
    assert 60 <= idle < FRONT_DOOR_KEEPALIVE_S
    _, targets = one(fleet_synthesized, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (targets["Port"], targets["Protocol"], targets["TargetType"]) == (80, "HTTP", "instance")
    assert (targets["HealthCheckPath"], targets["HealthCheckPort"]) == ("/ready", str(HEALTH_PORT))
    assert targets["Matcher"] == {"HttpCode": "200"}
    # ALB's fastest checks: in rotation 10 s after the backend is ready (docs/fleet.md).
    assert (targets["HealthCheckIntervalSeconds"], targets["HealthyThresholdCount"]) == (5, 2)
    assert targets["HealthCheckTimeoutSeconds"] < targets["HealthCheckIntervalSeconds"]
    target_attributes = {a["Key"]: a["Value"] for a in targets["TargetGroupAttributes"]}
    assert target_attributes["deregistration_delay.timeout_seconds"] == "1800"
    assert target_attributes["load_balancing.algorithm.type"] == "least_outstanding_requests"
    tuned = one(tuned_fleet, "AWS::ElasticLoadBalancingV2::TargetGroup")[1]
    assert {"Key": "deregistration_delay.timeout_seconds", "Value": "2700"} in tuned[
        "TargetGroupAttributes"
    ]
    _, listener = one(fleet_synthesized, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    assert listener["DefaultActions"] == [
        {
            "Type": "forward",
            "TargetGroupArn": {
                "Ref": one(fleet_synthesized, "AWS::ElasticLoadBalancingV2::TargetGroup")[0]
            },
        }
    ]
    assert len(one(tuned_fleet, "AWS::AutoScaling::AutoScalingGroup")[1]["VPCZoneIdentifier"]) == 3


def test_the_front_door_sends_the_instance_paths_to_the_load_balancer_with_the_secret(
    fleet_synthesized: Synthesized,
) -> None:
    balancer, _ = one(fleet_synthesized, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    vpc_origin, properties = one(fleet_synthesized, "AWS::CloudFront::VpcOrigin")
    endpoint = properties["VpcOriginEndpointConfig"]
    assert endpoint["Arn"] == {"Ref": balancer}
    assert (endpoint["HTTPPort"], endpoint["OriginProtocolPolicy"]) == (80, "http-only")
    _, distribution = one(fleet_synthesized, "AWS::CloudFront::Distribution")
    config = distribution["DistributionConfig"]
    (origin,) = [o for o in config["Origins"] if "VpcOriginConfig" in o]
    assert origin["VpcOriginConfig"]["VpcOriginId"] == {"Fn::GetAtt": [vpc_origin, "Id"]}
    assert origin["DomainName"] == {"Fn::GetAtt": [balancer, "DNSName"]}
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == "X-Cvstack-Origin-Secret"
    assert "{{resolve:secretsmanager:" in json.dumps(header["HeaderValue"])
    to_balancer = {
        b["PathPattern"] for b in config["CacheBehaviors"] if b["TargetOriginId"] == origin["Id"]
    }
    assert to_balancer == {"/ws/*", "/ready", "/health"}
    fleet_synthesized.template.resource_count_is("AWS::EC2::Instance", 0)


def test_security_groups_chain_cloudfront_to_the_load_balancer_to_nginx(
    fleet_synthesized: Synthesized,
) -> None:
    groups = of_type(fleet_synthesized, "AWS::EC2::SecurityGroup")
    (balancer_group,) = [g for g in groups if g.startswith("FleetLoadBalancerSecurityGroup")]
    (instance_group,) = [g for g in groups if g.startswith("NetworkInstanceSecurityGroup")]
    ingress = [
        r["Properties"]
        for r in of_type(fleet_synthesized, "AWS::EC2::SecurityGroupIngress").values()
    ]
    into = {
        group: sorted(
            (rule["FromPort"], json.dumps(rule["SourceSecurityGroupId"]))
            for rule in ingress
            if rule["GroupId"] == {"Fn::GetAtt": [group, "GroupId"]}
        )
        for group in (balancer_group, instance_group)
    }
    lookup = json.dumps(
        {"Fn::GetAtt": ["FrontDoorVpcOriginsSecurityGroupFE1E6581", "SecurityGroups.0.GroupId"]}
    )
    from_balancer = json.dumps({"Fn::GetAtt": [balancer_group, "GroupId"]})
    # The load balancer: port 80 from CloudFront's VPC origins only.
    assert into[balancer_group] == [(80, lookup)]
    # The instances: nginx's origin and health ports from the load balancer only.
    assert into[instance_group] == sorted([(80, from_balancer), (HEALTH_PORT, from_balancer)])
    for group in groups.values():
        assert "SecurityGroupIngress" not in group["Properties"]
    # The load balancer's egress: nginx's two ports inside the VPC, inline (no default rule).
    egress = groups[balancer_group]["Properties"]["SecurityGroupEgress"]
    assert sorted(rule["FromPort"] for rule in egress) == [80, HEALTH_PORT]
    assert all(
        rule["CidrIp"] == {"Fn::GetAtt": ["NetworkVpc7FB7348F", "CidrBlock"]} for rule in egress
    )


def test_instances_manage_only_their_own_group(fleet_synthesized: Synthesized) -> None:
    """The fleet agent's calls (contract 4), on the group's ARN by name."""
    fleet_calls = [
        s
        for s in statements(fleet_synthesized, "GpuRole")
        if any(a.startswith("autoscaling:") for a in actions(s))
    ]
    assert len(fleet_calls) == 1
    assert actions(fleet_calls[0]) == {
        "autoscaling:SetInstanceProtection",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:CompleteLifecycleAction",
    }
    assert group_arn(fleet_calls[0]["Resource"])


def test_lambdas_change_only_the_fleets_group_and_count_only_in_the_demand_table(
    fleet_synthesized: Synthesized,
) -> None:
    table, _ = one(fleet_synthesized, "AWS::DynamoDB::Table")
    writes = {
        "LifecycleStartServerRole": {
            "autoscaling:SetDesiredCapacity",
            "autoscaling:CreateOrUpdateTags",
            "dynamodb:UpdateItem",
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
        },
        "LifecycleIdleStopRole": {"autoscaling:SetDesiredCapacity"},
        "LifecycleStatusRole": set(),
    }
    for role, expected in writes.items():
        scoped = [
            s
            for s in statements(fleet_synthesized, role)
            if s["Resource"] != "*"
            and not any(a.startswith(("logs:", "secretsmanager:")) for a in actions(s))
        ]
        assert set().union(*(actions(s) for s in scoped)) == expected, role
        for statement in scoped:
            if any(a.startswith("dynamodb:") for a in actions(statement)):
                assert statement["Resource"] == {"Fn::GetAtt": [table, "Arn"]}
            else:
                assert group_arn(statement["Resource"]), statement
            if "autoscaling:CreateOrUpdateTags" in actions(statement):
                assert statement["Condition"] == {
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["cvstack:last-start"]}
                }
    everything = [
        s
        for p in of_type(fleet_synthesized, "AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert not any(
        a.startswith(("ec2:Start", "ec2:Stop", "ec2:CreateTags"))
        for s in everything
        for a in actions(s)
    )


def test_wildcards_only_where_aws_offers_no_resource(fleet_synthesized: Synthesized) -> None:
    for role in (
        "GpuRole",
        "LifecycleStartServerRole",
        "LifecycleStatusRole",
        "LifecycleIdleStopRole",
    ):
        for statement in statements(fleet_synthesized, role):
            if statement["Resource"] == "*":
                assert actions(statement) <= FLEET_UNSCOPABLE, statement


def test_lambdas_get_the_fleet_through_their_settings_classes(
    fleet_synthesized: Synthesized, tuned_fleet: Synthesized
) -> None:
    table, _ = one(fleet_synthesized, "AWS::DynamoDB::Table")
    start = variables(fleet_synthesized, "start_server")
    assert {k: start[k] for k in ("MODE", "FLEET_GROUP_NAME", "INSTANCE_ID")} == {
        "MODE": "fleet",
        "FLEET_GROUP_NAME": GROUP,
        "INSTANCE_ID": "",
    }
    assert start["DEMAND_TABLE_NAME"] == {"Ref": table}
    assert (start["SESSIONS_PER_INSTANCE"], start["DEMAND_WINDOW_S"]) == ("4", "600")
    status = variables(fleet_synthesized, "status")
    assert (status["MODE"], status["FLEET_GROUP_NAME"], status["SESSIONS_PER_INSTANCE"]) == (
        "fleet",
        GROUP,
        "4",
    )
    idle = variables(fleet_synthesized, "idle_stop")
    assert (idle["MODE"], idle["FLEET_GROUP_NAME"], idle["INSTANCE_ID"]) == ("fleet", GROUP, "")
    # Each function would start with what it is given (the table's name stands in for its Ref).
    for module, settings in (
        ("start_server", StartServerSettings),
        ("status", StatusSettings),
        ("idle_stop", IdleStopSettings),
    ):
        given = {
            k: v if isinstance(v, str) else "resolved-at-deploy"
            for k, v in variables(fleet_synthesized, module).items()
        }
        assert settings.model_validate(given).mode == "fleet"
    tuned_start = variables(tuned_fleet, "start_server")
    assert (tuned_start["SESSIONS_PER_INSTANCE"], tuned_start["DEMAND_WINDOW_S"]) == ("3", "300")
    assert variables(tuned_fleet, "status")["SESSIONS_PER_INSTANCE"] == "3"


def instance_settings(synthesized: Synthesized) -> dict[str, str]:
    """The settings parameter as the instance reads it at boot (backend/instance/settings.py),
    with stand-ins for the bucket's and the secrets' deploy-time names."""
    _, parameter = one(synthesized, "AWS::SSM::Parameter")
    stand_ins = {"ModelStoreBucket": "cvstack-models-1a2b", "Secret": "arn:aws:secretsmanager:x"}
    text = "".join(
        part if isinstance(part, str) else next(v for k, v in stand_ins.items() if k in part["Ref"])
        for part in parameter["Value"]["Fn::Join"][1]
    )
    return parse_settings(text, "/cvstack/Cvstack/instance-settings")


def test_the_instances_read_the_group_the_hook_and_the_drain_limit_from_their_settings(
    fleet_synthesized: Synthesized, tuned_fleet: Synthesized, synthesized: Synthesized
) -> None:
    values = instance_settings(fleet_synthesized)
    assert fleet_settings(values) == FleetSettings(GROUP, "cvstack-drain", 1800, "cvstack-ready")
    assert values["CVSTACK_MAX_WAIT_S"] == "5"
    assert fleet_settings(instance_settings(tuned_fleet)) == FleetSettings(
        GROUP, "cvstack-drain", 2700, "cvstack-ready"
    )
    assert fleet_settings(instance_settings(synthesized)) is None  # single mode


def test_the_demand_table_counts_per_minute_and_forgets(fleet_synthesized: Synthesized) -> None:
    fleet_synthesized.template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Delete",
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "minute", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "minute", "AttributeType": "S"}],
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                }
            ),
        },
    )


def test_the_fleet_is_monitored_and_its_failures_page_the_topic(
    fleet_synthesized: Synthesized,
) -> None:
    alarms = {
        name: alarm["Properties"]
        for name, alarm in of_type(fleet_synthesized, "AWS::CloudWatch::Alarm").items()
    }
    fleet_alarms = {
        name.split("Monitoring")[1][:-8] for name in alarms if name.startswith("MonitoringFleet")
    }
    assert fleet_alarms == {
        "FleetGpuBudgetReached",
        "FleetFullSessionsWaiting",
        "FleetUnhealthyHosts",
        "FleetIdleNotStopped",
    }
    # The single instance's alarms are gone; the Lambdas' and the API's stay.
    assert not [n for n in alarms if "Instance" in n or "BackendNotReady" in n or "Latency" in n]
    assert len(alarms) == 4 + 5
    for alarm in alarms.values():
        (action,) = alarm["AlarmActions"]
        assert action["Ref"].startswith("MonitoringAlarms")
    budget = next(a for n, a in alarms.items() if "FleetGpuBudget" in n)
    assert (budget["MetricName"], budget["Statistic"], budget["Period"]) == (
        "InstancesRunning",
        "Sum",
        86400,
    )
    assert budget["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": GROUP}]
    assert budget["Threshold"] == 4 * 60
    full = json.dumps(next(a for n, a in alarms.items() if "FleetFullSessions" in n)["Metrics"])
    assert "GroupInServiceInstances" in full and "SessionLoad" in full and ">= 4" in full
    unhealthy = next(a for n, a in alarms.items() if "FleetUnhealthyHosts" in n)
    assert unhealthy["MetricName"] == "UnHealthyHostCount"
    _, group = one(fleet_synthesized, "AWS::AutoScaling::AutoScalingGroup")
    (notification,) = group["NotificationConfigurations"]
    assert notification["TopicARN"]["Ref"].startswith("MonitoringAlarms")
    assert set(notification["NotificationTypes"]) == {
        "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
        "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
    }
    _, dashboard = one(fleet_synthesized, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    for metric in (
        "GroupDesiredCapacity",
        "GroupInServiceInstances",
        "WarmPoolWarmedCapacity",
        "SessionLoad",
        "InstancesRunning",
        "HealthyHostCount",
        "UnHealthyHostCount",
        "ActiveConnectionCount",
    ):
        assert metric in body, metric
    assert "FleetGroupName" in fleet_synthesized.template.to_json()["Outputs"]


def test_single_mode_has_none_of_the_fleet(synthesized: Synthesized) -> None:
    for kind in FLEET_ONLY:
        synthesized.template.resource_count_is(kind, 0)
    synthesized.template.resource_count_is("AWS::EC2::Instance", 1)
    for module in ("start_server", "status", "idle_stop"):
        given = variables(synthesized, module)
        assert (given["MODE"], given.get("FLEET_GROUP_NAME")) == ("single", "")
    assert variables(synthesized, "start_server")["DEMAND_TABLE_NAME"] == ""
    policies = json.dumps(of_type(synthesized, "AWS::IAM::Policy"))
    assert "autoscaling:" not in policies and "dynamodb:" not in policies
    _, parameter = one(synthesized, "AWS::SSM::Parameter")
    assert "CVSTACK_FLEET" not in json.dumps(parameter["Value"])
    assert "FleetGroupName" not in synthesized.template.to_json()["Outputs"]
