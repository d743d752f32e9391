"""cdk-nag AwsSolutions: synthesis with the plugin succeeds, and every finding it suppressed
carries a reason."""

from __future__ import annotations

import json

import pytest

from infra_cdk.app import build_app


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
        "AwsSolutions-EC23",
        "AwsSolutions-EC29",
        "AwsSolutions-SMG4",
        "AwsSolutions-IAM4",
        "AwsSolutions-IAM5",
        "AwsSolutions-APIG3",
        "AwsSolutions-APIG4",
        "AwsSolutions-APIG6",
        "AwsSolutions-COG4",
    }
