"""The drain signal: the file's existence, checked per question; CVSTACK_DRAIN_FILE validated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.cli import main
from backend.core.config import Settings
from backend.session.drain import DrainFileError, DrainSignal


def test_draining_follows_the_file(tmp_path: Path) -> None:
    drain_file = tmp_path / "drain"
    signal = DrainSignal(drain_file)
    assert not signal.draining()
    drain_file.touch()
    assert signal.draining()
    drain_file.unlink()
    assert not signal.draining()


def test_without_a_drain_file_the_server_never_drains() -> None:
    assert not DrainSignal(None).draining()
    assert Settings().drain_file is None


def test_the_setting_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CVSTACK_DRAIN_FILE", str(tmp_path / "drain"))
    assert Settings().drain_file == tmp_path / "drain"


def test_a_relative_drain_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVSTACK_DRAIN_FILE", "drain")
    with pytest.raises(ValidationError, match="CVSTACK_DRAIN_FILE=drain must be an absolute path"):
        Settings()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/drain", "its folder .*/missing does not exist here"),
        (".", "is a folder: name a file in it"),
    ],
)
def test_a_drain_file_that_cannot_be_watched_is_refused(
    name: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(DrainFileError, match=f"CVSTACK_DRAIN_FILE=.* {message}"):
        DrainSignal(tmp_path / name)


def test_serve_names_an_unwatchable_drain_file_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CVSTACK_DRAIN_FILE", str(tmp_path / "missing" / "drain"))
    assert main(["serve"]) != 0
    assert "does not exist here" in capsys.readouterr().err


def test_a_file_it_cannot_look_at_is_logged_once_and_not_draining(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    looping = tmp_path / "drain"
    looping.symlink_to(looping)  # stat fails with ELOOP, whoever runs the test
    signal = DrainSignal(looping)
    with caplog.at_level(logging.WARNING):
        assert not signal.draining()
        assert not signal.draining()
    assert len(caplog.records) == 1
    assert "cannot look at the drain file" in caplog.records[0].getMessage()
