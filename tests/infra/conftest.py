"""One synthesis of the stack per test session and mode, with cdk.json's context (no cdk-nag
plugin)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from infra_cdk.app import build_app
from infra_cdk.stack import CvstackStack

CERTIFICATE_ARN = (
    "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
)


@dataclass(frozen=True)
class Synthesized:
    """The stack, its template and the cloud assembly folder it was written to."""

    stack: CvstackStack
    template: Template
    outdir: Path

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.to_json()["Resources"]  # type: ignore[no-any-return]


def synthesize(outdir: Path, **settings: Any) -> Synthesized:
    """Synthesize with cdk.json's settings, `settings` (camelCase keys) overriding them."""
    app, stack = build_app(outdir=str(outdir), nag=False, settings=settings)
    app.synth()
    return Synthesized(stack, Template.from_stack(stack), outdir)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def resynthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack after an operator changed the settings that may change after launch: other
    origins, a custom domain with its certificate and Route 53 zone, operator addresses."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out-changed"),
        allowedOrigins=["https://new.example.org", "http://localhost:5173"],
        domainName="gpu.example.org",
        certificateArn=CERTIFICATE_ARN,
        hostedZoneId="Z0123456789ABCDEFGHIJ",
        hostedZoneName="example.org",
        operatorCidrs=["198.51.100.7/32", "2001:db8::/64"],
    )


@pytest.fixture(scope="session")
def fleet_synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The fleet variant with cdk.json's other settings (`make synth MODE=fleet`)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out-fleet"), mode="fleet")
