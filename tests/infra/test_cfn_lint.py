"""cfn-lint on the synthesized template: no errors or warnings."""

from __future__ import annotations

import json

from cfnlint.api import ManualArgs, lint

from tests.infra.conftest import Synthesized

# CDK writes DependsOn that cfn-lint calls redundant (W3005); it is generated, not ours.
IGNORED = ["W3005"]


def test_template_is_cfn_lint_clean(synthesized: Synthesized) -> None:
    template = json.dumps(synthesized.template.to_json())
    matches = lint(
        template, config=ManualArgs(ignore_checks=IGNORED, regions=["us-east-1", "eu-west-1"])
    )
    assert matches == [], "\n".join(str(m) for m in matches)
