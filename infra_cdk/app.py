"""Entry point `python -m infra_cdk.app` (what `npx cdk synth` runs, see cdk.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from infra_cdk.config import StackConfig
from infra_cdk.lambda_assets import REPO_ROOT
from infra_cdk.nag import apply_nag
from infra_cdk.stack import CvstackStack

STACK_NAME = "Cvstack"
# `cdk synth -c cvstackMode=fleet` (what `make synth MODE=fleet` passes) overrides cdk.json's
# cvstack.mode for one command; a deployment keeps its mode in cdk.json.
MODE_CONTEXT_KEY = "cvstackMode"


def cdk_json_context(path: Path = REPO_ROOT / "cdk.json") -> dict[str, Any]:
    """The context (feature flags and the `cvstack` settings) that cdk.json declares."""
    context = json.loads(path.read_text()).get("context", {})
    if not isinstance(context, dict):
        raise ValueError(f"{path}: 'context' must be an object")
    return context


def build_app(
    *,
    outdir: str | None = None,
    nag: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> tuple[cdk.App, CvstackStack]:
    """The app with cdk.json's context, so `python -m` and `cdk synth` build the same template.

    `settings` overrides keys of cdk.json's `cvstack` object (tests of other configurations).
    """
    context = cdk_json_context()
    if settings:
        context = {**context, "cvstack": {**context.get("cvstack", {}), **settings}}
    app = cdk.App(context=context, outdir=outdir)
    config = StackConfig.from_context(
        {"cvstack": with_mode_override(app.node.try_get_context("cvstack") or {}, app)}
    )
    stack = CvstackStack(
        app, STACK_NAME, config=config, description="cvstack: on-demand GPU vision backend"
    )
    if nag:
        apply_nag(app, stack, config)
    return app, stack


def with_mode_override(settings: Mapping[str, Any], app: cdk.App) -> Mapping[str, Any]:
    """cdk.json's `cvstack` settings, with `mode` from `-c cvstackMode=...` when given."""
    mode = app.node.try_get_context(MODE_CONTEXT_KEY)
    if mode is None or mode == "":
        return settings
    if mode not in ("single", "fleet"):
        raise ValueError(
            f"-c {MODE_CONTEXT_KEY}={mode!r} is not a mode: pass single or fleet "
            "(make synth MODE=fleet), or set cvstack.mode in cdk.json"
        )
    return {**settings, "mode": mode} if isinstance(settings, Mapping) else settings


def main() -> None:
    """Synthesize into cdk.out (or the CLI's output folder)."""
    app, _ = build_app()
    app.synth()


if __name__ == "__main__":
    main()
