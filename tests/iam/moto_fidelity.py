"""What moto's IAM evaluation leaves out, filled in for the calls cvstack makes.

moto 5 enforces IAM (moto/iam/access_control.py) for IAM users and assumed roles once
`INITIAL_NO_AUTH_ACTION_COUNT` requests have passed: it checks the SigV4 signature, collects
the principal's inline and attached policies, matches `Action`/`NotAction` with wildcards and
combines statements (an explicit Deny wins, else one Allow is needed). Measured limits
(tests/iam/test_moto_limits.py shows each one):

- Resources are evaluated only for S3 (bucket and object ARNs), SQS, IAM roles and
  sts:AssumeRole. Every other service is evaluated against `"*"`, so a statement naming an
  EC2 instance, a secret, a parameter or a log group never matches: moto denies calls that
  AWS allows, and cannot tell "this instance" from "another instance".
- Identity policies' `Condition` blocks are not evaluated (no request context is passed): an
  Allow with a condition acts as an unconditional Allow.
- A statement with `NotResource` (no `Resource`) matches every resource, whatever its
  effect, so `Deny` + `NotResource` denies everything and `Allow` + `NotResource` allows
  everything.
- The action's service prefix is the request's SigV4 signing name, which for CloudWatch is
  `monitoring`: `cloudwatch:PutMetricData` never matches `monitoring:PutMetricData`, so every
  CloudWatch call is denied whatever the policy says.

`faithful_iam` adds, for identity policies only (trust policies stay moto's): the IAM prefix
for signing names that differ from it, the resource ARN each call is authorized against (EC2
instance actions, Secrets Manager, SSM parameters, CloudWatch Logs streams, Auto Scaling group
actions, DynamoDB tables) and the request's condition keys (`cloudwatch:namespace`,
`s3:prefix`, `aws:TagKeys`, `aws:RequestTag/...`), evaluated with AWS's operators
`StringEquals` and `StringLike` (also under `ForAllValues:`/`ForAnyValue:`), and
`NotResource`. A condition on any other key or operator raises `UnmodelledConditionError`
instead of passing silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto.autoscaling.responses import AutoScalingResponse
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.responses import BaseResponse
from moto.dynamodb.responses import DynamoHandler
from moto.ec2.responses import EC2Response
from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.logs.responses import LogsResponse
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.ssm.responses import SimpleSystemManagerResponse

# EC2 actions AWS authorizes per instance (the others, e.g. DescribeInstances, against "*").
EC2_INSTANCE_ACTIONS = frozenset(
    {
        "StartInstances",
        "StopInstances",
        "RebootInstances",
        "TerminateInstances",
        "CreateTags",
        "DeleteTags",
        "ModifyInstanceAttribute",
    }
)
LOG_STREAM_ACTIONS = frozenset({"CreateLogStream", "PutLogEvents"})
# Auto Scaling actions AWS authorizes per group (the Describe ones against "*").
AUTOSCALING_GROUP_ACTIONS = frozenset(
    {
        "SetDesiredCapacity",
        "SetInstanceProtection",
        "RecordLifecycleActionHeartbeat",
        "CompleteLifecycleAction",
        "CreateOrUpdateTags",
        "DeleteTags",
        "UpdateAutoScalingGroup",
        "TerminateInstanceInAutoScalingGroup",
    }
)
MODELLED_KEYS = frozenset({"cloudwatch:namespace", "s3:prefix", "aws:tagkeys"})
REQUEST_TAG_PREFIX = "aws:requesttag/"
IAM_PREFIX_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}


class UnmodelledConditionError(NotImplementedError):
    """A policy conditions on a key or operator that `faithful_iam` does not evaluate."""


@dataclass(frozen=True)
class RequestFacts:
    """The condition keys of the request being authorized (keys lower-case)."""

    context: Mapping[str, list[str]] = field(default_factory=dict)


CURRENT_REQUEST: ContextVar[RequestFacts | None] = ContextVar("CURRENT_REQUEST", default=None)


def _string_like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": _string_like,
}


def conditions_hold(
    block: Mapping[str, Mapping[str, Any]], context: Mapping[str, list[str]]
) -> bool:
    """AWS semantics: operators AND, keys AND, a key's values OR; a missing key fails a
    single-valued test and `ForAnyValue`, and passes `ForAllValues`."""
    for operator, tests in block.items():
        qualifier, _, name = operator.rpartition(":")
        if name not in OPERATORS or qualifier not in ("", "ForAllValues", "ForAnyValue"):
            raise UnmodelledConditionError(f"condition operator {operator} is not modelled")
        match = OPERATORS[name]
        for key, expected in tests.items():
            lowered = key.lower()
            if lowered not in MODELLED_KEYS and not lowered.startswith(REQUEST_TAG_PREFIX):
                raise UnmodelledConditionError(f"condition key {key} is not modelled")
            wanted = [expected] if isinstance(expected, str) else list(expected)
            actual = context.get(lowered, [])
            hits = [any(match(w, a) for w in wanted) for a in actual]
            # Single-valued operators and ForAnyValue: one value must match.
            holds = all(hits) if qualifier == "ForAllValues" else any(hits)
            if not holds:
                return False
    return True


def _statement_result(
    statement: IAMPolicyStatement, action: str, resource: str, facts: RequestFacts
) -> PermissionResult:
    """One identity-policy statement under AWS's rules, with moto's own wildcard matcher."""
    body = statement._statement
    service, _, name = action.partition(":")
    action = f"{IAM_PREFIX_OF_SIGNING_NAME.get(service, service)}:{name}"
    if "NotAction" in body:
        concerned = not statement._check_element_matches("NotAction", action)
    else:
        concerned = statement._check_element_matches("Action", action)
    if "NotResource" in body:
        concerned = concerned and not statement._check_element_matches("NotResource", resource)
    else:
        concerned = concerned and statement._check_element_matches("Resource", resource)
    if not concerned:
        return PermissionResult.NEUTRAL
    if "Condition" in body and not conditions_hold(body["Condition"], facts.context):
        return PermissionResult.NEUTRAL
    return PermissionResult.PERMITTED if body["Effect"] == "Allow" else PermissionResult.DENIED


def _arn(response: BaseResponse, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{response.region}:{response.current_account}:{resource}"


def _ec2_facts(response: EC2Response, action: str) -> tuple[str, dict[str, list[str]]]:
    context: dict[str, list[str]] = {}
    if action in ("CreateTags", "DeleteTags"):
        tags = response._get_param("Tags", [])
        context["aws:tagkeys"] = [tag["Key"] for tag in tags]
        for tag in tags:
            context[f"{REQUEST_TAG_PREFIX}{tag['Key'].lower()}"] = [tag.get("Value", "")]
    if action not in EC2_INSTANCE_ACTIONS:
        return "*", context
    ids = set(
        response._get_param("InstanceIds", [])
        or response._get_param("Resources", [])
        or [response._get_param("InstanceId")]
    )
    # One instance: its ARN. Several (never sent by cvstack): "*", which only a statement for
    # every resource matches, so a narrow policy can never be satisfied by accident.
    if len(ids) == 1 and str(next(iter(ids))).startswith("i-"):
        return _arn(response, "ec2", f"instance/{next(iter(ids))}"), context
    return "*", context


def _secret_arn(response: SecretsManagerResponse) -> str:
    secret_id = response._get_param("SecretId")
    if not secret_id:
        return "*"
    secret = response.backend.secrets.get(secret_id)
    return (
        secret.arn
        if secret is not None
        else _arn(response, "secretsmanager", f"secret:{secret_id}")
    )


def _parameter_arn(response: SimpleSystemManagerResponse) -> str:
    names = response._get_param("Names") or [
        response._get_param("Name") or response._get_param("Path")
    ]
    if len(names) != 1 or not names[0]:
        return "*"
    name = str(names[0]).split(":")[0] if not str(names[0]).startswith("arn:") else names[0]
    return (
        name if name.startswith("arn:") else _arn(response, "ssm", f"parameter/{name.lstrip('/')}")
    )


def _log_arn(response: LogsResponse, action: str) -> str:
    group = response._get_param("logGroupName")
    if not group:
        return "*"
    if action in LOG_STREAM_ACTIONS:
        stream = response._get_param("logStreamName")
        return _arn(response, "logs", f"log-group:{group}:log-stream:{stream}")
    return _arn(response, "logs", f"log-group:{group}")


def _autoscaling_facts(
    response: AutoScalingResponse, action: str
) -> tuple[str, dict[str, list[str]]]:
    """A group action's group ARN (one group per call; several: "*"), and a tag call's keys."""
    context: dict[str, list[str]] = {}
    if action not in AUTOSCALING_GROUP_ACTIONS:
        return "*", context
    names = {response._get_param("AutoScalingGroupName")}
    if action in ("CreateOrUpdateTags", "DeleteTags"):
        tags = response._get_param("Tags", [])
        names = {tag.get("ResourceId") for tag in tags}
        context["aws:tagkeys"] = [tag["Key"] for tag in tags]
    if len(names) != 1 or not next(iter(names)):
        return "*", context
    name = str(next(iter(names)))
    group = response.autoscaling_backend.autoscaling_groups.get(name)
    if group is not None:
        return str(group.arn), context
    missing = f"autoScalingGroup:unknown:autoScalingGroupName/{name}"
    return _arn(response, "autoscaling", missing), context


def _table_arn(response: DynamoHandler) -> str:
    """The one table a call names (BatchGetItem: its request's one table; several: "*")."""
    table = response._get_param("TableName")
    names = [table] if table else list(response._get_param("RequestItems", {}) or {})
    if len(names) != 1:
        return "*"
    return _arn(response, "dynamodb", f"table/{names[0]}")


def request_facts(response: BaseResponse) -> tuple[str, RequestFacts]:
    """The resource ARN a call is authorized against, and its condition keys."""
    action = response._get_action()
    resource, context = "*", dict[str, list[str]]()
    if isinstance(response, EC2Response):
        resource, context = _ec2_facts(response, action)
    elif isinstance(response, SecretsManagerResponse):
        resource = _secret_arn(response)
    elif isinstance(response, SimpleSystemManagerResponse):
        resource = _parameter_arn(response)
    elif isinstance(response, LogsResponse):
        resource = _log_arn(response, action)
    elif isinstance(response, AutoScalingResponse):
        resource, context = _autoscaling_facts(response, action)
    elif isinstance(response, DynamoHandler):
        resource = _table_arn(response)
    elif isinstance(response, CloudWatchResponse):
        namespace = response._get_param("Namespace")
        context = {"cloudwatch:namespace": [namespace]} if namespace else {}
    return resource, RequestFacts(context)


def faithful_iam(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the additions above for one test (undone by `monkeypatch`)."""
    normal = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
    s3 = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action
    statement = IAMPolicyStatement.is_action_permitted

    def authorize_normal(self: BaseResponse, resource: str = "*") -> None:
        determined, facts = request_facts(self)
        token = CURRENT_REQUEST.set(facts)
        try:
            normal(self, determined if resource == "*" else resource)
        finally:
            CURRENT_REQUEST.reset(token)

    def authorize_s3(
        self: BaseResponse, bucket_name: str | None = None, key_name: str | None = None
    ) -> None:
        prefix = self.querystring.get("prefix", [None])[0]
        token = CURRENT_REQUEST.set(RequestFacts({"s3:prefix": [prefix]} if prefix else {}))
        try:
            s3(self, bucket_name=bucket_name, key_name=key_name)
        finally:
            CURRENT_REQUEST.reset(token)

    def is_action_permitted(
        self: IAMPolicyStatement,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> PermissionResult:
        facts = CURRENT_REQUEST.get()
        if facts is None or principal is not None or incoming_condition_values is not None:
            return statement(self, action, resource, principal, incoming_condition_values)
        return _statement_result(self, action, resource, facts)

    monkeypatch.setattr(
        ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", authorize_normal
    )
    monkeypatch.setattr(
        ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", authorize_s3
    )
    monkeypatch.setattr(IAMPolicyStatement, "is_action_permitted", is_action_permitted)
