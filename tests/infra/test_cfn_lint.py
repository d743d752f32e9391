"""cfn-lint on the synthesized templates of both modes: no errors or warnings."""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from tests.infra.conftest import Synthesized

# CDK writes DependsOn that cfn-lint calls redundant (W3005); it is generated, not ours.
IGNORED = ["W3005"]


@pytest.mark.parametrize("mode", ["synthesized", "fleet_synthesized"])
def test_template_is_cfn_lint_clean(mode: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synthesized = request.getfixturevalue(mode)
    template = json.dumps(synthesized.template.to_json())
    matches = lint(
        template, config=ManualArgs(ignore_checks=IGNORED, regions=["us-east-1", "eu-west-1"])
    )
    assert matches == [], "\n".join(str(m) for m in matches)
