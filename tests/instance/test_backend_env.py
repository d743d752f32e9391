"""The backend's production environment, from the secret in moto's Secrets Manager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from backend.cli import main
from backend.core.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ORIGINS = "https://app.example.com,https://other.example.com"


@pytest.fixture
def secrets(fake_aws: None) -> Iterator[SecretsManagerClient]:
    yield boto3.client("secretsmanager", region_name="us-east-1")


def run(secret_id: str, out: Path) -> int:
    return main(
        [
            "instance",
            "backend-env",
            "--secret-id",
            secret_id,
            "--allowed-origins",
            ORIGINS,
            "--out",
            str(out),
            "--region",
            "us-east-1",
        ]
    )


def test_the_env_file_starts_a_production_backend(
    secrets: SecretsManagerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = secrets.create_secret(Name="cvstack/session-token-secret", SecretString="k" * 64)["ARN"]
    out = tmp_path / "run" / "backend.env"
    assert run(arn, out) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    for line in out.read_text().splitlines():
        key, _, value = line.partition("=")
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.allowed_origins == ORIGINS.split(",")
    assert settings.session_token_secret is not None
    assert settings.session_token_secret.get_secret_value() == "k" * 64


def test_a_short_secret_or_a_missing_one_stops_the_boot_with_the_reason(
    secrets: SecretsManagerClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = secrets.create_secret(Name="short", SecretString="too-short")["ARN"]
    assert run(short, tmp_path / "a.env") == 2
    assert "at least 32 characters" in capsys.readouterr().err
    assert run("cvstack/absent", tmp_path / "b.env") == 2
    assert "cannot read the session-token secret" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.env"))
