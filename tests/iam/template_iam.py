"""Read the synthesized template's IAM roles and resolve its intrinsics to concrete values.

`Resolver` turns `Ref`, `Fn::GetAtt`, `Fn::Join`, `Fn::Sub`, `Fn::Select`, `Fn::Split` and the
pseudo parameters into the names and ARNs of the moto resources standing in for the stack's.
It is strict: a reference to a resource the tests did not create raises, so a new statement on
a new resource cannot slip through as an unresolved (and never matching) string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PARTITION = "aws"
SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass(frozen=True)
class Physical:
    """A created resource: what `Ref` returns and its `Fn::GetAtt` attributes."""

    ref: str
    attributes: Mapping[str, str] = field(default_factory=dict)


class UnresolvableError(KeyError):
    """The template refers to something the tests did not create."""


@dataclass
class Resolver:
    """Concrete values for the template's intrinsics, in one region and account."""

    resources: Mapping[str, Any]
    region: str
    account: str
    stack_name: str
    physical: dict[str, Physical] = field(default_factory=dict)

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
        }.get(name)

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic replaced, recursively."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                logical, attribute = (
                    argument.split(".", 1) if isinstance(argument, str) else argument
                )
                return self.get_att(logical, attribute)
            if key == "Fn::Join":
                separator, items = argument
                return separator.join(str(item) for item in self.resolve(items))
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key.startswith("Fn::"):
                raise UnresolvableError(f"intrinsic {key} is not modelled by tests/iam")
        return {key: self.resolve(item) for key, item in value.items()}

    def ref(self, name: str) -> str:
        pseudo = self.pseudo(name)
        if pseudo is not None:
            return pseudo
        return self._physical(name).ref

    def get_att(self, logical: str, attribute: str) -> str:
        physical = self._physical(logical)
        if attribute not in physical.attributes:
            raise UnresolvableError(f"{logical}.{attribute} is not modelled by tests/iam")
        return physical.attributes[attribute]

    def sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(value) for name, value in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name and self.pseudo(name) is None:
                logical, attribute = name.split(".", 1)
                return self.get_att(logical, attribute)
            return self.ref(name)

        return SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _physical(self, logical: str) -> Physical:
        if logical not in self.physical:
            kind = self.resources.get(logical, {}).get("Type", "not in the template")
            raise UnresolvableError(
                f"{logical} ({kind}) has no stand-in in moto: create one in tests/iam/conftest.py"
            )
        return self.physical[logical]


@dataclass(frozen=True)
class TemplateRole:
    """One AWS::IAM::Role with every policy the template attaches to it (unresolved)."""

    logical_id: str
    trust_policy: Mapping[str, Any]
    inline: Mapping[str, Any]  # policy name -> document
    managed_arns: tuple[Any, ...]


def template_roles(resources: Mapping[str, Any]) -> dict[str, TemplateRole]:
    """Every role, with its AWS::IAM::Policy resources, inline Policies and managed ARNs."""
    roles: dict[str, TemplateRole] = {}
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        properties = resource.get("Properties", {})
        inline = {
            f"{logical}-{policy['PolicyName']}": policy["PolicyDocument"]
            for policy in properties.get("Policies", [])
        }
        for policy_id, policy in resources.items():
            attached = policy.get("Properties", {}).get("Roles", [])
            if policy["Type"] == "AWS::IAM::Policy" and {"Ref": logical} in attached:
                inline[policy_id] = policy["Properties"]["PolicyDocument"]
        roles[logical] = TemplateRole(
            logical,
            properties["AssumeRolePolicyDocument"],
            inline,
            tuple(properties.get("ManagedPolicyArns", [])),
        )
    unattached = [
        policy_id
        for policy_id, policy in resources.items()
        if policy["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        and not any(
            ref.get("Ref") in roles for ref in policy.get("Properties", {}).get("Roles", [])
        )
    ]
    if unattached:
        raise UnresolvableError(f"policies attached to no role (users, groups?): {unattached}")
    return roles


def lambda_role(resources: Mapping[str, Any], module: str) -> tuple[str, str]:
    """(function logical id, role logical id) of the Lambda whose handler is `lambdas.<module>`."""
    for logical, resource in resources.items():
        properties = resource.get("Properties", {})
        if (
            resource["Type"] == "AWS::Lambda::Function"
            and properties.get("Handler") == f"lambdas.{module}.handler.handler"
        ):
            return logical, properties["Role"]["Fn::GetAtt"][0]
    raise UnresolvableError(f"no Lambda function with handler lambdas.{module}.handler.handler")


def instance_role(resources: Mapping[str, Any]) -> tuple[str, str]:
    """(instance logical id, role logical id) of the one EC2 instance (fleet mode: of the one
    launch template), via its profile."""
    instances = of_type(resources, "AWS::EC2::Instance")
    templates = of_type(resources, "AWS::EC2::LaunchTemplate")
    if len(instances + templates) != 1:
        raise UnresolvableError(
            f"expected one AWS::EC2::Instance or AWS::EC2::LaunchTemplate, found "
            f"{instances + templates}"
        )
    if instances:
        profile = resources[instances[0]]["Properties"]["IamInstanceProfile"]["Ref"]
    else:
        data = resources[templates[0]]["Properties"]["LaunchTemplateData"]
        profile = data["IamInstanceProfile"]["Arn"]["Fn::GetAtt"][0]
    (role,) = resources[profile]["Properties"]["Roles"]
    return (instances + templates)[0], role["Ref"]


def of_type(resources: Mapping[str, Any], kind: str) -> list[str]:
    """Logical ids of the resources of one type, in template order."""
    return [logical for logical, resource in resources.items() if resource["Type"] == kind]


def role_of(resources: Mapping[str, Any], kind: str, role_property: str) -> str | None:
    """The role logical id that the one resource of `kind` names in `role_property`
    (`Fn::GetAtt [Role, Arn]`), or None when the template has no such resource."""
    found = of_type(resources, kind)
    if not found:
        return None
    return str(resources[found[0]]["Properties"][role_property]["Fn::GetAtt"][0])


def custom_resource_role(resources: Mapping[str, Any], kind: str) -> tuple[str, str]:
    """(function logical id, role logical id) of the Lambda serving the one custom resource of
    `kind` (e.g. Custom::CDKBucketDeployment), through its ServiceToken."""
    found = of_type(resources, kind)
    if len(found) != 1:
        raise UnresolvableError(f"expected one {kind}, found {found}")
    function = resources[found[0]]["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    return function, str(resources[function]["Properties"]["Role"]["Fn::GetAtt"][0])
