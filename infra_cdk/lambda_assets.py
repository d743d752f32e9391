"""Lambda code assets staged from the repository at synth time, without Docker.

Each asset holds `lambdas/__init__.py`, `lambdas/shared/`, the function's own folder and
any extra repository files it imports (start_server: the backend's session-token module,
so the Lambda and the backend share one implementation). Paths keep their repository
layout, so imports read the same in the Lambda runtime and in the tests.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = lambda_.Runtime.PYTHON_3_14


@jsii.implements(cdk.ILocalBundling)
class RepositoryFiles:
    """Local bundling that copies chosen repository files into the asset folder."""

    def __init__(self, files: Sequence[str]) -> None:
        missing = [f for f in files if not (REPO_ROOT / f).is_file()]
        if missing:
            raise FileNotFoundError(f"Lambda asset files missing from the repository: {missing}")
        self.files = tuple(files)

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        """Copy the files; returning True tells CDK no Docker bundling is needed."""
        for relative in self.files:
            target = Path(output_dir) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO_ROOT / relative, target)
        return True


def asset_files(function: str, extra_files: Sequence[str] = ()) -> list[str]:
    """The repository-relative files one function's asset holds."""
    folders = [REPO_ROOT / "lambdas" / "shared", REPO_ROOT / "lambdas" / function]
    sources = [REPO_ROOT / "lambdas" / "__init__.py"]
    sources += [path for folder in folders for path in sorted(folder.glob("*.py"))]
    return [str(path.relative_to(REPO_ROOT)) for path in sources] + list(extra_files)


def lambda_code(function: str, extra_files: Sequence[str] = ()) -> lambda_.Code:
    """The asset for `lambdas/<function>`, hashed by its staged content."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "lambdas" / function),
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            image=RUNTIME.bundling_image, local=RepositoryFiles(asset_files(function, extra_files))
        ),
    )
