"""The backend's production environment and nginx's origin secret, from the secrets in moto's
Secrets Manager."""

from __future__ import annotations

import grp
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from backend.cli import main
from backend.core.config import Settings
from backend.instance.backend_env import (
    NGINX_GROUP,
    ORIGIN_SECRET_MAP,
    BackendEnvError,
    write_origin_secret_map,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

ORIGINS = "self,https://app.example.com,https://other.example.com"
ORIGIN_SECRET = "Ab3" * 16  # 48 letters and digits, as the stack generates


@pytest.fixture
def secrets(fake_aws: None) -> Iterator[SecretsManagerClient]:
    yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def session_secret(secrets: SecretsManagerClient) -> str:
    return secrets.create_secret(Name="cvstack/session-token-secret", SecretString="k" * 64)["ARN"]


@pytest.fixture
def origin_secret(secrets: SecretsManagerClient) -> str:
    return secrets.create_secret(Name="cvstack/origin-secret", SecretString=ORIGIN_SECRET)["ARN"]


def run(secret_id: str, origin_secret_id: str, out: Path, nginx_dir: Path) -> int:
    return main(
        [
            "instance",
            "backend-env",
            "--secret-id",
            secret_id,
            "--origin-secret-id",
            origin_secret_id,
            "--origin-secret-dir",
            str(nginx_dir),
            "--allowed-origins",
            ORIGINS,
            "--out",
            str(out),
            "--region",
            "us-east-1",
        ]
    )


def test_the_env_file_starts_a_production_backend_and_nginx_gets_the_origin_secret(
    session_secret: str, origin_secret: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run" / "backend.env"
    assert run(session_secret, origin_secret, out, tmp_path / "run" / "nginx") == 0
    assert out.stat().st_mode & 0o777 == 0o600
    for line in out.read_text().splitlines():
        key, _, value = line.partition("=")
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.allowed_origins == ORIGINS.split(",")  # "self" passed through as is
    assert settings.session_token_secret is not None
    assert settings.session_token_secret.get_secret_value() == "k" * 64
    assert ORIGIN_SECRET not in out.read_text()  # the backend never sees the origin secret
    origin_map = tmp_path / "run" / "nginx" / ORIGIN_SECRET_MAP
    assert origin_map.read_text() == f'"{ORIGIN_SECRET}" 1;\n'


def test_the_map_file_is_for_root_and_nginx_only_and_replaced_atomically(tmp_path: Path) -> None:
    """0640 root:www-data whatever the umask; a rewrite (the next boot, a rotated secret) renames
    a complete temporary over the old file, so a reader sees one whole secret or the other, and
    no temporary is left where nginx's `*.map` glob would include it."""
    directory = tmp_path / "nginx"
    www_data = grp.getgrnam(NGINX_GROUP).gr_gid
    previous_umask = os.umask(0o077)
    try:
        path = write_origin_secret_map(ORIGIN_SECRET, directory)
    finally:
        os.umask(previous_umask)
    assert path == directory / ORIGIN_SECRET_MAP
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_gid == www_data
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750 and directory.stat().st_gid == www_data

    rotated = "Z9" * 40
    seen: set[str] = set()
    stop = threading.Event()

    def read_all_the_time() -> None:
        while not stop.is_set():
            seen.add(path.read_text())

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for round_ in range(200):
            write_origin_secret_map(rotated if round_ % 2 else ORIGIN_SECRET, directory)
    finally:
        stop.set()
        reader.join(10)
    assert seen <= {f'"{ORIGIN_SECRET}" 1;\n', f'"{rotated}" 1;\n'}, seen
    assert [p.name for p in directory.iterdir()] == [ORIGIN_SECRET_MAP]


@pytest.mark.parametrize(
    "value",
    [
        "A1" * 15 + "b",  # 31 characters
        "a" * 129,
        "x" * 40 + '" 1; "evil',  # would add a second entry to nginx's map
        "x" * 40 + "\n",
        "é" * 40,
    ],
)
def test_an_origin_secret_that_is_not_32_to_128_alphanumerics_stops_the_boot(
    value: str,
    session_secret: str,
    secrets: SecretsManagerClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = secrets.create_secret(Name="cvstack/bad-origin", SecretString=value)["ARN"]
    assert run(session_secret, bad, tmp_path / "backend.env", tmp_path / "nginx") == 2
    error = capsys.readouterr().err
    assert "CVSTACK_ORIGIN_SECRET_ID" in error and "32-128 letters and digits" in error, error
    assert "cdk deploy" in error and value not in error  # says what to do, not the secret
    assert not (tmp_path / "backend.env").exists() and not (tmp_path / "nginx").exists()
    with pytest.raises(BackendEnvError):
        write_origin_secret_map(value, tmp_path / "nginx")


def test_a_short_secret_or_a_missing_one_stops_the_boot_with_the_reason(
    secrets: SecretsManagerClient,
    origin_secret: str,
    session_secret: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    short = secrets.create_secret(Name="short", SecretString="too-short")["ARN"]
    assert run(short, origin_secret, tmp_path / "a.env", tmp_path / "nginx") == 2
    assert "at least 32 characters" in capsys.readouterr().err
    assert run("cvstack/absent", origin_secret, tmp_path / "b.env", tmp_path / "nginx") == 2
    assert "cannot read the session-token secret" in capsys.readouterr().err
    assert run(session_secret, "cvstack/absent", tmp_path / "c.env", tmp_path / "nginx") == 2
    error = capsys.readouterr().err
    assert "cannot read the origin secret cvstack/absent" in error
    assert "CVSTACK_ORIGIN_SECRET_ID" in error
    assert not list(tmp_path.glob("*.env")) and not (tmp_path / "nginx").exists()


def test_without_an_origin_secret_id_the_step_says_which_setting_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CVSTACK_ORIGIN_SECRET_ID", raising=False)
    argv = ["instance", "backend-env", "--secret-id", "x", "--allowed-origins", "self"]
    assert main([*argv, "--out", str(tmp_path / "backend.env")]) == 2
    assert "CVSTACK_ORIGIN_SECRET_ID" in capsys.readouterr().err
