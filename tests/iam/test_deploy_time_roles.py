"""aws-cdk-lib's deploy-time Lambdas under their template roles: the page deployment copies from
CDK's asset bucket into the site bucket and invalidates the distribution, the VPC-origins
lookup describes security groups, the site bucket's auto-delete holds no identity rights; none
of them reaches the model store, the secrets or the instance."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from tests.iam.conftest import DEFAULT_ACCOUNT_ID, REGION, Cloud
from tests.iam.helpers import assert_denied_but_admin_allowed
from tests.iam.template_iam import custom_resource_role, of_type

ASSETS_BUCKET = f"cdk-hnb659fds-assets-{DEFAULT_ACCOUNT_ID}-{REGION}"
DEPLOYMENT = "Custom::CDKBucketDeployment"
LOOKUP = "Custom::AWS"
AUTO_DELETE = "Custom::S3AutoDeleteObjects"


def role_session(cloud: Cloud, kind: str) -> boto3.Session:
    return cloud.role_session(custom_resource_role(cloud.resources, kind)[1])


def bucket(cloud: Cloud, prefix: str) -> str:
    (logical,) = [b for b in of_type(cloud.resources, "AWS::S3::Bucket") if b.startswith(prefix)]
    return cloud.resolver.ref(logical)


def secret(cloud: Cloud, prefix: str) -> str:
    (logical,) = [
        s for s in of_type(cloud.resources, "AWS::SecretsManager::Secret") if s.startswith(prefix)
    ]
    return cloud.resolver.ref(logical)


def distribution_id(cloud: Cloud) -> str:
    (logical,) = of_type(cloud.resources, "AWS::CloudFront::Distribution")
    return cloud.resolver.ref(logical)


def test_page_deployment_copies_the_page_and_invalidates(cloud: Cloud) -> None:
    admin_s3 = cloud.admin.client("s3")
    admin_s3.create_bucket(
        Bucket=ASSETS_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    admin_s3.put_object(Bucket=ASSETS_BUCKET, Key="page.zip", Body=b"zip")
    site = bucket(cloud, "FrontDoorSiteBucket")
    admin_s3.put_object(Bucket=site, Key="old.js", Body=b"old")
    session = role_session(cloud, DEPLOYMENT)
    s3 = session.client("s3")
    assert s3.get_object(Bucket=ASSETS_BUCKET, Key="page.zip")["Body"].read() == b"zip"
    s3.put_object(Bucket=site, Key="index.html", Body=b"<html>")
    s3.put_object(Bucket=site, Key="config.json", Body=b'{"startApiUrl": "/"}')
    s3.delete_object(Bucket=site, Key="old.js")  # prune
    listed = s3.list_objects_v2(Bucket=site)["Contents"]
    assert sorted(o["Key"] for o in listed) == ["config.json", "index.html"]
    session.client("cloudfront").create_invalidation(
        DistributionId=distribution_id(cloud),
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": "t"},
    )


DENIED: dict[str, tuple[str, Callable[[boto3.Session, Cloud], object]]] = {
    "page deployment cannot write the model store": (
        DEPLOYMENT,
        lambda s, c: s.client("s3").put_object(
            Bucket=bucket(c, "ModelStoreBucket"), Key="models/evil.onnx", Body=b"x"
        ),
    ),
    "page deployment cannot read the origin secret": (
        DEPLOYMENT,
        lambda s, c: s.client("secretsmanager").get_secret_value(
            SecretId=secret(c, "OriginSecret")
        ),
    ),
    "lookup cannot open the security group": (
        LOOKUP,
        lambda s, c: s.client("ec2").authorize_security_group_ingress(
            GroupId=c.admin.client("ec2").describe_security_groups()["SecurityGroups"][0][
                "GroupId"
            ],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 80,
                    "ToPort": 80,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
            ],
        ),
    ),
    "lookup cannot stop the instance": (
        LOOKUP,
        lambda s, c: s.client("ec2").stop_instances(InstanceIds=[c.instance_id]),
    ),
    "lookup cannot read the session secret": (
        LOOKUP,
        lambda s, c: s.client("secretsmanager").get_secret_value(
            SecretId=secret(c, "SessionSecret")
        ),
    ),
    # Its S3 rights come from the site bucket's policy (checked on the template in
    # tests/infra/test_front_door.py; moto evaluates identity policies only).
    "auto-delete cannot touch the model store": (
        AUTO_DELETE,
        lambda s, c: s.client("s3").delete_object(
            Bucket=bucket(c, "ModelStoreBucket"), Key="models/manifest.json"
        ),
    ),
    "auto-delete cannot read the origin secret": (
        AUTO_DELETE,
        lambda s, c: s.client("secretsmanager").get_secret_value(
            SecretId=secret(c, "OriginSecret")
        ),
    ),
}


def test_lookup_finds_security_groups_by_vpc_and_name(cloud: Cloud) -> None:
    ec2 = role_session(cloud, LOOKUP).client("ec2")
    found = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["CloudFront-VPCOrigins-Service-SG"]}]
    )
    assert found["SecurityGroups"] == []


@pytest.mark.parametrize("name", DENIED)
def test_deploy_time_roles_reach_nothing_else(shared_cloud: Cloud, name: str) -> None:
    kind, call = DENIED[name]
    assert_denied_but_admin_allowed(
        role_session(shared_cloud, kind), shared_cloud.admin, lambda s: call(s, shared_cloud)
    )
