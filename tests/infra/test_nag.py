"""cdk-nag AwsSolutions: synthesis with the plugin succeeds, and every finding it suppressed
carries a reason."""

from __future__ import annotations

import json

import pytest

from infra_cdk.app import build_app
from tests.infra.conftest import CERTIFICATE_ARN


def test_aws_solutions_has_no_unacknowledged_findings(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    outdir = tmp_path_factory.mktemp("cdk.out-nag")
    app, _ = build_app(outdir=str(outdir), nag=True)
    app.synth()  # raises ValidationFailed on any unacknowledged finding
    report = json.loads((outdir / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert (plugin["pluginName"], plugin["conclusion"], plugin["violations"]) == (
        "AwsSolutions",
        "success",
        [],
    )
    suppressed = plugin["suppressedViolations"]
    assert suppressed
    assert all(len(s["reason"]) > 40 for s in suppressed)
    rules = {s["ruleName"].split("[")[0] for s in suppressed}
    assert rules == {
        "AwsSolutions-CFR1",
        "AwsSolutions-CFR2",
        "AwsSolutions-CFR3",
        "AwsSolutions-CFR4",
        "AwsSolutions-L1",
        "AwsSolutions-EC29",
        "AwsSolutions-SMG4",
        "AwsSolutions-IAM4",
        "AwsSolutions-IAM5",
        "AwsSolutions-APIG3",
        "AwsSolutions-APIG4",
        "AwsSolutions-APIG6",
        "AwsSolutions-COG4",
    }


def test_a_custom_domain_needs_no_tls_acknowledgment(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With certificateArn the distribution requires TLS 1.2, so CFR4 is not acknowledged."""
    outdir = tmp_path_factory.mktemp("cdk.out-nag-domain")
    app, _ = build_app(
        outdir=str(outdir),
        nag=True,
        settings={"domainName": "gpu.example.org", "certificateArn": CERTIFICATE_ARN},
    )
    app.synth()
    (plugin,) = json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    assert plugin["violations"] == []
    assert "AwsSolutions-CFR4" not in {s["ruleName"] for s in plugin["suppressedViolations"]}


def test_the_fleet_has_no_unacknowledged_findings(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`make synth MODE=fleet` passes cdk-nag; the fleet adds only these acknowledged rules, on
    the constructs they concern (the single instance's EC29 is gone with the instance)."""
    outdir = tmp_path_factory.mktemp("cdk.out-nag-fleet")
    app, _ = build_app(outdir=str(outdir), nag=True, settings={"mode": "fleet"})
    app.synth()
    (plugin,) = json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    assert (plugin["conclusion"], plugin["violations"]) == ("success", [])
    suppressed = plugin["suppressedViolations"]
    assert all(len(s["reason"]) > 40 for s in suppressed)
    by_rule: dict[str, set[str]] = {}
    for finding in suppressed:
        rule = finding["ruleName"].split("[")[0]
        by_rule.setdefault(rule, set()).update(
            location["constructPath"] for location in finding["violatingConstructs"]
        )
    assert "AwsSolutions-EC29" not in by_rule
    assert by_rule["AwsSolutions-AS3"] == {"Cvstack/Gpu/Group/ASG"}
    assert by_rule["AwsSolutions-ELB2"] == {"Cvstack/FleetLoadBalancer/LoadBalancer/Resource"}
    assert by_rule["AwsSolutions-DDB3"] == {"Cvstack/Demand/Table/Resource"}
    group_arn = [
        finding
        for finding in suppressed
        if "autoScalingGroupName/Cvstack-gpu-fleet" in finding["ruleName"]
    ]
    assert {
        tuple(location["constructPath"].split("/")[1:3])
        for finding in group_arn
        for location in finding["violatingConstructs"]
    } == {("Gpu", "Role"), ("Lifecycle", "StartServerRole"), ("Lifecycle", "IdleStopRole")}
