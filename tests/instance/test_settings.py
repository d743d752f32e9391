"""`cvstack instance settings` against moto's SSM: the boot-time settings file every unit reads."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from backend.cli import main
from backend.instance.settings import SETTING_KEYS, read_env_file

REGION = "eu-west-1"  # not moto's default: the command must take the region from instance.env
PARAMETER = "/cvstack/CvStack/instance-settings"
SETTINGS = {
    "CVSTACK_MODELS_S3_URI": "s3://cvstack-models-123/models/",
    "CVSTACK_SESSION_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cvstack",
    "CVSTACK_ORIGIN_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:origin",
    "CVSTACK_FRONTEND_ORIGINS": "self,https://app.example.com,http://localhost:8080",
}


@pytest.fixture
def ssm(fake_aws: None) -> Iterator[Any]:
    client = boto3.client("ssm", region_name=REGION)
    client.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(SETTINGS))
    yield client


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """/etc/cvstack as user data leaves it: instance.env only."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "instance.env").write_text(
        f"CVSTACK_AWS_REGION={REGION}\nCVSTACK_SETTINGS_PARAMETER={PARAMETER}\n"
    )
    return folder


def run_settings(etc: Path, out: Path) -> int:
    return main(
        [
            "instance",
            "settings",
            "--instance-env",
            str(etc / "instance.env"),
            "--aws-env",
            str(etc / "aws.env"),
            "--out",
            str(out),
        ]
    )


def test_stack_env_is_instance_env_then_the_parameter_then_aws_overrides(
    ssm: Any, etc: Path, tmp_path: Path
) -> None:
    (etc / "aws.env").write_text(
        "# the rehearsal's moto_server\nAWS_ENDPOINT_URL=http://127.0.0.1:5000\n"
    )
    out = tmp_path / "run" / "stack.env"
    assert run_settings(etc, out) == 0
    lines = out.read_text().splitlines()
    assert lines == [
        f"CVSTACK_AWS_REGION={REGION}",
        f"CVSTACK_SETTINGS_PARAMETER={PARAMETER}",
        *(f"{key}={SETTINGS[key]}" for key in SETTING_KEYS),
        "AWS_ENDPOINT_URL=http://127.0.0.1:5000",
    ]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["stack.env"]  # no temporary left behind


def test_a_changed_parameter_reaches_the_next_boot(ssm: Any, etc: Path, tmp_path: Path) -> None:
    out = tmp_path / "stack.env"
    assert run_settings(etc, out) == 0
    assert "AWS_ENDPOINT_URL" not in out.read_text()  # no aws.env on a normal instance
    changed = {**SETTINGS, "CVSTACK_FRONTEND_ORIGINS": "https://new.example.com"}
    ssm.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(changed), Overwrite=True)
    assert run_settings(etc, out) == 0  # the next boot
    assert read_env_file(out)["CVSTACK_FRONTEND_ORIGINS"] == "https://new.example.com"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CVSTACK_EXTRA": "x"}, "unknown key CVSTACK_EXTRA"),
        ({"CVSTACK_ORIGIN_SECRET_ID": None}, "has no CVSTACK_ORIGIN_SECRET_ID"),
        ({"CVSTACK_ORIGIN_SECRET_ID": ""}, "CVSTACK_ORIGIN_SECRET_ID must name the secret"),
        ({"CVSTACK_DOMAIN_NAME": "cv.example.com"}, "unknown key CVSTACK_DOMAIN_NAME"),
        ({"CVSTACK_MODELS_S3_URI": "https://bucket/models"}, "CVSTACK_MODELS_S3_URI must be"),
        ({"CVSTACK_FRONTEND_ORIGINS": "https://a.example.com/app"}, "CVSTACK_FRONTEND_ORIGINS"),
        ({"CVSTACK_FRONTEND_ORIGINS": ""}, "CVSTACK_FRONTEND_ORIGINS must be"),
        ({"CVSTACK_FRONTEND_ORIGINS": "self,same"}, "got 'same'"),
        ({"CVSTACK_ORIGIN_SECRET_ID": "not an arn"}, "CVSTACK_ORIGIN_SECRET_ID has a space"),
        ({"CVSTACK_SESSION_SECRET_ID": 42}, "CVSTACK_SESSION_SECRET_ID must be a string"),
    ],
)
def test_bad_settings_stop_the_boot_with_one_line_naming_the_key(
    change: dict[str, Any], message: str, ssm: Any, etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = etc.parent / "stack.env"
    out.write_text("PREVIOUS=1\n")
    document = {k: v for k, v in {**SETTINGS, **change}.items() if v is not None}
    ssm.put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(document), Overwrite=True)
    assert run_settings(etc, out) == 2
    error = capsys.readouterr().err
    assert message in error and PARAMETER in error and error.count("\n") == 1, error
    assert out.read_text() == "PREVIOUS=1\n"  # nothing half-written


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("not-json", "is not JSON"),
        ("missing-parameter", "does not exist: deploy the stack"),
        ("no-parameter-line", "has no CVSTACK_SETTINGS_PARAMETER"),
        ("no-instance-env", "cannot read"),
        ("aws-env-overrides-a-setting", "may not set CVSTACK_ORIGIN_SECRET_ID"),
    ],
)
def test_broken_bootstrap_files_are_named(
    problem: str, message: str, ssm: Any, etc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if problem == "not-json":
        ssm.put_parameter(Name=PARAMETER, Type="String", Value="{oops", Overwrite=True)
    elif problem == "missing-parameter":
        ssm.delete_parameter(Name=PARAMETER)
    elif problem == "no-parameter-line":
        (etc / "instance.env").write_text(f"CVSTACK_AWS_REGION={REGION}\n")
    elif problem == "no-instance-env":
        (etc / "instance.env").unlink()
    else:
        (etc / "aws.env").write_text("CVSTACK_ORIGIN_SECRET_ID=evil\n")
    assert run_settings(etc, etc.parent / "stack.env") == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
    assert not (etc.parent / "stack.env").exists()
