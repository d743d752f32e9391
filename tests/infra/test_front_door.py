"""The CloudFront front door (issue 12): behaviours, origin access, caching off where it must be,
the WebSocket handshake forwarded, the instance reachable only through it, the page deployed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from infra_cdk.front_door import (
    API_KEY_HEADER,
    API_PATHS,
    BROWSER_MODEL_PATH,
    INSTANCE_PATHS,
    ORIGIN_SECRET_HEADER,
    VPC_ORIGINS_SECURITY_GROUP,
    page_config,
)
from infra_cdk.prestart_cost import pre_start_cost
from tests.infra.conftest import CERTIFICATE_ARN, Synthesized

# AWS's managed policies (ids fixed by CloudFront).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
ALL_VIEWER = "216adef6-5c7f-47e4-b989-5492eafa07d3"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
API_KEY_VALUE = {
    "Fn::Join": [
        "",
        ["cvstack-", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}],
    ]
}
WORLD = ("0.0.0.0/0", "::/0")


def only(synthesized: Synthesized, kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, v) for k, v in synthesized.resources.items() if v["Type"] == kind]
    return found


def distribution(synthesized: Synthesized) -> dict[str, Any]:
    config: dict[str, Any] = only(synthesized, "AWS::CloudFront::Distribution")[1]["Properties"][
        "DistributionConfig"
    ]
    return config


def origins_by_id(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {o["Id"]: o for o in distribution(synthesized)["Origins"]}


def behaviors(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {b["PathPattern"]: b for b in distribution(synthesized)["CacheBehaviors"]}


def origin_of(synthesized: Synthesized, behavior: dict[str, Any]) -> dict[str, Any]:
    return origins_by_id(synthesized)[behavior["TargetOriginId"]]


def cloudfront_reads(distribution_id: str, bucket_id: str, objects: str) -> dict[str, Any]:
    """The bucket policy statement letting only this distribution read `objects` (a key pattern
    with its leading slash) of the bucket."""
    source = [
        "arn:",
        {"Ref": "AWS::Partition"},
        ":cloudfront::",
        {"Ref": "AWS::AccountId"},
        ":distribution/",
        {"Ref": distribution_id},
    ]
    return {
        "Action": "s3:GetObject",
        "Condition": {"StringEquals": {"AWS:SourceArn": {"Fn::Join": ["", source]}}},
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, objects]]},
    }


def test_behaviours_route_the_page_the_api_and_the_instance(synthesized: Synthesized) -> None:
    config = distribution(synthesized)
    assert set(behaviors(synthesized)) == {
        "/start", "/status", "/ws/*", "/ready", "/health", "/models/browser_detect.*"
    }  # fmt: skip
    assert config["DefaultRootObject"] == "index.html"
    default_origin = origin_of(synthesized, config["DefaultCacheBehavior"])
    assert "S3OriginConfig" in default_origin
    api = {json.dumps(origin_of(synthesized, behaviors(synthesized)[p])) for p in API_PATHS}
    instance = {
        json.dumps(origin_of(synthesized, behaviors(synthesized)[p])) for p in INSTANCE_PATHS
    }
    assert len(api) == len(instance) == 1
    assert "/metrics" not in json.dumps(config)
    for behavior in [config["DefaultCacheBehavior"], *behaviors(synthesized).values()]:
        assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert (config["HttpVersion"], config["PriceClass"], config["IPV6Enabled"]) == (
        "http2and3",
        "PriceClass_100",
        True,
    )


def test_api_and_instance_are_never_cached(synthesized: Synthesized) -> None:
    for path in (*API_PATHS, *INSTANCE_PATHS):
        assert behaviors(synthesized)[path]["CachePolicyId"] == CACHING_DISABLED, path
    for path in API_PATHS:
        behavior = behaviors(synthesized)[path]
        assert "POST" in behavior["AllowedMethods"]
        # API Gateway answers to its own Host name only.
        assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert distribution(synthesized)["DefaultCacheBehavior"]["CachePolicyId"] == (CACHING_OPTIMIZED)


def test_websocket_handshake_headers_and_token_reach_the_instance(
    synthesized: Synthesized,
) -> None:
    """ALL_VIEWER forwards every viewer header (Host, Origin, Upgrade, Sec-WebSocket-*) and
    every query string (?token=) to the origin."""
    for path in INSTANCE_PATHS:
        assert behaviors(synthesized)[path]["OriginRequestPolicyId"] == ALL_VIEWER, path
    assert behaviors(synthesized)["/ws/*"]["AllowedMethods"] == ["GET", "HEAD"]


def test_api_origin_is_the_prod_stage_with_the_key_added(synthesized: Synthesized) -> None:
    api = origin_of(synthesized, behaviors(synthesized)["/start"])
    rest_api, _ = only(synthesized, "AWS::ApiGateway::RestApi")
    assert api["DomainName"] == {
        "Fn::Join": [
            "",
            [
                {"Ref": rest_api},
                ".execute-api.",
                {"Ref": "AWS::Region"},
                ".",
                {"Ref": "AWS::URLSuffix"},
            ],
        ]
    }
    assert api["OriginPath"] == "/prod"
    assert api["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert api["OriginCustomHeaders"] == [
        {"HeaderName": API_KEY_HEADER, "HeaderValue": API_KEY_VALUE}
    ]
    _, key = only(synthesized, "AWS::ApiGateway::ApiKey")
    assert key["Properties"]["Value"] == API_KEY_VALUE


def test_instance_origin_is_a_vpc_origin_with_the_origin_secret(synthesized: Synthesized) -> None:
    instance_id, _ = only(synthesized, "AWS::EC2::Instance")
    vpc_origin_id, vpc_origin = only(synthesized, "AWS::CloudFront::VpcOrigin")
    endpoint = vpc_origin["Properties"]["VpcOriginEndpointConfig"]
    assert (endpoint["HTTPPort"], endpoint["OriginProtocolPolicy"]) == (80, "http-only")
    assert endpoint["Arn"]["Fn::Join"][1][-2:] == [":instance/", {"Ref": instance_id}]
    origin = origin_of(synthesized, behaviors(synthesized)["/ws/*"])
    assert origin["VpcOriginConfig"]["VpcOriginId"] == {"Fn::GetAtt": [vpc_origin_id, "Id"]}
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == ORIGIN_SECRET_HEADER
    secret_id = header["HeaderValue"]["Fn::Join"][1][1]["Ref"]
    assert secret_id.startswith("OriginSecret")
    assert header["HeaderValue"]["Fn::Join"][1][0] == "{{resolve:secretsmanager:"
    secret = synthesized.resources[secret_id]["Properties"]["GenerateSecretString"]
    assert (secret["PasswordLength"], secret["ExcludePunctuation"]) == (48, True)


def test_site_bucket_is_private_and_readable_only_by_this_distribution(
    synthesized: Synthesized,
) -> None:
    distribution_id, _ = only(synthesized, "AWS::CloudFront::Distribution")
    default_origin = origin_of(synthesized, distribution(synthesized)["DefaultCacheBehavior"])
    oac_id = default_origin["OriginAccessControlId"]["Fn::GetAtt"][0]
    oac = synthesized.resources[oac_id]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"]) == ("s3", "always")
    bucket_id = default_origin["DomainName"]["Fn::GetAtt"][0]
    bucket = synthesized.resources[bucket_id]
    assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "BucketEncryption" in bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Delete"
    (policy,) = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in synthesized.resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    services = [s for s in policy if "Service" in s.get("Principal", {})]
    assert services == [cloudfront_reads(distribution_id, bucket_id, "/*")]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy
    )
    # The only other principal: aws-cdk-lib's auto-delete Lambda, so `cdk destroy` works.
    others = [s["Principal"] for s in policy if s["Effect"] == "Allow" and s not in services]
    assert [json.dumps(p) for p in others] == [
        json.dumps({"AWS": {"Fn::GetAtt": [role, "Arn"]}})
        for role in synthesized.resources
        if role.startswith("CustomS3AutoDeleteObjectsCustomResourceProviderRole")
    ]


def test_the_pages_detector_comes_from_the_model_store_and_nothing_else_of_it(
    synthesized: Synthesized,
) -> None:
    """`/models/browser_detect.*` reaches the model store through origin access control; the
    store's policy lets this distribution read those objects only, and edge copies are
    revalidated on every request (a new `models prepare` shows at once)."""
    warnings = Annotations.from_stack(synthesized.stack).find_warning("*", Match.any_value())
    assert [w.entry.data for w in warnings] == []  # CDK's "imported bucket" one, acknowledged
    distribution_id, _ = only(synthesized, "AWS::CloudFront::Distribution")
    behavior = behaviors(synthesized)[BROWSER_MODEL_PATH]
    origin = origin_of(synthesized, behavior)
    (bucket_id,) = [
        k for k, v in synthesized.resources.items()
        if v["Type"] == "AWS::S3::Bucket" and k.startswith("ModelStoreBucket")
    ]  # fmt: skip
    assert origin["DomainName"] == {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]}
    oac = synthesized.resources[origin["OriginAccessControlId"]["Fn::GetAtt"][0]]
    assert oac["Properties"]["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    cache = synthesized.resources[behavior["CachePolicyId"]["Ref"]]["Properties"]
    assert cache["CachePolicyConfig"]["DefaultTTL"] == cache["CachePolicyConfig"]["MinTTL"] == 0
    (policy,) = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in synthesized.resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    allowed = [s for s in policy if s["Effect"] == "Allow"]
    assert allowed == [cloudfront_reads(distribution_id, bucket_id, "/models/browser_detect.*")]


def test_page_is_deployed_with_its_config_and_invalidated(synthesized: Synthesized) -> None:
    distribution_id, _ = only(synthesized, "AWS::CloudFront::Distribution")
    _, deployment = only(synthesized, "Custom::CDKBucketDeployment")
    properties = deployment["Properties"]
    assert properties["DistributionId"] == {"Ref": distribution_id}
    assert properties["DistributionPaths"] == ["/*"]
    assert properties["Prune"] is True
    staged = {
        path.parent.name: path
        for path in synthesized.outdir.glob("asset.*/config.json")
        if path.parent.name.removeprefix("asset.") + ".zip" in properties["SourceObjectKeys"]
    }
    (config_json,) = staged.values()
    assert json.loads(config_json.read_text()) == page_config()
    assert page_config() == {
        "startApiUrl": "/",
        "autoStart": False,
        "preStart": False,
        "preStartCost": pre_start_cost("g4dn.xlarge", 15, 5),
    }
    page = [
        p
        for p in synthesized.outdir.glob("asset.*/index.html")
        if p.parent.name.removeprefix("asset.") + ".zip" in properties["SourceObjectKeys"]
    ]
    assert len(page) == 1 and (page[0].parent / "js" / "config.js").is_file()
    runtime = page[0].parent / "vendor" / "onnxruntime-web"
    assert (runtime / "ort-wasm-simd-threaded.wasm").is_file(), "run `make vendor` before synth"
    assert not (runtime / ".vendor-stamp").exists()


def ingress_rules(synthesized: Synthesized) -> list[dict[str, Any]]:
    rules = [
        r["Properties"]
        for r in synthesized.resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
    ]
    for group in synthesized.resources.values():
        if group["Type"] == "AWS::EC2::SecurityGroup":
            rules += group["Properties"].get("SecurityGroupIngress", [])
    return rules


@pytest.mark.parametrize("fixture", ["synthesized", "resynthesized"])
def test_nothing_is_open_to_the_internet(request: pytest.FixtureRequest, fixture: str) -> None:
    synthesized: Synthesized = request.getfixturevalue(fixture)
    for rule in ingress_rules(synthesized):
        assert rule.get("CidrIp") not in WORLD and rule.get("CidrIpv6") not in WORLD, rule
    assert not [r for r in synthesized.resources.values() if r["Type"].startswith("AWS::EC2::EIP")]


def test_instance_takes_port_80_only_from_cloudfront_vpc_origins(synthesized: Synthesized) -> None:
    (rule,) = ingress_rules(synthesized)
    group_id, _ = only(synthesized, "AWS::EC2::SecurityGroup")
    lookup_id, lookup = only(synthesized, "Custom::AWS")
    assert rule["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 80, 80)
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [lookup_id, "SecurityGroups.0.GroupId"]}
    distribution_id, _ = only(synthesized, "AWS::CloudFront::Distribution")
    assert distribution_id in lookup["DependsOn"]
    parts = lookup["Properties"]["Create"]["Fn::Join"][1]
    call = json.loads("".join(p if isinstance(p, str) else "VPC" for p in parts))
    assert (call["service"], call["action"]) == ("EC2", "describeSecurityGroups")
    assert call["parameters"]["Filters"] == [
        {"Name": "vpc-id", "Values": ["VPC"]},
        {"Name": "group-name", "Values": [VPC_ORIGINS_SECURITY_GROUP]},
    ]


def test_operator_cidrs_open_only_https(resynthesized: Synthesized) -> None:
    rules = ingress_rules(resynthesized)
    cidr_rules = sorted(
        (r["FromPort"], r.get("CidrIp") or r.get("CidrIpv6"))
        for r in rules
        if "SourceSecurityGroupId" not in r
    )
    assert cidr_rules == [(443, "198.51.100.7/32"), (443, "2001:db8::/64")]


def test_instance_keeps_an_auto_assigned_public_ipv4_for_egress(synthesized: Synthesized) -> None:
    _, instance = only(synthesized, "AWS::EC2::Instance")
    subnet = synthesized.resources[instance["Properties"]["SubnetId"]["Ref"]]
    assert subnet["Properties"]["MapPublicIpOnLaunch"] is True
    synthesized.template.resource_count_is("AWS::EC2::NatGateway", 0)


def test_custom_domain_uses_its_certificate_tls12_and_alias_records(
    resynthesized: Synthesized,
) -> None:
    config = distribution(resynthesized)
    assert config["Aliases"] == ["gpu.example.org"]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE_ARN,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    records = [
        r["Properties"]
        for r in resynthesized.resources.values()
        if r["Type"] == "AWS::Route53::RecordSet"
    ]
    assert sorted(r["Type"] for r in records) == ["A", "AAAA"]
    distribution_id, _ = only(resynthesized, "AWS::CloudFront::Distribution")
    for record in records:
        assert record["Name"] == "gpu.example.org."
        assert record["AliasTarget"]["DNSName"] == {"Fn::GetAtt": [distribution_id, "DomainName"]}
    assert "ResourceRecords" not in json.dumps(records)


def test_outputs_give_the_one_url(synthesized: Synthesized, resynthesized: Synthesized) -> None:
    outputs = synthesized.template.to_json()["Outputs"]
    distribution_id, _ = only(synthesized, "AWS::CloudFront::Distribution")
    assert outputs["Url"]["Value"] == {
        "Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]
    }
    assert outputs["DistributionId"]["Value"] == {"Ref": distribution_id}
    assert outputs["SiteBucket"]["Value"]["Ref"].startswith("FrontDoorSiteBucket")
    assert "Endpoint" not in outputs
    assert resynthesized.template.to_json()["Outputs"]["Url"]["Value"] == "https://gpu.example.org"


def test_lambdas_check_readiness_through_the_front_door(
    synthesized: Synthesized, resynthesized: Synthesized
) -> None:
    distribution_id, _ = only(synthesized, "AWS::CloudFront::Distribution")
    for function in synthesized.resources.values():
        handler = function.get("Properties", {}).get("Handler", "")
        if function["Type"] != "AWS::Lambda::Function" or not handler.startswith(
            ("lambdas.start_server", "lambdas.status")
        ):
            continue
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["ENDPOINT_HOST"] == {"Fn::GetAtt": [distribution_id, "DomainName"]}
        assert variables["ALLOWED_ORIGINS"] == ""
        if handler.startswith("lambdas.status"):
            assert variables["READY_SCHEME"] == "https"
    hosts = {
        json.dumps(f["Properties"]["Environment"]["Variables"].get("ENDPOINT_HOST"))
        for f in resynthesized.resources.values()
        if f["Type"] == "AWS::Lambda::Function"
        and f["Properties"].get("Handler", "").startswith("lambdas.status")
    }
    assert hosts == {'"gpu.example.org"'}
