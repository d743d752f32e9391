"""The Lambda assets: the pinned wheels for the runtime and architecture, each handler
importable from its asset alone, and the environment the template gives each function
accepted by that function's settings class."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra_cdk.lambda_assets import (
    ARCHITECTURE,
    LAMBDA_TARGET,
    REQUIREMENTS,
    RUNTIME,
    WheelTarget,
    pinned_wheels,
    unpack_wheels,
)
from lambdas.idle_stop.settings import IdleStopSettings
from lambdas.shared.settings import LambdaSettings, environment_text
from lambdas.start_server.settings import StartServerSettings
from lambdas.status.settings import StatusSettings
from tests.infra.conftest import Synthesized

SETTINGS: dict[str, type[LambdaSettings]] = {
    "start_server": StartServerSettings,
    "status": StatusSettings,
    "idle_stop": IdleStopSettings,
}
EM_AARCH64 = 183  # ELF e_machine
# A value CloudFormation fills in at deploy time (Ref, Fn::GetAtt) stands in as this text.
DEPLOY_TIME = "resolved-at-deploy"
# Imports the handler with only the asset, the runtime's boto3 and the standard library on
# sys.path (-I -S: no site-packages, no PYTHONPATH; -B: no .pyc, as in the read-only
# /var/task), loads its settings and prints where every module came from.
PYTHON_ALONE = (sys.executable, "-B", "-I", "-S", "-c")
IMPORT_CHECK = """
import importlib, json, sys, sysconfig
from pathlib import Path
asset, boto, function = sys.argv[1:]
sys.path[:0] = [asset, boto]
importlib.import_module(f"lambdas.{function}.handler")
from lambdas.shared.settings import LambdaSettings, environment_text
(settings_class,) = [
    c for c in vars(importlib.import_module(f"lambdas.{function}.settings")).values()
    if isinstance(c, type) and issubclass(c, LambdaSettings) and c.__dict__.get("function")
]
settings = settings_class.load()
stdlib = {Path(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
roots = [Path(asset), Path(boto), *stdlib]
files = [Path(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "pydantic": sys.modules["pydantic"].__file__,
    "outside": sorted(str(f) for f in files if not any(f.is_relative_to(r) for r in roots)),
    "environment": {
        str(field.alias): environment_text(getattr(settings, name))
        for name, field in settings_class.model_fields.items()
    },
}))
"""


def lambda_functions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """lambdas/<function> -> its AWS::Lambda::Function properties."""
    found = {}
    for resource in synthesized.resources.values():
        handler = resource.get("Properties", {}).get("Handler", "")
        if resource["Type"] == "AWS::Lambda::Function" and handler.startswith("lambdas."):
            found[handler.split(".")[1]] = resource["Properties"]
    assert sorted(found) == sorted(SETTINGS)
    return found


def asset_dir(synthesized: Synthesized, properties: dict[str, Any]) -> Path:
    return synthesized.outdir / f"asset.{Path(properties['Code']['S3Key']).stem}"


def stand_in_environment(properties: dict[str, Any]) -> dict[str, str]:
    """The function's variables, deploy-time references replaced by plain text."""
    variables = properties["Environment"]["Variables"]
    return {k: v if isinstance(v, str) else DEPLOY_TIME for k, v in variables.items()}


def pins() -> set[tuple[str, str]]:
    """(distribution, version) pinned in lambdas/requirements.txt, names as in .dist-info."""
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return {
        (re.sub(r"[-_.]+", "_", name).lower(), version)
        for name, version in (line.split("==") for line in lines if line)
    }


def test_each_asset_holds_the_pinned_wheels_for_the_runtime_and_architecture(
    synthesized: Synthesized,
) -> None:
    """Python 3.14 on arm64: pydantic-core's extension is built for exactly that."""
    assert WheelTarget("3.14", "manylinux2014_aarch64") == LAMBDA_TARGET
    for function, properties in lambda_functions(synthesized).items():
        assert (properties["Runtime"], properties["Architectures"]) == (
            RUNTIME.name,
            [ARCHITECTURE.name],
        )
        asset = asset_dir(synthesized, properties)
        assert (asset / "lambdas" / function / "settings.py").is_file()
        installed = {
            (path.stem.split("-")[0].lower(), path.stem.split("-")[1])
            for path in asset.glob("*.dist-info")
        }
        assert installed == pins()
        (extension,) = asset.rglob("*.so")
        assert extension.name == "_pydantic_core.cpython-314-aarch64-linux-gnu.so"
        header = extension.read_bytes()[:20]
        assert header[:4] == b"\x7fELF"
        assert int.from_bytes(header[18:20], "little") == EM_AARCH64
        assert not (asset / "bin").exists()
        assert not list(asset.rglob("__pycache__"))


@pytest.fixture(scope="module")
def runtime_boto3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only boto3 and what it imports, as the Lambda runtime provides them."""
    folder = tmp_path_factory.mktemp("runtime-boto3")
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        source = Path(spec.origin)
        source = source.parent if spec.submodule_search_locations else source
        (folder / source.name).symlink_to(source)
    return folder


def test_each_handler_imports_from_its_asset_alone(
    synthesized: Synthesized, runtime_boto3: Path, tmp_path: Path
) -> None:
    """The staged code beside the same pinned wheels for this machine's Python: the handler
    imports, its settings load from the template's environment, and nothing comes from the
    venv. (Here Python 3.11 on x86_64; the runtime is 3.14 on arm64, whose wheels the test
    above checks. Where the minor versions match, this is the runtime's own version.)"""
    here = WheelTarget.this_machine()
    for function, properties in lambda_functions(synthesized).items():
        asset = tmp_path / function
        for folder in ("lambdas", "backend"):
            staged = asset_dir(synthesized, properties) / folder
            if staged.is_dir():
                shutil.copytree(staged, asset / folder)
        unpack_wheels(pinned_wheels(here), asset)
        environment = stand_in_environment(properties)
        done = subprocess.run(
            [*PYTHON_ALONE, IMPORT_CHECK, str(asset), str(runtime_boto3), function],
            capture_output=True,
            text=True,
            env={**environment, "PATH": os.environ.get("PATH", "")},
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["python"] == [int(p) for p in here.python_version.split(".")]
        assert Path(report["pydantic"]).is_relative_to(asset)
        assert report["outside"] == []
        assert report["environment"] == environment


def test_the_template_environment_is_what_each_settings_class_reads(
    synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every variable the template sets is one the function reads, and none is missing or
    refused: the names come from the settings classes, the values from cdk.json."""
    for function, properties in lambda_functions(synthesized).items():
        settings_class = SETTINGS[function]
        environment = stand_in_environment(properties)
        assert set(environment) == {str(f.alias) for f in settings_class.model_fields.values()}
        for name in environment:
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings_class.settings_clear_cache()
        settings = settings_class.load()
        settings_class.settings_clear_cache()
        assert {
            str(field.alias): environment_text(getattr(settings, name))
            for name, field in settings_class.model_fields.items()
        } == environment
    idle = stand_in_environment(lambda_functions(synthesized)["idle_stop"])
    assert (idle["IDLE_MINUTES"], idle["BOOT_GRACE_MINUTES"]) == ("15", "5")


def test_cached_wheels_need_no_network(
    synthesized: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first synth, the wheels come from the cache: pip is never run."""

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pip ran: {args}")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert len(pinned_wheels(LAMBDA_TARGET)) == len(pins())


def test_a_failed_download_says_what_and_how_to_recover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline_pip(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            command, 1, "", "ERROR: No matching distribution found for pydantic==2.14.4\n"
        )

    monkeypatch.setattr(subprocess, "run", offline_pip)
    with pytest.raises(RuntimeError) as error:
        pinned_wheels(LAMBDA_TARGET, cache=tmp_path)
    assert str(error.value) == (
        "could not download the Lambdas' dependencies (lambdas/requirements.txt) for Python "
        "3.14 on manylinux2014_aarch64: pip said: ERROR: No matching distribution found for "
        "pydantic==2.14.4. The first synth needs PyPI; later ones take the wheels from "
        ".cvstack/cache/lambda-wheels."
    )
    assert list(tmp_path.iterdir()) == []
