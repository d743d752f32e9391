"""The synthesized stack's IAM roles, live in moto with IAM enforcement on.

One synthesis per session and mode (cdk.json's context, as tests/infra does). Per test: moto
in-process with stand-ins for the resources the policies name (the GPU instance, or in fleet
mode the Auto Scaling group and the demand table; buckets, secrets, SSM parameters, log
groups), every template role created in moto IAM with exactly its template
policies (intrinsics resolved to the stand-ins), and credentials from sts:AssumeRole, the way
Lambda and EC2 obtain them. Setup runs with enforcement off (moto cannot evaluate the
roles' service-principal trust policies); the test body runs with it on, with an admin IAM
user (Allow * on *) as the control that shows each denial is IAM's doing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import boto3
import botocore.loaders
import botocore.session
import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template
from moto import mock_aws
from moto.core.authorization import disable_iam_authentication, enable_iam_authentication
from moto.iam.aws_managed_policies import aws_managed_policies_data

from infra_cdk.app import build_app
from tests.iam import moto_fidelity
from tests.iam.template_iam import (
    Physical,
    Resolver,
    TemplateRole,
    UnresolvableError,
    instance_role,
    lambda_role,
    of_type,
    template_roles,
)

REGION: Final = "eu-west-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
MOTO_IMAGE = "ami-12c6146b"  # one of the images moto ships
AWS_MANAGED_POLICY = re.compile(r"^arn:aws:iam::aws:policy/(?:.*/)?([^/]+)$")
# The smallest distribution moto accepts: the page deployment's invalidations need one.
STAND_IN_DISTRIBUTION: Final[dict[str, Any]] = {
    "Comment": "cvstack stand-in",
    "Enabled": True,
    "Origins": {
        "Quantity": 1,
        "Items": [
            {
                "Id": "site",
                "DomainName": "site.s3.amazonaws.com",
                "S3OriginConfig": {"OriginAccessIdentity": ""},
            }
        ],
    },
    "DefaultCacheBehavior": {
        "TargetOriginId": "site",
        "ViewerProtocolPolicy": "redirect-to-https",
        "MinTTL": 0,
        "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
        "TrustedSigners": {"Enabled": False, "Quantity": 0},
    },
}
ENV_LINE = re.compile(r"^\s*(CVSTACK_[A-Z0-9_]+=\S*)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Synthesized:
    """The template's resources and the stack's name."""

    resources: Mapping[str, Any]
    stack_name: str


def synthesize(outdir: Path, **settings: Any) -> Synthesized:
    app, stack = build_app(outdir=str(outdir), nag=False, settings=settings)
    app.synth()
    return Synthesized(Template.from_stack(stack).to_json()["Resources"], stack.stack_name)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def fleet_synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The fleet variant (`make synth MODE=fleet`)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out-fleet"), mode="fleet")


# One loader for every session: botocore caches the service models it reads (~1 s for EC2's)
# per loader, and each test makes a session per role.
SHARED_LOADER = botocore.loaders.create_loader()


def session_of(credentials: Mapping[str, str]) -> boto3.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", SHARED_LOADER)
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials.get("SessionToken"),
        region_name=REGION,
        botocore_session=core,
    )


def setup_session() -> boto3.Session:
    """The fake environment credentials, for setup with enforcement off."""
    return session_of({"AccessKeyId": "testing", "SecretAccessKey": "testing"})


@dataclass
class Cloud:
    """The stack's stand-ins in moto and a session per template role (enforcement on)."""

    resources: Mapping[str, Any]
    resolver: Resolver
    admin: boto3.Session
    role_credentials: Mapping[str, Mapping[str, Any]]
    instance_id: str
    other_instance_id: str
    other_secret_arn: str
    other_parameter: str
    user_data: str
    # Fleet mode: the group (instance_id is empty) and someone else's group and table.
    group_name: str = ""
    other_group_name: str = ""
    other_table_name: str = ""
    _sessions: dict[str, boto3.Session] = field(default_factory=dict)

    def role_session(self, role: str) -> boto3.Session:
        """A session with the credentials sts:AssumeRole gave for the template role `role`."""
        if role not in self._sessions:
            self._sessions[role] = session_of(self.role_credentials[role])
        return self._sessions[role]

    def lambda_session(self, module: str) -> boto3.Session:
        return self.role_session(lambda_role(self.resources, module)[1])

    @property
    def instance_session(self) -> boto3.Session:
        return self.role_session(instance_role(self.resources)[1])

    def lambda_environment(self, module: str, **overrides: str) -> dict[str, str]:
        """The function's environment as deployed, with `overrides` for values (the Elastic
        IP) that have no stand-in."""
        function = lambda_role(self.resources, module)[0]
        variables = self.resources[function]["Properties"]["Environment"]["Variables"]
        return {
            name: overrides[name] if name in overrides else str(self.resolver.resolve(value))
            for name, value in variables.items()
        }

    def lambda_log_group(self, module: str) -> str:
        function = lambda_role(self.resources, module)[0]
        config = self.resources[function]["Properties"]["LoggingConfig"]
        return str(self.resolver.resolve(config["LogGroup"]))

    def instance_env_lines(self) -> list[str]:
        """The `CVSTACK_...=value` lines the user data writes to /etc/cvstack/instance.env."""
        return ENV_LINE.findall(self.user_data)

    def set_instance_state(self, state: str) -> None:
        ec2 = self.admin.client("ec2")
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[self.instance_id])
        else:
            ec2.start_instances(InstanceIds=[self.instance_id])

    def instance_state(self, instance_id: str | None = None) -> str:
        described = self.admin.client("ec2").describe_instances(
            InstanceIds=[instance_id or self.instance_id]
        )
        return str(described["Reservations"][0]["Instances"][0]["State"]["Name"])

    def instance_tags(self) -> dict[str, str]:
        described = self.admin.client("ec2").describe_instances(InstanceIds=[self.instance_id])
        tags = described["Reservations"][0]["Instances"][0].get("Tags", [])
        return {t["Key"]: t["Value"] for t in tags}


def _random_secret() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))


def _stand_ins(setup: boto3.Session, resolver: Resolver, resources: Mapping[str, Any]) -> str:
    """Create a moto stand-in for every resource a policy or setting can name; returns the
    instance's user data (resolved)."""
    ec2, s3, secretsmanager = (
        setup.client("ec2"),
        setup.client("s3"),
        setup.client("secretsmanager"),
    )
    logs, ssm = setup.client("logs"), setup.client("ssm")
    arn = f"arn:aws:{{}}:{REGION}:{DEFAULT_ACCOUNT_ID}:{{}}"
    (gpu, _) = instance_role(resources)
    if resources[gpu]["Type"] == "AWS::EC2::LaunchTemplate":
        user_data = _fleet_stand_ins(setup, resolver, resources, gpu)
    else:
        reservation = ec2.run_instances(
            ImageId=MOTO_IMAGE, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge"
        )
        resolver.physical[gpu] = Physical(reservation["Instances"][0]["InstanceId"])
        user_data = resources[gpu]["Properties"].get("UserData", "")
    for number, logical in enumerate(of_type(resources, "AWS::EC2::EIP"), start=10):
        address = f"203.0.113.{number}"  # TEST-NET-3: never routed
        resolver.physical[logical] = Physical(
            address, {"PublicIp": address, "AllocationId": f"eipalloc-{number:017x}"}
        )
    for logical in of_type(resources, "AWS::S3::Bucket"):
        name = resources[logical].get("Properties", {}).get("BucketName") or logical.lower()
        name = str(resolver.resolve(name))
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        resolver.physical[logical] = Physical(
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com",
            },
        )
    for logical in of_type(resources, "AWS::SecretsManager::Secret"):
        name = str(resolver.resolve(resources[logical]["Properties"].get("Name", logical)))
        created = secretsmanager.create_secret(Name=name, SecretString=_random_secret())
        resolver.physical[logical] = Physical(created["ARN"], {"Id": created["ARN"]})
    for logical in of_type(resources, "AWS::Logs::LogGroup"):
        properties = resources[logical].get("Properties", {})
        name = str(resolver.resolve(properties.get("LogGroupName", f"/aws/lambda/{logical}")))
        logs.create_log_group(logGroupName=name)
        resolver.physical[logical] = Physical(
            name, {"Arn": arn.format("logs", f"log-group:{name}:*")}
        )
    for logical in of_type(resources, "AWS::SSM::Parameter"):
        properties = resources[logical]["Properties"]
        name = str(resolver.resolve(properties.get("Name", f"/{logical}")))
        value = str(resolver.resolve(properties["Value"]))
        ssm.put_parameter(Name=name, Value=value, Type=properties["Type"])
        resolver.physical[logical] = Physical(name, {"Type": properties["Type"], "Value": value})
    for logical in of_type(resources, "AWS::CloudFront::Distribution"):
        created = setup.client("cloudfront").create_distribution(
            DistributionConfig=STAND_IN_DISTRIBUTION | {"CallerReference": logical}
        )["Distribution"]
        resolver.physical[logical] = Physical(
            created["Id"], {"DomainName": created["DomainName"], "Id": created["Id"]}
        )
    return str(resolver.resolve(user_data.get("Fn::Base64", user_data)))


def _fleet_stand_ins(
    setup: boto3.Session, resolver: Resolver, resources: Mapping[str, Any], template: str
) -> Any:
    """The launch template, the Auto Scaling group (at zero, with its warm pool) and the
    DynamoDB tables; returns the launch template's user data (unresolved)."""
    created = setup.client("ec2").create_launch_template(
        LaunchTemplateName=template,
        LaunchTemplateData={"ImageId": MOTO_IMAGE, "InstanceType": "g4dn.xlarge"},
    )["LaunchTemplate"]
    resolver.physical[template] = Physical(
        created["LaunchTemplateId"], {"LatestVersionNumber": "1"}
    )
    for logical in of_type(resources, "AWS::AutoScaling::AutoScalingGroup"):
        group = resources[logical]["Properties"]
        make_group(setup, group["AutoScalingGroupName"], created["LaunchTemplateId"])
        resolver.physical[logical] = Physical(group["AutoScalingGroupName"])
    dynamodb = setup.client("dynamodb")
    for logical in of_type(resources, "AWS::DynamoDB::Table"):
        table = resources[logical]["Properties"]
        name = logical.lower()
        description = dynamodb.create_table(
            TableName=name,
            KeySchema=table["KeySchema"],
            AttributeDefinitions=table["AttributeDefinitions"],
            BillingMode=table["BillingMode"],
        )["TableDescription"]
        resolver.physical[logical] = Physical(name, {"Arn": description["TableArn"]})
    return resources[template]["Properties"]["LaunchTemplateData"].get("UserData", "")


def make_group(setup: boto3.Session, name: str, launch_template_id: str) -> None:
    """An Auto Scaling group at zero (max 4) with a Stopped warm pool, as the stack makes it."""
    autoscaling = setup.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": launch_template_id, "Version": "1"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=0,
        AvailabilityZones=[f"{REGION}a"],
    )
    autoscaling.put_warm_pool(
        AutoScalingGroupName=name,
        PoolState="Stopped",
        InstanceReusePolicy={"ReuseOnScaleIn": True},
    )


def _create_role(iam: Any, resolver: Resolver, role: TemplateRole, managed: dict[str, str]) -> None:
    """The role in moto IAM with exactly its template policies (moto validates each);
    `managed` holds the copies of AWS managed policies made so far, by name."""
    name = resolver.ref(role.logical_id)
    for policy_name, document in role.inline.items():
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy_name[:128],
            PolicyDocument=json.dumps(resolver.resolve(document)),
        )
    for raw in role.managed_arns:
        managed_arn = str(resolver.resolve(raw))
        match = AWS_MANAGED_POLICY.match(managed_arn)
        if match is None:
            raise UnresolvableError(
                f"{role.logical_id}: managed policy {managed_arn} is not modelled"
            )
        if match.group(1) not in managed:
            # moto's copy of AWS's managed policy document (moto/iam/aws_managed_policies.py).
            document = json.loads(aws_managed_policies_data)[match.group(1)]["Document"]
            created = iam.create_policy(
                PolicyName=f"aws-managed-{match.group(1)}", PolicyDocument=json.dumps(document)
            )
            managed[match.group(1)] = created["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=name, PolicyArn=managed[match.group(1)])


def _admin_session(iam: Any) -> boto3.Session:
    iam.create_user(UserName="tests-iam-admin")
    iam.put_user_policy(
        UserName="tests-iam-admin",
        PolicyName="everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    return session_of(iam.create_access_key(UserName="tests-iam-admin")["AccessKey"])


def fake_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, so nothing can reach a real AWS account."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # ~0.3 s per EC2 backend
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_environment(monkeypatch)


def build_cloud(synthesized: Synthesized) -> Cloud:
    """Stand-ins, roles and sessions; call inside `mock_aws()` with enforcement off."""
    resources = synthesized.resources
    resolver = Resolver(resources, REGION, DEFAULT_ACCOUNT_ID, synthesized.stack_name)
    setup = setup_session()
    user_data = _stand_ins(setup, resolver, resources)
    iam = setup.client("iam")
    roles = template_roles(resources)
    for logical in roles:
        name = str(resolver.resolve(resources[logical]["Properties"].get("RoleName", logical)))[:64]
        created = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(resolver.resolve(roles[logical].trust_policy)),
        )
        resolver.physical[logical] = Physical(name, {"Arn": created["Role"]["Arn"]})
    managed: dict[str, str] = {}
    for role in roles.values():
        _create_role(iam, resolver, role, managed)
    sts = setup.client("sts")
    credentials = {
        logical: sts.assume_role(
            RoleArn=resolver.get_att(logical, "Arn"), RoleSessionName="tests-iam"
        )["Credentials"]
        for logical in roles
    }
    other = setup.client("ec2").run_instances(ImageId=MOTO_IMAGE, MinCount=1, MaxCount=1)
    other_secret = setup.client("secretsmanager").create_secret(
        Name="someone-else/secret", SecretString="not cvstack's"
    )
    setup.client("ssm").put_parameter(
        Name="/someone-else/settings", Value="not cvstack's", Type="String"
    )
    cloud = Cloud(
        resources=resources,
        resolver=resolver,
        admin=_admin_session(iam),
        role_credentials=credentials,
        instance_id="",
        other_instance_id=other["Instances"][0]["InstanceId"],
        other_secret_arn=other_secret["ARN"],
        other_parameter="/someone-else/settings",
        user_data=user_data,
    )
    (gpu, _) = instance_role(resources)
    if resources[gpu]["Type"] == "AWS::EC2::Instance":
        cloud.instance_id = resolver.ref(gpu)
        return cloud
    (group,) = of_type(resources, "AWS::AutoScaling::AutoScalingGroup")
    cloud.group_name = resolver.ref(group)
    cloud.other_group_name = "someone-else-fleet"
    make_group(setup, cloud.other_group_name, resolver.ref(gpu))
    cloud.other_table_name = "someone-else-demand"
    setup.client("dynamodb").create_table(
        TableName=cloud.other_table_name,
        KeySchema=[{"AttributeName": "minute", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "minute", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return cloud


@contextmanager
def live_cloud(synthesized: Synthesized) -> Iterator[Cloud]:
    """The stack's roles in moto, enforcement on, with `moto_fidelity`'s additions."""
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        fake_environment(patch)
        with disable_iam_authentication():
            built = build_cloud(synthesized)
        moto_fidelity.faithful_iam(patch)
        with enable_iam_authentication():
            yield built


@pytest.fixture
def cloud(synthesized: Synthesized) -> Iterator[Cloud]:
    """A fresh `live_cloud` for a test that changes what it finds."""
    with live_cloud(synthesized) as built:
        yield built


@pytest.fixture
def fleet_cloud(fleet_synthesized: Synthesized) -> Iterator[Cloud]:
    """The fleet template's roles live in moto, with its group at zero and its demand table."""
    with live_cloud(fleet_synthesized) as built:
        yield built


@pytest.fixture(scope="module")
def shared_cloud(synthesized: Synthesized) -> Iterator[Cloud]:
    """One `live_cloud` for a module of denial tests (each sets the instance state it needs)."""
    with live_cloud(synthesized) as built:
        yield built


def instance_env_file(cloud: Cloud, folder: Path) -> Path:
    """/etc/cvstack/instance.env as the user data writes it."""
    path = folder / "instance.env"
    path.write_text("".join(f"{line}\n" for line in cloud.instance_env_lines()))
    return path
