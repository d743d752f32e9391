"""One synthesis of the stack per test session, with cdk.json's context (no cdk-nag plugin)."""

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


@dataclass(frozen=True)
class Synthesized:
    """The stack, its template and the cloud assembly folder it was written to."""

    stack: CvstackStack
    template: Template
    outdir: Path

    @property
    def resources(self) -> dict[str, Any]:
        return self.template.to_json()["Resources"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app, stack = build_app(outdir=str(outdir), nag=False)
    app.synth()
    return Synthesized(stack, Template.from_stack(stack), outdir)
